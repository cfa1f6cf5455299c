"""Run as a script: trains the 2AFC model under one distribution strategy and writes the results.

usage: KERAS_BACKEND=<b> python distributed_worker.py MODE OUT.npz

- `mirrored` (tensorflow): splits the CPU into 2 logical devices, then trains
  the same model from the same weights on the same global batches three times:
  on one device (`single`), under `select_strategy("mirrored")` (`mirrored`),
  and, as a negative control, mirrored with a loss that reduces itself to a
  per-replica mean (`self_reducing`), which Keras cannot rescale: the
  all-reduced gradient is then twice the true one. Last, with TensorFlow
  running, it records the error of selecting `multiworker` too late
  (`late/multiworker_error`). Then `global_clipnorm` (Adam, clip norm 1e-4,
  one step on one global batch): on one device (`clip_single`), on each half
  of the batch alone on one device (`clip_half_0`, `clip_half_1`), and
  mirrored (`clip_mirrored`); and the error `build_training_optimizer` raises
  for a clip norm under the 2-replica strategy (`clip_guard/error`).
- `multi_optimizer` (tensorflow): `tune`'s trunk/head MultiOptimizer from
  `build_training_optimizer`, built inside the strategy's scope: on one
  device (`single`) and mirrored (`mirrored`). Its own process: after one
  MirroredStrategy has all-reduced the gradients in one group, a new one in
  the same process that all-reduces them in other groups (one per inner
  optimizer), or the reverse, fails with "Shape mismatch in the collective
  instance 100" (TensorFlow 2.21, measured).
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
`mesh_shape`, `batch_layout`, `variable_devices`). `multi_optimizer` runs
also hold `first_step_weight_<i>` (weights after the first step),
`owners` (the inner optimizer updating each weight) and, per inner
optimizer, `inner_names`, `inner_learning_rates` and `inner_sizes` (variables owned).
"""

from __future__ import annotations

import json
import os
import socket
import sys

import keras
import numpy as np
from keras import ops

from keras_percept.callbacks import GradientNorm, global_gradient_norm
from keras_percept.losses import get_loss, twoafc_bce
from keras_percept.metrics.keras_metrics import TwoAFCScore
from keras_percept.models.comparison import Dist2Logit
from keras_percept.models.lpips import LPIPS
from keras_percept.models.twoafc import TwoAFCModel
from keras_percept.training import load_config
from keras_percept.training.optimizers import build_training_optimizer
from keras_percept.training.strategy import select_strategy, split_cpu

GLOBAL_BATCH = 8
STEPS = 4
SIZE = 32
SEED = 7
CLIP = 1e-4  # far below the gradient norm of every batch, so every step is clipped
TUNE = ["optim.learning_rate=1e-3"]  # otherwise `tune`'s defaults: Adam, trunk rate x 0.1, the reference schedule


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
        self.first_step_weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.batch_sizes.append(float(logs["batch_per_replica"]))
        if len(self.losses) == 1:
            self.first_step_weights = self.model.get_weights()


def self_reducing_bce(y_true, y_pred):
    """The BCE already averaged over the replica's batch: Keras leaves a scalar loss unscaled."""
    return ops.mean(twoafc_bce(y_true, y_pred))


def make_data(steps: int = STEPS, seed: int = SEED):
    rng = np.random.default_rng(seed)
    n = GLOBAL_BATCH * steps
    images = tuple(rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype("float32") for _ in range(3))
    h = rng.uniform(0, 1, (n,)).astype("float32")
    return images, h


def build_model(loss, optimizer=None) -> TwoAFCModel:
    """alex trunk with random weights, trainable (the `scratch` paradigm): 21 variables to all-reduce.

    `optimizer(model)` makes the optimizer; by default Adam at 1e-3 with epsilon 1e-3 instead of
    Keras's 1e-7. With 1e-7, Adam's first steps are about `lr * sign(g)` even for gradient
    components near 1e-7, so rounding-level differences between a distributed and a one-device
    gradient flip whole steps. Measured on a 2-core AMD EPYC, 2 workers against one device (same
    data, 6 steps): Adam at 1e-7 ended 1.8e-3 apart in weights (17 % in moments); SGD 1.9e-9; Adam
    at 1e-3 1.5e-8 (moments 1.2e-6). A wrongly reduced gradient still shows: it doubles the first
    moment and quadruples the second.
    """
    keras.utils.set_random_seed(SEED)
    model = TwoAFCModel(LPIPS(net="alex", dropout=0.0, trunk_trainable=True), Dist2Logit())
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-3) if optimizer is None else optimizer(model),
        loss=loss,
        metrics=[TwoAFCScore(), BatchPerReplica()],
    )
    return model


def tf_dataset(images, h, batch: int = GLOBAL_BATCH):
    import tensorflow as tf

    options = tf.data.Options()
    # Rows, not files: each worker takes its share of every global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((images, h)).batch(batch).with_options(options)


def train(strategy: str, initial: list[np.ndarray] | None, data, *, loss=None, optimizer=None, epochs: int = 1,
          validation=None, batch: int = GLOBAL_BATCH):
    """Builds and compiles under `select_strategy(strategy)`, loads `initial` (if given), fits.

    Returns the run's arrays, the model and its initial weights.
    """
    with select_strategy(strategy):
        model = build_model(get_loss("bce") if loss is None else loss, optimizer)
        if initial is None:
            initial = model.get_weights()
        model.set_weights(initial)
    recorder = BatchLosses()
    # GradientNorm as the trainers use it, inside `fit` under the strategy, on the first global batch
    probe = (tuple(x[:GLOBAL_BATCH] for x in data[0]), data[1][:GLOBAL_BATCH])
    gradient_norm = GradientNorm(probe)
    if keras.backend.backend() == "tensorflow":
        history = model.fit(
            tf_dataset(*data, batch=batch), validation_data=tf_dataset(*validation) if validation else None,
            epochs=epochs, shuffle=False, callbacks=[recorder, gradient_norm], verbose=0,
        )
    else:
        history = model.fit(
            *data, batch_size=GLOBAL_BATCH, epochs=epochs, shuffle=False, callbacks=[recorder, gradient_norm],
            verbose=0,
        )
    result = {
        "loss": np.array(recorder.losses),
        "val_loss": np.array(history.history.get("val_loss", [])),
        "batch_per_replica": np.array(recorder.batch_sizes),
        "n_trainable": np.array(len(model.trainable_variables)),
        "grad_norm": np.array(history.history["grad_norm"]),
    }
    if keras.backend.backend() == "tensorflow":  # a user's `fit` inside the strategy's scope: the same number
        with model.distribute_strategy.scope():
            result["grad_norm_in_scope"] = np.array(global_gradient_norm(model, *probe))
    result.update({f"weight_{i}": w for i, w in enumerate(model.get_weights())})
    result.update({f"optimizer_{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
    result["optimizer_names"] = np.array([v.path for v in model.optimizer.variables])
    if isinstance(model.optimizer, keras.optimizers.MultiOptimizer):
        result.update(multi_optimizer_facts(model, recorder.first_step_weights))
    return result, model, initial


def multi_optimizer_facts(model, first_step_weights: list[np.ndarray]) -> dict:
    """Which inner optimizer updates each weight, and each inner optimizer's name, rate and variable count."""
    inner = model.optimizer.optimizers
    owner = {v.path: o.name for o in inner for v in o._trainable_variables}
    facts = {f"first_step_weight_{i}": w for i, w in enumerate(first_step_weights)}
    facts["owners"] = np.array([owner.get(v.path, "") for v in model.weights])
    facts["inner_names"] = np.array([o.name for o in inner])
    facts["inner_learning_rates"] = np.array([float(ops.convert_to_numpy(o.learning_rate)) for o in inner])
    facts["inner_sizes"] = np.array([len(o._trainable_variables) for o in inner])
    return facts


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
    runs = {"single": single, "mirrored": mirrored, "self_reducing": control, "late": late_multiworker_error()}
    return {**runs, **clipnorm_runs(initial)}


def clipnorm_runs(initial: list[np.ndarray]) -> dict:
    """One clipped Adam step on one batch: on one device, on each half alone, and mirrored; and the guard's error.

    Same variables in one all-reduce as the runs before, so these can share their process.
    """
    images, h = make_data(steps=1)

    def clipped_adam(model):
        return keras.optimizers.Adam(learning_rate=1e-3, global_clipnorm=CLIP)

    runs = {"clip_single": train("none", initial, (images, h), optimizer=clipped_adam)[0]}
    half = GLOBAL_BATCH // 2
    for k in range(2):
        rows = slice(k * half, (k + 1) * half)
        half_data = (tuple(x[rows] for x in images), h[rows])
        runs[f"clip_half_{k}"] = train("none", initial, half_data, optimizer=clipped_adam, batch=half)[0]
    runs["clip_mirrored"] = train("mirrored", initial, (images, h), optimizer=clipped_adam)[0]
    config = load_config(paradigm="lin", overrides=[f"optim.global_clipnorm={CLIP}"])
    try:
        with select_strategy("mirrored"):
            build_training_optimizer(config, STEPS)
    except ValueError as error:
        runs["clip_guard"] = {"error": np.array(str(error))}
    else:
        runs["clip_guard"] = {"error": np.array("")}
    return runs


def run_multi_optimizer() -> dict:
    split_cpu(2)
    data = make_data()
    config = load_config(paradigm="tune", overrides=TUNE)

    def tune_optimizer(model):
        return build_training_optimizer(config, STEPS, trunk=model.metric.backbone)

    single, _, initial = train("none", None, data, optimizer=tune_optimizer)
    mirrored, model, _ = train("mirrored", initial, data, optimizer=tune_optimizer)
    mirrored.update(mirrored_facts(model))
    return {"single": single, "mirrored": mirrored, "initial": {f"weight_{i}": w for i, w in enumerate(initial)}}


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


MODES = {"mirrored": run_mirrored, "multi_optimizer": run_multi_optimizer, "multiworker": run_multiworker,
         "data_parallel": run_data_parallel}

if __name__ == "__main__":
    mode, out_path = sys.argv[1:]
    runs = MODES[mode]()
    np.savez(out_path, **{f"{run}/{key}": value for run, arrays in runs.items() for key, value in arrays.items()})
