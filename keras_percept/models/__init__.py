"""Perceptual distance models."""

from keras_percept.models.lpips import LPIPS

__all__ = ["LPIPS"]
