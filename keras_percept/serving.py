"""Serving a metric with `mlflow models serve`: an MLflow pyfunc model that imports keras_percept.

MLflow's Keras flavour loads a `.keras` file in the scoring server without importing
keras_percept, so the server dies at start with "Could not locate class 'LPIPS'". `MetricModel`
is a `mlflow.pyfunc.PythonModel` of this package: unpickling it imports keras_percept (which
registers the layers), `load_context` loads the `.keras` artifact, and `predict` checks the
request and answers `{"distance": [...]}`. `log_metric_model` logs it with the signature
`(x0, x1) -> distance` and an input example. Every bad request, MLflow's own signature check
included, is answered with HTTP 400 and a one-line message (`answer_schema_errors_in_one_line`).

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
from keras_percept.models.dists import DISTS
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
    """A keras_percept LPIPS or DISTS metric as an MLflow pyfunc model: `{"x0", "x1"}` in, `{"distance"}` out.

    Example:

    >>> model = mlflow.pyfunc.load_model("models:/my-metric@latest-trained")  # doctest: +SKIP
    >>> model.predict({"x0": x0, "x1": x1})["distance"]  # doctest: +SKIP
    array([0.213], dtype=float32)
    """

    def load_context(self, context) -> None:
        answer_schema_errors_in_one_line()
        self.metric = keras.saving.load_model(context.artifacts[ARTIFACT])
        if not isinstance(self.metric, (LPIPS, DISTS)):
            raise TypeError(f"The artifact {ARTIFACT!r} holds a {type(self.metric).__name__}, not an LPIPS or DISTS "
                            "metric.")

    def predict(self, context, model_input, params=None) -> dict[str, np.ndarray]:
        problem = request_problem(model_input)
        if problem:
            raise InvalidMetricInput(problem)
        try:
            distance = self.metric.distance(np.asarray(model_input["x0"]), np.asarray(model_input["x1"]))
        except ValueError as err:
            raise InvalidMetricInput(" ".join(str(err).split())) from None
        return {"distance": distance}


def request_problem(model_input) -> str | None:
    """What is wrong with a request's structure, in one line (`None`: x0 and x1, each `(N, H, W, 3)` numbers).

    Value checks (same shape, range, the trunk's minimum size) are the metric's own, in `predict`.
    """
    if not isinstance(model_input, dict):
        return ('Send the images as tensors: {"inputs": {"x0": [...], "x1": [...]}}, each (N, H, W, 3). '
                f"Received: {type(model_input).__name__}")
    missing = [name for name in INPUTS if name not in model_input]
    if missing:
        return f"Missing input(s) {missing}; the metric takes x0 and x1, each (N, H, W, 3). Received: {sorted(model_input)}"
    for name in INPUTS:
        try:
            array = np.asarray(model_input[name])
        except ValueError:  # ragged nested lists
            return f"Input {name} must be a rectangular (N, H, W, 3) array of numbers; its rows differ in length."
        if array.ndim != 4 or array.shape[-1] != 3:
            return f"Input {name} must be RGB images of shape (N, H, W, 3). Received: shape {array.shape}"
        if not np.issubdtype(array.dtype, np.number):
            return f"Input {name} must hold numbers. Received: dtype {array.dtype}"
    return None


_WRAPPED = "_keras_percept_one_line"


def answer_schema_errors_in_one_line() -> None:
    """Makes MLflow's signature check answer this package's one-line `InvalidMetricInput` (idempotent).

    Why our own: MLflow checks a request against the signature before `predict` runs, and the
    scoring server then prefixes the message of any exception that is not an `InvalidMetricInput`
    with the whole request, over several lines. MLflow has no hook for this
    (`MLFLOW_DISABLE_SCHEMA_DETAILS` shortens its part of the message, not the prefix). This wraps
    `mlflow.pyfunc._validate_prediction_input` for this package's signature (`x0`, `x1`, each a float32
    `(-1, -1, -1, 3)` tensor; in one process, another model with exactly that input gets these messages too):
    when MLflow's check fails, the error becomes `InvalidMetricInput` with `request_problem`'s
    message (or MLflow's own, on one line). Other models' checks are untouched. If a future
    MLflow renames the function, nothing is wrapped and the errors stay 4xx, over several lines.
    """
    from mlflow import pyfunc

    validate = getattr(pyfunc, "_validate_prediction_input", None)
    if validate is None or getattr(validate, _WRAPPED, False):
        return

    def validate_in_one_line(data, params, input_schema, *args, **kwargs):
        try:
            return validate(data, params, input_schema, *args, **kwargs)
        except MlflowException as err:
            if not _is_metric_schema(input_schema):
                raise
            cause = err.__context__ if isinstance(err.__context__, Exception) else err
            raise InvalidMetricInput(request_problem(data) or " ".join(str(cause).split())[:500]) from None

    setattr(validate_in_one_line, _WRAPPED, True)
    pyfunc._validate_prediction_input = validate_in_one_line


def _is_metric_schema(schema) -> bool:
    """Whether `schema` is `metric_signature`'s input: x0 and x1, each a float32 `(-1, -1, -1, 3)` tensor."""
    if schema is None or not schema.has_input_names() or list(schema.input_names()) != list(INPUTS):
        return False
    return all(isinstance(spec, TensorSpec) and spec.type == np.dtype("float32") and tuple(spec.shape) == (-1, -1, -1, 3)
               for spec in schema.inputs)


def metric_signature(metric: LPIPS | DISTS) -> ModelSignature:
    """`x0`, `x1`: float32 `(-1, -1, -1, 3)` -> `distance`: `(-1,)` (a spatial LPIPS: `(-1, -1, -1, 1)`; DISTS has no map)."""
    image = (-1, -1, -1, 3)
    output = (-1, -1, -1, 1) if getattr(metric, "spatial", False) else (-1,)
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), image, name) for name in INPUTS]),
        outputs=Schema([TensorSpec(np.dtype("float32"), output, "distance")]),
    )


def metric_input_example(metric: LPIPS | DISTS) -> dict[str, np.ndarray]:
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
