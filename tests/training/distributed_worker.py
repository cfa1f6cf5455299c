"""Run as a script: trains the 2AFC model under one distribution strategy and writes the results.

usage: KERAS_BACKEND=<b> python distributed_worker.py MODE OUT.npz

- `mirrored` (tensorflow): splits the CPU into 2 logical devices, then trains
  the same model from the same weights on the same global batches three times:
  on one device (`single`), under `select_strategy("mirrored")` (`mirrored`),
  and, as a negative control, mirrored with a loss that reduces itself to a
  per-replica mean (`self_reducing`), which Keras cannot rescale: the
  all-reduced gradient is then twice the true one. Last, with TensorFlow
  running, it records the error of selecting `multiworker` too late
  (`late/multiworker_error`).
- `multiworker` (tensorflow, `TF_CONFIG` set by the caller): trains under
  `select_strategy("multiworker")` for 2 epochs with validation
  (`multiworker`); the chief (index 0) then repeats the run on one device
  (`single`).
- `data_parallel` (jax, `XLA_FLAGS=--xla_force_host_platform_device_count=2`):
  `single`, then `select_strategy("data_parallel")` (`data_parallel`).

For each run the .npz holds `<run>/loss` (the per-batch running loss that fit
logs), `<run>/val_loss` (per epoch, if validated), `<run>/batch_per_replica` (the batch one replica's forward pass saw),
`<run>/weight_<i>` (model weights), `<run>/optimizer_<i>` and
`<run>/optimizer_names` (Adam's state: iterations, learning rate, first and
second moments), plus facts about the devices (`replicas`, `replica_spread`,
`mesh_shape`, `batch_layout`, `variable_devices`).
"""

from __future__ import annotations

import json
import os
import socket
import sys

import keras
import numpy as np
from keras import ops

from keras_percept.losses import get_loss, twoafc_bce
from keras_percept.metrics.keras_metrics import TwoAFCScore
from keras_percept.models.comparison import Dist2Logit
from keras_percept.models.lpips import LPIPS
from keras_percept.models.twoafc import TwoAFCModel
from keras_percept.training.strategy import select_strategy, split_cpu

GLOBAL_BATCH = 8
STEPS = 4
SIZE = 32
SEED = 7


class BatchPerReplica(keras.metrics.Metric):
    """The batch size one replica's forward pass saw (mean over replicas: 4 if a batch of 8 is split in two)."""

    def __init__(self, name: str = "batch_per_replica", **kwargs):
        super().__init__(name=name, **kwargs)
        self.size = self.add_variable(shape=(), initializer="zeros", aggregation="mean", name="size")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.size.assign(ops.cast(ops.shape(y_pred)[0], self.dtype))

    def result(self):
        return ops.convert_to_tensor(self.size)


class BatchLosses(keras.callbacks.Callback):
    """Records the logged loss and per-replica batch size after every training step."""

    def on_train_begin(self, logs=None):
        self.losses = []
        self.batch_sizes = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.batch_sizes.append(float(logs["batch_per_replica"]))


def self_reducing_bce(y_true, y_pred):
    """The BCE already averaged over the replica's batch: Keras leaves a scalar loss unscaled."""
    return ops.mean(twoafc_bce(y_true, y_pred))


def make_data(steps: int = STEPS, seed: int = SEED):
    rng = np.random.default_rng(seed)
    n = GLOBAL_BATCH * steps
    images = tuple(rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype("float32") for _ in range(3))
    h = rng.uniform(0, 1, (n,)).astype("float32")
    return images, h


def build_model(loss) -> TwoAFCModel:
    """alex trunk with random weights, trainable (the `scratch` paradigm): 21 variables to all-reduce."""
    keras.utils.set_random_seed(SEED)
    model = TwoAFCModel(LPIPS(net="alex", dropout=0.0, trunk_trainable=True), Dist2Logit())
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss=loss,
        metrics=[TwoAFCScore(), BatchPerReplica()],
    )
    return model


def tf_dataset(images, h):
    import tensorflow as tf

    options = tf.data.Options()
    # Rows, not files: each worker takes its share of every global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((images, h)).batch(GLOBAL_BATCH).with_options(options)


def train(strategy: str, initial: list[np.ndarray] | None, data, *, loss=None, epochs: int = 1, validation=None):
    """Builds and compiles under `select_strategy(strategy)`, loads `initial` (if given), fits.

    Returns the run's arrays, the model and its initial weights.
    """
    with select_strategy(strategy):
        model = build_model(get_loss("bce") if loss is None else loss)
        if initial is None:
            initial = model.get_weights()
        model.set_weights(initial)
    recorder = BatchLosses()
    if keras.backend.backend() == "tensorflow":
        history = model.fit(
            tf_dataset(*data), validation_data=tf_dataset(*validation) if validation else None, epochs=epochs,
            shuffle=False, callbacks=[recorder], verbose=0,
        )
    else:
        history = model.fit(
            *data, batch_size=GLOBAL_BATCH, epochs=epochs, shuffle=False, callbacks=[recorder], verbose=0
        )
    result = {
        "loss": np.array(recorder.losses),
        "val_loss": np.array(history.history.get("val_loss", [])),
        "batch_per_replica": np.array(recorder.batch_sizes),
        "n_trainable": np.array(len(model.trainable_variables)),
    }
    result.update({f"weight_{i}": w for i, w in enumerate(model.get_weights())})
    result.update({f"optimizer_{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
    result["optimizer_names"] = np.array([v.path for v in model.optimizer.variables])
    return result, model, initial


def mirrored_facts(model) -> dict:
    """Replica count, and the largest difference between two replicas' copies of any weight."""
    spread = 0.0
    for v in model.weights:
        copies = [np.asarray(c) for c in v.value.values]
        spread = max(spread, *(float(np.abs(c - copies[0]).max()) for c in copies))
    return {"replicas": np.array(model.distribute_strategy.num_replicas_in_sync), "replica_spread": np.array(spread)}


def run_mirrored() -> dict:
    split_cpu(2)
    data = make_data()
    single, _, initial = train("none", None, data)
    mirrored, model, _ = train("mirrored", initial, data)
    mirrored.update(mirrored_facts(model))
    control, _, _ = train("mirrored", initial, data, loss=self_reducing_bce)
    return {"single": single, "mirrored": mirrored, "self_reducing": control, "late": late_multiworker_error()}


def late_multiworker_error() -> dict:
    """TensorFlow is running by now, too late to configure collective ops: the error `select_strategy` raises."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [address]}, "task": {"type": "worker", "index": 0}})
    try:
        select_strategy("multiworker")
    except RuntimeError as error:
        return {"multiworker_error": np.array(str(error))}
    return {"multiworker_error": np.array("")}


def run_multiworker() -> dict:
    # The strategy must exist before TensorFlow initialises, so the model is first built under it.
    data, validation = make_data(steps=3), make_data(steps=1, seed=SEED + 1)
    runs = {}
    runs["multiworker"], model, initial = train("multiworker", None, data, epochs=2, validation=validation)
    runs["multiworker"]["replicas"] = np.array(model.distribute_strategy.num_replicas_in_sync)
    if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0:
        runs["single"], _, _ = train("none", initial, data, epochs=2, validation=validation)
    return runs


def run_data_parallel() -> dict:
    import jax

    data = make_data()
    single, _, initial = train("none", None, data)
    parallel, model, _ = train("data_parallel", initial, data)
    distribution = keras.distribution.distribution()
    parallel["replicas"] = np.array(jax.device_count())
    parallel["mesh_shape"] = np.array(distribution.device_mesh.shape)
    parallel["batch_layout"] = np.array([str(a) for a in distribution.get_data_layout(data[0][0].shape).axes])
    parallel["variable_devices"] = np.array([len(v.value.sharding.device_set) for v in model.weights])
    return {"single": single, "data_parallel": parallel}


MODES = {"mirrored": run_mirrored, "multiworker": run_multiworker, "data_parallel": run_data_parallel}

if __name__ == "__main__":
    mode, out_path = sys.argv[1:]
    runs = MODES[mode]()
    np.savez(out_path, **{f"{run}/{key}": value for run, arrays in runs.items() for key, value in arrays.items()})
