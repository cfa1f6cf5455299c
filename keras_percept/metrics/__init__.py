"""Metrics: the 2AFC score, JND mAP, classical baselines, paired comparisons, IQA correlations and Keras metrics.

`LPIPSMetric` is the streaming Keras metric for `model.compile(metrics=[...])`.
"""

from keras_percept.metrics.streaming import LPIPSMetric

__all__ = ["LPIPSMetric"]
