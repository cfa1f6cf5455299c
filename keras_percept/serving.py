"""Serving a metric with `mlflow models serve`: an MLflow pyfunc model that imports keras_percept.

MLflow's Keras flavour loads a `.keras` file in the scoring server without importing
keras_percept, so the server dies at start with "Could not locate class 'LPIPS'". `MetricModel`
is a `mlflow.pyfunc.PythonModel` of this package: unpickling it imports keras_percept (which
registers the layers), `load_context` loads the `.keras` artifact, and `predict` checks the
request and answers `{"distance": [...]}`. `log_metric_model` logs it with the signature
`(x0, x1) -> distance` and an input example.

    mlflow models serve -m "models:/<name>@latest-trained" --env-manager local -p 5001
    curl -s 127.0.0.1:5001/invocations -H "Content-Type: application/json" \\
        -d '{"inputs": {"x0": [[[[...]]]], "x1": [[[[...]]]]}}'
    {"predictions": {"distance": [0.213]}}

MLflow is an optional dependency (`pip install keras-percept[tune]`).
"""

from __future__ import annotations

import os

import keras
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Schema, TensorSpec

import keras_percept  # noqa: F401  (registers the package's layers and models for load_model)
from keras_percept.models.lpips import LPIPS

#: Name of the `.keras` file among the pyfunc model's artifacts.
ARTIFACT = "metric"
INPUTS = ("x0", "x1")


class InvalidMetricInput(MlflowException):
    """A bad request, answered with HTTP 400 and this one-line message (no stack trace).

    The scoring server prefixes the message of any `MlflowException` raised in `predict` with the
    whole request ("Failed to predict data '<every array>'. \\nError: ..."); this class keeps the
    message it was created with.
    """

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):  # set once, by MlflowException.__init__
            self._message = value


class MetricModel(mlflow.pyfunc.PythonModel):
    """A keras_percept LPIPS metric as an MLflow pyfunc model: `{"x0", "x1"}` in, `{"distance"}` out.

    Example:

    >>> model = mlflow.pyfunc.load_model("models:/my-metric@latest-trained")  # doctest: +SKIP
    >>> model.predict({"x0": x0, "x1": x1})["distance"]  # doctest: +SKIP
    array([0.213], dtype=float32)
    """

    def load_context(self, context) -> None:
        self.metric = keras.saving.load_model(context.artifacts[ARTIFACT])
        if not isinstance(self.metric, LPIPS):
            raise TypeError(f"The artifact {ARTIFACT!r} holds a {type(self.metric).__name__}, not an LPIPS metric.")

    def predict(self, context, model_input, params=None) -> dict[str, np.ndarray]:
        if not isinstance(model_input, dict):
            raise InvalidMetricInput(
                'Send the images as tensors: {"inputs": {"x0": [...], "x1": [...]}}, each (N, H, W, 3). '
                f"Received: {type(model_input).__name__}"
            )
        missing = [name for name in INPUTS if name not in model_input]
        if missing:
            raise InvalidMetricInput(f"Missing input(s) {missing}; the metric takes x0 and x1, each (N, H, W, 3).")
        try:
            distance = self.metric.distance(np.asarray(model_input["x0"]), np.asarray(model_input["x1"]))
        except ValueError as err:
            raise InvalidMetricInput(" ".join(str(err).split())) from None
        return {"distance": distance}


def metric_signature(metric: LPIPS) -> ModelSignature:
    """`x0`, `x1`: float32 `(-1, -1, -1, 3)` -> `distance`: `(-1,)` (a spatial metric: `(-1, -1, -1, 1)`)."""
    image = (-1, -1, -1, 3)
    output = (-1, -1, -1, 1) if metric.spatial else (-1,)
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), image, name) for name in INPUTS]),
        outputs=Schema([TensorSpec(np.dtype("float32"), output, "distance")]),
    )


def metric_input_example(metric: LPIPS) -> dict[str, np.ndarray]:
    """One pair of small images in the metric's input range (a flat image and a brighter one)."""
    size = max(32, metric.backbone.MIN_SIZE)
    low = -1.0 if metric.input_range == "[-1,1]" else 0.0
    return {"x0": np.full((1, size, size, 3), low + 0.25, np.float32),
            "x1": np.full((1, size, size, 3), low + 0.75, np.float32)}


def log_metric_model(metric_path: str | os.PathLike, *, name: str = "metric", registered_model_name: str | None = None,
                     alias: str | None = None, pip_requirements: list[str] | None = None):
    """Logs a `.keras` metric to the active MLflow run as a servable pyfunc model; returns its `ModelInfo`.

    Args:
        metric_path: the `.keras` metric; it is stored among the model's artifacts unchanged.
        name: the model's name in the run. Defaults to `"metric"`.
        registered_model_name: also register it under this name. Defaults to `None`.
        alias: with `registered_model_name`, point this alias (e.g. `"latest-trained"`) at the
            new version. Defaults to `None`.
        pip_requirements: the serving environment's requirements. Defaults to `None` (MLflow infers them).

    Example:

    >>> with mlflow.start_run():  # doctest: +SKIP
    ...     log_metric_model("metric.keras", registered_model_name="lin", alias="latest-trained")
    """
    metric_path = os.fspath(metric_path)
    metric = keras.saving.load_model(metric_path)
    info = mlflow.pyfunc.log_model(
        name=name, python_model=MetricModel(), artifacts={ARTIFACT: metric_path},
        signature=metric_signature(metric), input_example=metric_input_example(metric),
        registered_model_name=registered_model_name, pip_requirements=pip_requirements,
    )
    if registered_model_name and alias:
        mlflow.MlflowClient().set_registered_model_alias(registered_model_name, alias, info.registered_model_version)
    return info
