"""Run as a script: `train_iqa` under a distribution strategy and on one device; writes the results.

usage: KERAS_BACKEND=<b> python iqa_distributed_worker.py MODE OUT.npz

- `mirrored` (tensorflow): splits the CPU into 2 logical devices, then runs
  the same tiny `train_iqa` config (frozen random trunk, cached features,
  SGD with a cosine schedule, global batch 16, no dropout) as:
  `l1_single` / `l1_mirrored`; `srcc_mirrored` (each replica's SRCC loss over
  its 8 samples, scaled by 1/2 by `BatchStatisticLoss`); `srcc_halves_single`
  (one device, the loss is the mean of the SRCC loss of each half of the
  batch: what the mirrored run should compute); `srcc_single` (one device,
  the SRCC loss over the whole batch); and the negative control
  `srcc_unscaled_mirrored` (the same SRCC loss as a plain function returning
  a scalar, which Keras does not divide by the replica count).
- `data_parallel` (jax, `XLA_FLAGS=--xla_force_host_platform_device_count=2`):
  `l1_single` / `l1_data_parallel`, `srcc_single` / `srcc_data_parallel`.

For each run the .npz holds `<run>/loss` (per epoch), `<run>/val_srcc` (per
epoch), `<run>/weight_<i>` (the model's final weights), `<run>/initial_<i>` and
`<run>/step1_<i>` (its trainable weights before and after the first step:
SGD's first step is `-learning_rate * gradient`), and `<run>/replicas`.
"""

from __future__ import annotations

import os
import sys
import tempfile

import keras
import numpy as np
from keras import ops

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "iqa", "compare.yaml")
OVERRIDES = ["data.n_train=64", "data.n_test=32", "data.batch_size=16", "optim.epochs=2", "model.trunk_weights=null",
             "model.dropout=0.0", "optim.optimizer=sgd", "optim.learning_rate=0.05", "optim.weight_decay=0.0",
             "optim.warmup_epochs=0", "optim.schedule=cosine", "early_stopping_patience=null"]


ORIGINAL_FIT = keras.Model.fit


class FirstStep(keras.callbacks.Callback):
    """Records the trained model's trainable weights before training and after its first step."""

    def trainable(self):
        return [ops.convert_to_numpy(v) for v in self.model.trainable_weights]

    def on_train_begin(self, logs=None):
        self.initial = self.trainable()

    def on_train_batch_end(self, batch, logs=None):
        if not hasattr(self, "step1"):
            self.step1 = self.trainable()


def _fit_after_one_pass(self, x, *args, **kwargs):
    """`fit` after drawing one batch from a first pass over `x`, as Keras does under a tf.distribute strategy.

    Under a strategy Keras builds the model on a batch from a first iterator
    of the dataset (`_maybe_symbolic_build`), so the training set's
    reshuffled order of epoch k is the one a plain `fit` uses in epoch k + 1.
    The one-device reference lines up the same way.
    """
    next(iter(x))
    return ORIGINAL_FIT(self, x, *args, **kwargs)


def srcc_over_halves(y_true, y_pred):
    """One device: the mean of the SRCC loss over each half of the batch (what 2 replicas compute)."""
    from keras_percept.losses import srcc_loss

    n = ops.shape(y_pred)[0] // 2
    return 0.5 * (srcc_loss(y_true[:n], y_pred[:n]) + srcc_loss(y_true[n:], y_pred[n:]))


def unscaled_srcc(y_true, y_pred):
    """The SRCC loss as a plain function: a scalar Keras leaves undivided under 2 replicas (negative control)."""
    from keras_percept.losses import srcc_loss

    return srcc_loss(y_true, y_pred)


def run(strategy: str, loss_type: str, memo: dict, loss=None) -> dict[str, np.ndarray]:
    """`train_iqa` with `loss_type` (and `loss` in place of the registry's loss, if given)."""
    import keras_percept.losses
    from keras_percept.iqa import load_iqa_config, train_iqa

    original, original_fit = keras_percept.losses.get_loss, keras.Model.fit
    if loss is not None:
        keras_percept.losses.get_loss = lambda *args, **kwargs: loss
    if strategy == "none" and keras.backend.backend() == "tensorflow":
        keras.Model.fit = _fit_after_one_pass
    recorder = FirstStep()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = load_iqa_config(CONFIG, overrides=OVERRIDES + [f"strategy={strategy}", f"loss_type={loss_type}",
                                                                    f"output_dir={tmp}"])
            result = train_iqa(config, callbacks=[recorder], verbose=0, feature_memo=memo)
    finally:
        keras_percept.losses.get_loss, keras.Model.fit = original, original_fit
    head = recorder.model
    out = {"loss": np.array(result.history["loss"]), "val_srcc": np.array(result.history["val_srcc"]),
           "replicas": np.array(_replicas(head))}
    out.update({f"weight_{i}": np.array(w) for i, w in enumerate(head.get_weights())})
    out.update({f"initial_{i}": w for i, w in enumerate(recorder.initial)})
    out.update({f"step1_{i}": w for i, w in enumerate(recorder.step1)})
    keras.backend.clear_session()
    return out


def _replicas(model) -> int:
    if keras.backend.backend() == "tensorflow":
        return model.distribute_strategy.num_replicas_in_sync
    import jax

    return jax.device_count() if keras.distribution.distribution() is not None else 1


def run_mirrored() -> dict:
    from keras_percept.training.strategy import split_cpu

    split_cpu(2)
    memo: dict = {}  # the same tables and cached features for every run
    return {
        "l1_single": run("none", "l1", memo),
        "l1_mirrored": run("mirrored", "l1", memo),
        "srcc_mirrored": run("mirrored", "srcc", memo),
        "srcc_halves_single": run("none", "srcc", memo, loss=srcc_over_halves),
        "srcc_single": run("none", "srcc", memo),
        "srcc_unscaled_mirrored": run("mirrored", "srcc", memo, loss=unscaled_srcc),
    }


def run_data_parallel() -> dict:
    """SRCC only: the batch-level loss is what a global-batch reduction could get wrong; a per-sample loss
    under JAX DataParallel is tests/training/test_distribution.py's case (and L1 is checked mirrored)."""
    memo: dict = {}
    return {"srcc_single": run("none", "srcc", memo), "srcc_data_parallel": run("data_parallel", "srcc", memo)}


MODES = {"mirrored": run_mirrored, "data_parallel": run_data_parallel}

if __name__ == "__main__":
    mode, out_path = sys.argv[1:]
    runs = MODES[mode]()
    np.savez(out_path, **{f"{run}/{key}": value for run, arrays in runs.items() for key, value in arrays.items()})
