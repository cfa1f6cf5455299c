"""Image validation and file I/O shared by models and the CLI.

Every check raises `ValueError` naming what was received and what is expected:
LPIPS ports are most often misused with the wrong value range, uint8 arrays,
grayscale images or channels-first layouts.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

_RANGES = {"[-1,1]": (-1.0, 1.0), "[0,1]": (0.0, 1.0)}
# Float rounding slack when checking the value range (e.g. 2 * 1.0000001 - 1).
_RANGE_TOLERANCE = 1e-4


def check_image_batch_pair(
    shape0: Sequence[int | None],
    shape1: Sequence[int | None],
    dtype0: str = "float32",
    dtype1: str = "float32",
    *,
    min_size: int = 1,
    net: str = "",
) -> None:
    """Checks two image batches' static shapes and dtypes.

    Expects rank 4 `(N, H, W, 3)` (channels last), equal shapes, floating
    dtypes and `H, W >= min_size`. Unknown (`None`) dimensions pass.

    Example:

    >>> check_image_batch_pair((2, 64, 64, 3), (2, 64, 64, 1))
    Traceback (most recent call last):
    ValueError: x1 has 1 channel(s) ... grayscale ...
    """
    for label, shape, dtype in (("x0", shape0, dtype0), ("x1", shape1, dtype1)):
        if len(shape) != 4:
            raise ValueError(
                f"{label} must be a batch of images of rank 4 (N, H, W, 3), channels last. "
                f"Received shape {tuple(shape)} (rank {len(shape)})."
            )
        channels = shape[-1]
        if channels is not None and channels != 3:
            hint = ""
            if channels == 1:
                hint = " For grayscale, repeat to 3 channels (e.g. np.repeat(x, 3, axis=-1))."
            elif channels == 4:
                hint = " For RGBA, drop the alpha channel (x[..., :3])."
            elif shape[1] == 3:
                hint = " This looks channels-first (N, 3, H, W): transpose to (N, H, W, 3)."
            raise ValueError(
                f"{label} has {channels} channel(s) in shape {tuple(shape)}; expected 3 (RGB), "
                f"channels last.{hint}"
            )
        if dtype and ("int" in dtype or "bool" in dtype):
            raise ValueError(
                f"{label} has dtype {dtype}; expected floating point images. Convert uint8 images "
                "with x.astype('float32') / 127.5 - 1 for input_range='[-1,1]' "
                "(or / 255 for input_range='[0,1]')."
            )
        for size in shape[1:3]:
            if size is not None and size < min_size:
                raise ValueError(
                    f"{label} is {shape[1]}x{shape[2]} pixels; the {net or 'trunk'} trunk needs at "
                    f"least {min_size}x{min_size}."
                )
    if all(a is not None and b is not None for a, b in zip(shape0, shape1)):
        if tuple(shape0) != tuple(shape1):
            raise ValueError(
                f"x0 and x1 must have the same shape. Received: x0 {tuple(shape0)}, x1 {tuple(shape1)}."
            )


def check_image_values(x: np.ndarray, label: str, input_range: str) -> None:
    """Checks that an array is finite and within `input_range` ("[-1,1]" or "[0,1]").

    Example:

    >>> check_image_values(np.full((1, 8, 8, 3), 200.0), "x0", "[-1,1]")
    Traceback (most recent call last):
    ValueError: x0 has values in [200, 200], outside input_range='[-1,1]' ...
    """
    if input_range not in _RANGES:
        raise ValueError(f"Argument `input_range` must be one of {tuple(_RANGES)}. Received: {input_range!r}")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{label} has dtype {x.dtype}; expected floating point images.")
    # Two passes over the data: NaN propagates through min/max and Inf shows up in them, so the
    # element-wise finiteness check only runs when something is wrong (it counts the bad values).
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(x.size - np.isfinite(x).sum())
        raise ValueError(f"{label} contains {bad} NaN/Inf value(s); images must be finite.")
    low, high = _RANGES[input_range]
    if lo < low - _RANGE_TOLERANCE or hi > high + _RANGE_TOLERANCE:
        hint = ""
        if hi > 2.0:
            hint = " It looks like 0..255 data: divide by 127.5 and subtract 1 (or divide by 255 for '[0,1]')."
        elif input_range == "[0,1]" and lo < 0:
            hint = " It looks like [-1, 1] data: use input_range='[-1,1]'."
        raise ValueError(
            f"{label} has values in [{lo:.4g}, {hi:.4g}], outside input_range={input_range!r} "
            f"(expected [{low:g}, {high:g}]).{hint}"
        )


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as float32 RGB in [0, 1], shape `(H, W, 3)`.

    Grayscale files are repeated to 3 channels and an alpha channel is
    dropped (with the image composited on nothing: alpha is ignored).

    Example:

    >>> load_image("cat.png").shape  # doctest: +SKIP
    (300, 451, 3)
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(img, dtype=np.float32) / (65535.0 if mode.startswith("I;16") else 2**31 - 1)
                arr = np.repeat(arr[..., None], 3, axis=-1)
            else:
                arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"Could not read image {path!r}: {err}") from err
    return arr


def save_heatmap(distance_map: np.ndarray, path: str | os.PathLike, vmax: float | None = None) -> None:
    """Writes a `(H, W)` or `(H, W, 1)` distance map as a colour PNG (viridis-like ramp).

    The file is written to a temporary name and renamed, so a failure never
    leaves a half-written image. `vmax` fixes the top of the colour scale
    (default: the map's maximum).
    """
    from PIL import Image

    d = np.asarray(distance_map, dtype=np.float32).squeeze()
    if d.ndim != 2:
        raise ValueError(f"Argument `distance_map` must be 2-D (H, W). Received shape {np.shape(distance_map)}.")
    top = float(vmax) if vmax is not None else float(d.max())
    t = np.clip(d / top, 0.0, 1.0) if top > 0 else np.zeros_like(d)
    # Anchor colours of matplotlib's viridis at 0, .25, .5, .75, 1.
    anchors = np.array(
        [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32
    )
    pos = t * (len(anchors) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    frac = (pos - lo)[..., None]
    rgb = anchors[lo] * (1 - frac) + anchors[lo + 1] * frac
    atomic_write_image(Image.fromarray(rgb.round().astype(np.uint8)), path)


def atomic_write_image(image, path: str | os.PathLike) -> None:
    """Saves a PIL image via a temporary file in the same directory, then renames it."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    fmt = os.path.splitext(path)[1].lstrip(".").upper() or "PNG"
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    try:
        image.save(tmp, format=fmt)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
