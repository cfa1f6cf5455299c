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


def select_strategy(name: str):
    """Returns a context manager under which the model is built and compiled.

    - `"none"`: the default (no distribution).
    - `"mirrored"`: `tf.distribute.MirroredStrategy` over all visible devices (TensorFlow backend).
    - `"multiworker"`: `tf.distribute.MultiWorkerMirroredStrategy` configured by `TF_CONFIG`.
    - `"data_parallel"`: `keras.distribution.DataParallel` over all JAX devices.
    - `"auto"`: mirrored / data_parallel when more than one device is visible, else none.

    The global batch is split across replicas; Keras's `compute_loss`
    reduces losses per replica so gradients match a single-device step.
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
            if "TF_CONFIG" not in os.environ:
                raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable.")
            json.loads(os.environ["TF_CONFIG"])  # a clear JSON error before TF's own
            return tf.distribute.MultiWorkerMirroredStrategy().scope()
        return tf.distribute.MirroredStrategy().scope()
    if name == "data_parallel":
        if backend != "jax":
            raise ValueError(f"strategy 'data_parallel' needs KERAS_BACKEND=jax. Received backend: {backend!r}")
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    raise ValueError(f"`strategy` must be one of auto, none, mirrored, multiworker, data_parallel. Received: {name!r}")


def _auto(backend: str) -> str:
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        return "mirrored" if len(gpus) > 1 or (not gpus and len(cpus) > 1) else "none"
    if backend == "jax":
        return "data_parallel" if len(keras.distribution.list_devices()) > 1 else "none"
    return "none"
