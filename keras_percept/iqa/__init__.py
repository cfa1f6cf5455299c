"""Image-quality assessment (MOS regression): config, training, and the loss comparison experiment."""

from keras_percept.iqa.compare import Comparison, compare_losses
from keras_percept.iqa.config import IQAConfig, iqa_config_from_dict, load_iqa_config
from keras_percept.iqa.trainer import IQAEvaluation, IQAResult, build_iqa_model, train_iqa

__all__ = [
    "Comparison",
    "IQAConfig",
    "IQAEvaluation",
    "IQAResult",
    "build_iqa_model",
    "compare_losses",
    "iqa_config_from_dict",
    "load_iqa_config",
    "train_iqa",
]
