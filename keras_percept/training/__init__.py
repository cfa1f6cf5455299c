"""Training the LPIPS paradigms (lin / tune / scratch) on 2AFC data, tracked in MLflow.

Example:

>>> from keras_percept.training import load_config, train
>>> config = load_config("configs/lin.yaml", overrides=["optim.epochs=2"])  # doctest: +SKIP
>>> result = train(config)  # doctest: +SKIP
"""

from keras_percept.training.config import TrainConfig, load_config, parse_override
from keras_percept.training.trainer import TrainResult, run_directory, train

__all__ = ["TrainConfig", "TrainResult", "load_config", "parse_override", "run_directory", "train"]
