"""Callbacks Keras lacks (one per file). Everything else uses `keras.callbacks` directly."""

from keras_percept.callbacks.gradient_norm import GradientNorm, global_gradient_norm
from keras_percept.callbacks.resume import EpochSeeds, ResumableBackup, ResumableEarlyStopping
from keras_percept.callbacks.weight_monitor import WeightMonitor

__all__ = ["EpochSeeds", "GradientNorm", "global_gradient_norm", "ResumableBackup", "ResumableEarlyStopping", "WeightMonitor"]
