"""Classical full-reference distances (L2, PSNR, SSIM) on image batches: the baselines of BAPPS.

Every function takes two batches `(N, H, W, 3)` in `value_range` and returns
`(N,)` distances where larger means more different, so they plug into
`two_afc_score` and `jnd_map` like a learned metric.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

VALUE_RANGES = ("[-1,1]", "[0,1]")
COLORSPACES = ("rgb", "lab")


def l2_distance(x0, x1, *, value_range: str = "[-1,1]", colorspace: str = "rgb") -> np.ndarray:
    """Mean squared difference per image, in RGB scaled to [0, 1] or in CIELAB.

    Args:
        x0, x1: image batches `(N, H, W, 3)` in `value_range`.
        value_range: `"[-1,1]"` or `"[0,1]"`. Defaults to `"[-1,1]"`.
        colorspace: `"rgb"` or `"lab"` (the reference's default for its L2
            baseline). Defaults to `"rgb"`.

    Example:

    >>> x0 = np.zeros((1, 4, 4, 3)); x1 = np.full((1, 4, 4, 3), 0.5)
    >>> l2_distance(x0, x1, value_range="[0,1]")
    array([0.25])
    """
    if colorspace not in COLORSPACES:
        raise ValueError(f"Argument `colorspace` must be one of {COLORSPACES}. Received: colorspace={colorspace!r}")
    a, b = _to_unit(x0, x1, value_range)
    if colorspace == "lab":
        from skimage.color import rgb2lab

        a, b = rgb2lab(a, channel_axis=-1), rgb2lab(b, channel_axis=-1)
    return np.mean((a - b) ** 2, axis=(1, 2, 3))


def psnr_distance(x0, x1, *, value_range: str = "[-1,1]") -> np.ndarray:
    """Negative PSNR in dB (RGB, peak 1), so larger means more different; identical images give -inf.

    For ranking it agrees with RGB `l2_distance` (PSNR is a decreasing
    function of the mean squared error), so their 2AFC scores coincide.

    Example:

    >>> x0 = np.zeros((1, 4, 4, 3)); x1 = np.full((1, 4, 4, 3), 0.1)
    >>> np.round(psnr_distance(x0, x1, value_range="[0,1]"), 6)
    array([-20.])
    """
    mse = l2_distance(x0, x1, value_range=value_range)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(mse)


def ssim_distance(x0, x1, *, value_range: str = "[-1,1]") -> np.ndarray:
    """`1 - SSIM` per image (skimage, 7x7 window, colour channels averaged, data range 1).

    Example:

    >>> x = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3))
    >>> ssim_distance(x, x, value_range="[0,1]")
    array([0., 0.])
    """
    from skimage.metrics import structural_similarity

    a, b = _to_unit(x0, x1, value_range)
    return np.array([1.0 - structural_similarity(p, q, channel_axis=-1, data_range=1.0) for p, q in zip(a, b)])


CLASSICAL_DISTANCES: dict[str, Callable[..., np.ndarray]] = {
    "L2": l2_distance,
    "L2 (Lab)": lambda x0, x1, **kw: l2_distance(x0, x1, colorspace="lab", **kw),
    "PSNR": psnr_distance,
    "SSIM": ssim_distance,
}


def _to_unit(x0, x1, value_range: str) -> tuple[np.ndarray, np.ndarray]:
    if value_range not in VALUE_RANGES:
        raise ValueError(f"Argument `value_range` must be one of {VALUE_RANGES}. Received: value_range={value_range!r}")
    a, b = np.asarray(x0, dtype=np.float64), np.asarray(x1, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"x0 and x1 must both have shape (N, H, W, 3). Received {a.shape} and {b.shape}.")
    if value_range == "[-1,1]":
        a, b = (a + 1.0) / 2.0, (b + 1.0) / 2.0
    return a, b
