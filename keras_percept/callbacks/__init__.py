"""Callbacks Keras lacks (one per file). Everything else uses `keras.callbacks` directly."""

from keras_percept.callbacks.resume import EpochSeeds, ResumableBackup, ResumableEarlyStopping
from keras_percept.callbacks.weight_monitor import WeightMonitor

__all__ = ["EpochSeeds", "ResumableBackup", "ResumableEarlyStopping", "WeightMonitor"]
