"""Perceptual distance and image-quality models."""

from keras_percept.models.iqa import IQAModel, PooledIQAHead
from keras_percept.models.comparison import Dist2Logit
from keras_percept.models.dists import DISTS
from keras_percept.models.ensemble import ELPIPS
from keras_percept.models.lpips import LPIPS
from keras_percept.models.twoafc import TwoAFCModel

__all__ = ["DISTS", "Dist2Logit", "ELPIPS", "IQAModel", "LPIPS", "PooledIQAHead", "TwoAFCModel"]
