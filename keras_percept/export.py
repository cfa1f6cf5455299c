"""Exporting an LPIPS metric as a TensorFlow SavedModel for serving (TF Serving, `tf.saved_model.load`).

The artifact has one endpoint, `serve` (also the `serving_default`
signature), with a fixed signature:

- inputs: `x0`, `x1`, float32 `(None, H, W, 3)` in the metric's `input_range`;
  `H, W` are `None` (any size the trunk accepts) unless `image_shape` fixes them;
- outputs: `distance`, float32 `(None,)` (`(None, H, W, 1)` for a spatial
  metric), plus `layer_0`, `layer_1`, ... for a metric with `return_per_layer=True`.

Loading it needs TensorFlow only: no Keras, no keras_percept.

Which backends can export: TensorFlow (native) and JAX (through `jax2tf`,
with `H, W` symbolic). Keras's torch path needs `torch_xla` and fixed shapes,
so the torch backend is refused with an error saying to re-run under
TensorFlow: a `.keras` file is backend-independent.

`export_onnx` writes the same endpoint as an ONNX model (inputs `x0`, `x1`,
outputs as above, batch and size dynamic) through `tf2onnx`, the converter
Keras's own `model.export(format="onnx")` uses on TensorFlow; so it needs the
TensorFlow backend. (On JAX, Keras's ONNX route is `jax2onnx`, which pulls
flax, optax and orbax into the install, and `jax2tf`'s output is an
`XlaCallModule` that `tf2onnx` cannot convert; on torch, Keras's exporter
fixes every dimension. A `.keras` file loads on TensorFlow, so both are
refused with the command to run instead.)
"""

from __future__ import annotations

import os
import shutil

import keras

from keras_percept.atomic import atomic_path

SIGNATURE_KEY = "serving_default"
ENDPOINT = "serve"
EXPORT_BACKENDS = ("tensorflow", "jax")
ONNX_BACKENDS = ("tensorflow",)


class UnsupportedBackendError(ValueError):
    """The active Keras backend (`KERAS_BACKEND`) cannot write a SavedModel."""


def export_saved_model(
    model,
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> str:
    """Writes `model` as a TensorFlow SavedModel with the signature `(x0, x1) -> {"distance"}`.

    The export goes to a temporary folder next to `path` and is renamed into
    place when complete, so a failure leaves nothing behind and never
    touches an existing export unless `overwrite=True`.

    Args:
        model: an `LPIPS` model, or the path of a `.keras` file holding one.
        path: output folder (must not exist or be empty, unless `overwrite`).
        image_shape: `(H, W)` to fix the input size, or `None` for any size
            (at least the trunk's minimum). Defaults to `None`.
        overwrite: replace an existing non-empty `path`. Defaults to `False`.

    Returns:
        `path` as a string.

    Example:

    >>> export_saved_model(LPIPS(net="alex"), "lpips_alex_savedmodel")  # doctest: +SKIP
    >>> served = tf.saved_model.load("lpips_alex_savedmodel")  # doctest: +SKIP
    >>> served.signatures["serving_default"](x0=x0, x1=x1)["distance"]  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    if backend not in EXPORT_BACKENDS:
        raise UnsupportedBackendError(
            f"Exporting a SavedModel needs the TensorFlow or JAX Keras backend. Received: KERAS_BACKEND={backend!r} "
            "(Keras's torch export needs torch_xla and fixed shapes). A .keras file loads on any backend, so "
            "re-run under TensorFlow, e.g. `KERAS_BACKEND=tensorflow keras-percept export MODEL.keras OUT_DIR`."
        )
    model, image_shape = _checked(model, image_shape)
    path = os.fspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)) and not overwrite:
        raise FileExistsError(f"Export path {path!r} exists and is not empty; pass overwrite=True "
                              "(--overwrite on the command line) to replace it.")

    archive, _ = _archive(model, image_shape)
    with atomic_path(path) as tmp:
        archive.write_out(tmp, verbose=False)
        _remove(path)  # os.replace cannot replace a non-empty folder; the new export is complete already
    return path


def export_onnx(
    model,
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, int] | None = None,
    overwrite: bool = False,
    opset: int | None = None,
) -> str:
    """Writes `model` as an ONNX file with the signature `(x0, x1) -> distance` (TensorFlow backend).

    The graph is the SavedModel's `serve` endpoint converted by `tf2onnx`:
    inputs `x0`, `x1` float32 `(batch, H, W, 3)`, output `distance` (plus
    `layer_k` for `return_per_layer`), batch and size dynamic unless
    `image_shape` fixes the size. It runs in `onnxruntime` without
    TensorFlow, Keras or keras_percept. Written to a temporary sibling and
    renamed into place, so a failure or a kill never leaves a partial file.

    Args:
        model: an `LPIPS` model, or the path of a `.keras` file holding one.
        path: output file, e.g. `alex.onnx`.
        image_shape: `(H, W)` to fix the input size, or `None` for any size
            (at least the trunk's minimum). Defaults to `None`.
        overwrite: replace an existing file. Defaults to `False`.
        opset: the ONNX opset, or `None` for `tf2onnx`'s default.

    Returns:
        `path` as a string.

    Example:

    >>> export_onnx(LPIPS(net="alex"), "alex.onnx")  # doctest: +SKIP
    >>> import onnxruntime
    >>> session = onnxruntime.InferenceSession("alex.onnx")  # doctest: +SKIP
    >>> session.run(["distance"], {"x0": x0, "x1": x1})[0]  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    if backend not in ONNX_BACKENDS:
        raise UnsupportedBackendError(
            f"Exporting ONNX needs the TensorFlow Keras backend (its converter is tf2onnx). Received: "
            f"KERAS_BACKEND={backend!r}. A .keras file loads on any backend, so re-run under TensorFlow, e.g. "
            "`KERAS_BACKEND=tensorflow keras-percept export MODEL.keras OUT.onnx --format onnx`."
        )
    try:
        import tf2onnx
    except ImportError as error:
        raise ImportError("Exporting ONNX needs tf2onnx and onnx: `pip install 'keras-percept[onnx]'`.") from error
    model, image_shape = _checked(model, image_shape)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"ONNX export path {path!r} is a folder; give a file name such as 'metric.onnx'.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"Export path {path!r} exists; pass overwrite=True (--overwrite on the command line) "
                              "to replace it.")

    _, (function, signature) = _archive(model, image_shape)
    with atomic_path(path) as tmp:
        tf2onnx.convert.from_function(function, input_signature=signature, opset=opset, output_path=tmp)
    return path


def _checked(model, image_shape):
    """(the LPIPS model, `image_shape` as a tuple or None), or a ValueError naming the bad argument."""
    from keras_percept.models.lpips import LPIPS

    if isinstance(model, (str, os.PathLike)):
        model_path = os.fspath(model)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"Model file not found: {model_path!r}")
        model = keras.saving.load_model(model_path)
    if not isinstance(model, LPIPS):
        raise ValueError(
            f"Argument `model` must be an LPIPS model or a .keras path holding one. Received: {type(model).__name__}"
            + (" (export its `.metric`)" if hasattr(model, "metric") else "")
        )
    min_size = model.backbone.MIN_SIZE
    if image_shape is not None:
        image_shape = tuple(image_shape)
        if len(image_shape) != 2 or any(not isinstance(s, int) or s < min_size for s in image_shape):
            raise ValueError(
                f"Argument `image_shape` must be (H, W) with integers >= {min_size} for net={model.net!r}, "
                f"or None. Received: image_shape={image_shape}"
            )
    return model, image_shape


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _archive(model, image_shape):
    """(the `ExportArchive` with the `serve` endpoint, (that endpoint's `tf.function`, its input signature))."""
    import tensorflow as tf

    height, width = image_shape if image_shape is not None else (None, None)
    signature = [tf.TensorSpec((None, height, width, 3), tf.float32, name=name) for name in ("x0", "x1")]

    def serve(x0, x1):
        out = model((x0, x1), training=False)
        if model.return_per_layer:
            total, terms = out
            return {"distance": total, **{f"layer_{k}": term for k, term in enumerate(terms)}}
        return {"distance": out}

    kwargs = {}
    if keras.backend.backend() == "jax":
        # One symbol per dimension shared by x0 and x1 (so LPIPS's equal-shape check is decidable),
        # the trunk's minimum size as a constraint, and no gradient graph (jax2tf's custom gradient
        # cannot be saved with symbolic shapes, and serving needs none).
        dims = f"(b, {height or 'h'}, {width or 'w'}, 3)"
        constraints = [f"{d} >= {model.backbone.MIN_SIZE}" for d, size in (("h", height), ("w", width)) if size is None]
        kwargs["jax2tf_kwargs"] = {"polymorphic_shapes": [dims, dims], "polymorphic_constraints": constraints,
                                   "with_gradient": False}
    archive = keras.export.ExportArchive()
    archive.track(model)
    function = archive.add_endpoint(ENDPOINT, serve, input_signature=signature, **kwargs)
    return archive, (function, signature)
