"""Choosing how a run is distributed: tf.distribute on TensorFlow, keras.distribution on JAX."""

from __future__ import annotations

import contextlib
import json
import os

import keras


def split_cpu(n_devices: int) -> None:
    """Splits the CPU into `n_devices` logical TensorFlow devices (before TF touches its devices).

    Used by tests and by `strategy: mirrored` on machines without GPUs, so
    that `MirroredStrategy` runs real replicas.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n_devices)]
    )


def select_strategy(name: str) -> contextlib.AbstractContextManager:
    """Returns a context manager under which the model is built and compiled.

    - `"none"`: the default (no distribution).
    - `"mirrored"`: `tf.distribute.MirroredStrategy` over all visible devices (TensorFlow backend).
    - `"multiworker"`: `tf.distribute.MultiWorkerMirroredStrategy` configured by `TF_CONFIG`.
      It must be selected before TensorFlow runs any op (before building datasets).
    - `"data_parallel"`: `keras.distribution.DataParallel` over all JAX devices. This
      sets the global distribution, which stays set after the `with` block so
      that `fit` shards its batches.
    - `"auto"`: mirrored / data_parallel when more than one device is visible, else none.

    `fit` splits the global batch across replicas. Keras's `compute_loss`
    divides per-replica losses by the replica count, so gradients match a
    single-device step; that holds for losses reduced with
    `"sum_over_batch_size"`, not for a loss whose `call` already returns a scalar
    (the IQA correlation losses are `BatchStatisticLoss`es, which scale themselves).

    Example:

    >>> with select_strategy("mirrored"):  # doctest: +SKIP
    ...     model = TwoAFCModel(LPIPS(net="alex"), Dist2Logit())
    ...     model.compile(optimizer="adam", loss=get_loss("bce"))
    >>> model.fit(dataset)  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    if name == "auto":
        name = _auto(backend)
    if name == "none":
        return contextlib.nullcontext()
    if name in ("mirrored", "multiworker"):
        if backend != "tensorflow":
            raise ValueError(f"strategy {name!r} needs KERAS_BACKEND=tensorflow. Received backend: {backend!r}")
        import tensorflow as tf

        if name == "multiworker":
            _check_tf_config()
            try:
                strategy = _multi_worker_strategy()
            except RuntimeError as error:
                if "program startup" not in str(error):
                    raise
                raise RuntimeError(
                    "strategy 'multiworker' must be selected before TensorFlow runs any op "
                    "(e.g. before building datasets): its collective ops are configured at startup."
                ) from error
            return strategy.scope()
        return tf.distribute.MirroredStrategy().scope()
    if name == "data_parallel":
        if backend != "jax":
            raise ValueError(f"strategy 'data_parallel' needs KERAS_BACKEND=jax. Received backend: {backend!r}")
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    raise ValueError(f"`strategy` must be one of auto, none, mirrored, multiworker, data_parallel. Received: {name!r}")


def _multi_worker_strategy():
    """A `MultiWorkerMirroredStrategy` whose `reduce` takes what Keras 3's `fit` passes it.

    Keras's TensorFlow trainer calls `strategy.reduce` in two ways that
    `MirroredStrategy` accepts and `MultiWorkerMirroredStrategy` rejects
    (keras-team/keras#20585, tensorflow/tensorflow#72388):

    - on a whole nested `(x, y)` batch, to learn its shapes before training
      ("Attempt to convert a value (PerReplica...) ... to a Tensor");
    - with `axis=0` on the scalar logs of each step ("Invalid reduction
      dimension 0 for input with 0 dimensions").

    This subclass reduces nested values leaf by leaf, and reshapes a scalar
    to `(1,)` first, so that its reduction runs across replicas, which is what
    `MirroredStrategy` does with Keras's logs.
    """
    import tensorflow as tf

    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            reduce_leaf = super().reduce

            def reduce_one(v):
                if axis is not None and self.experimental_local_results(v)[0].shape.rank == 0:
                    v = self.run(lambda t: tf.reshape(t, (1,)), args=(v,))
                return reduce_leaf(reduce_op, v, axis)

            return tf.nest.map_structure(reduce_one, value)

    return KerasMultiWorkerMirroredStrategy()


def is_chief() -> bool:
    """False only for a non-chief worker of a `TF_CONFIG` cluster (which must not write results).

    The chief is the task of type "chief", or worker 0 when the cluster has no chief.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        config = json.loads(raw)
        task, cluster = config.get("task", {}), config.get("cluster", {})
    except (ValueError, AttributeError):
        return True
    kind, index = task.get("type"), task.get("index", 0)
    if kind == "chief":
        return True
    return kind == "worker" and int(index) == 0 and "chief" not in cluster


def _check_tf_config() -> None:
    """Rejects a missing or malformed `TF_CONFIG`; without `cluster`, TF would silently train on one worker."""
    if "TF_CONFIG" not in os.environ:
        raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable.")
    raw = os.environ["TF_CONFIG"]
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG must be JSON ({error}). Received: TF_CONFIG={raw!r}") from error
    if (
        not isinstance(tf_config, dict)
        or not isinstance(tf_config.get("cluster"), dict)
        or not tf_config["cluster"]
        or not isinstance(tf_config.get("task"), dict)
        or not {"type", "index"} <= set(tf_config["task"])
    ):
        raise ValueError(
            "TF_CONFIG must hold a non-empty 'cluster' and a 'task' with 'type' and 'index'. "
            f"Received: TF_CONFIG={raw!r}"
        )


def _auto(backend: str) -> str:
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        return "mirrored" if len(gpus) > 1 or (not gpus and len(cpus) > 1) else "none"
    if backend == "jax":
        return "data_parallel" if len(keras.distribution.list_devices()) > 1 else "none"
    return "none"
