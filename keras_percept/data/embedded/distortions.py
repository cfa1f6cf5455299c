"""The distortion families of the embedded dataset, as data: one function per family.

Every function maps a float32 RGB context crop in [0, 1] and a severity
`s` in (0, 1] to a distorted copy (clipped to [0, 1]); randomness (noise,
directions, signs) comes only from the generator passed in. Parameter ranges
were set by eye so that equal `s` looks about equally bad across families:
that hand calibration, not a measurement, is the "common scale" the
simulated observer uses.

Groups follow BAPPS's "traditional" distortions: photometric, noise, blur,
spatial, compression, and combinations of two.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Callable

import numpy as np
from scipy import ndimage

Distortion = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Family:
    """A distortion family: its `group`, how its visibility depends on image content (`masking`), the function."""

    group: str
    masking: str  # "none" | "texture_hides" (additive errors) | "texture_reveals" (geometric/blur errors) | "both"
    apply: Distortion


def _luma(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _direction(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.sin(angle), np.cos(angle)])


def _translate(x: np.ndarray, dy: float, dx: float) -> np.ndarray:
    return ndimage.shift(x, (dy, dx, 0), order=1, mode="reflect")


# --- photometric -------------------------------------------------------------
def lightness(x, s, rng):
    return x + _sign(rng) * 0.3 * s


def color_shift(x, s, rng):
    v = rng.normal(size=3)
    v -= v.mean()  # a hue change with little lightness change
    return x + 0.15 * s * v / np.linalg.norm(v)


def contrast(x, s, rng):
    factor = 1 - 0.5 * s if rng.random() < 0.5 else 1 + 0.7 * s
    return (x - x.mean()) * factor + x.mean()


def saturation(x, s, rng):
    gray = _luma(x)[..., None]
    factor = 1 - 0.8 * s if rng.random() < 0.5 else 1 + 1.0 * s
    return gray + (x - gray) * factor


def gamma(x, s, rng):
    return np.clip(x, 0, 1) ** (2.0 ** (_sign(rng) * 1.3 * s))


# --- noise -------------------------------------------------------------------
def gaussian_noise(x, s, rng):
    return x + rng.normal(0, 0.12 * s, x.shape)


def uniform_noise(x, s, rng):
    return x + rng.uniform(-0.2 * s, 0.2 * s, x.shape)


def _spectral_noise(shape, exponent: float, rng) -> np.ndarray:
    """Per-channel noise with amplitude spectrum |f|^exponent, unit standard deviation."""
    h, w, c = shape
    f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    f[0, 0] = 1.0
    spectrum = np.fft.rfft2(rng.normal(size=shape), axes=(0, 1)) * (f ** exponent)[..., None]
    spectrum[0, 0] = 0
    noise = np.fft.irfft2(spectrum, s=(h, w), axes=(0, 1))
    return noise / noise.std()


def pink_noise(x, s, rng):
    return x + 0.07 * s * _spectral_noise(x.shape, -1.0, rng)


def blue_noise(x, s, rng):
    return x + 0.14 * s * _spectral_noise(x.shape, 1.0, rng)


def colored_noise(x, s, rng):
    noise = rng.normal(0, 1, x.shape)
    return x + 0.16 * s * (noise - noise.mean(axis=-1, keepdims=True))  # chroma only


def salt_pepper(x, s, rng):
    hit = rng.random(x.shape[:2]) < 0.06 * s
    out = x.copy()
    out[hit] = (rng.random(int(hit.sum())) < 0.5)[:, None]
    return out


# --- blur --------------------------------------------------------------------
def gaussian_blur(x, s, rng):
    return ndimage.gaussian_filter(x, sigma=(2.5 * s, 2.5 * s, 0))


def box_blur(x, s, rng):
    size = int(round(1 + 8 * s))
    return ndimage.uniform_filter(x, size=(size, size, 1), mode="reflect")


def motion_blur(x, s, rng):
    length = 2 + 12 * s
    radius = int(np.ceil(length / 2))
    kernel = np.zeros((2 * radius + 1, 2 * radius + 1), dtype=np.float32)
    dy, dx = _direction(rng)
    for t in np.linspace(-length / 2, length / 2, 4 * radius + 1):
        kernel[int(round(radius + t * dy)), int(round(radius + t * dx))] += 1
    kernel /= kernel.sum()
    return np.stack([ndimage.convolve(x[..., k], kernel, mode="reflect") for k in range(3)], axis=-1)


def pixelate(x, s, rng):
    block = 1 + 3 * s
    small = ndimage.zoom(x, (1 / block, 1 / block, 1), order=1, grid_mode=True, mode="reflect")
    zoom = (x.shape[0] / small.shape[0], x.shape[1] / small.shape[1], 1)
    return ndimage.zoom(small, zoom, order=0, grid_mode=True, mode="nearest")[: x.shape[0], : x.shape[1]]


# --- spatial -----------------------------------------------------------------
def shift(x, s, rng):
    dy, dx = (0.5 + 4.5 * s) * _direction(rng)
    return _translate(x, dy, dx)


def affine_warp(x, s, rng):
    from skimage.transform import AffineTransform, warp

    h, w = x.shape[:2]
    centre = np.array([w / 2, h / 2])
    transform = AffineTransform(
        rotation=np.deg2rad(_sign(rng) * 6 * s), scale=1 + _sign(rng) * 0.06 * s, shear=_sign(rng) * 0.08 * s
    )
    to_centre, back = AffineTransform(translation=-centre), AffineTransform(translation=centre)
    return warp(x, (to_centre + transform + back).inverse, order=1, mode="reflect")


def ghosting(x, s, rng):
    dy, dx = rng.uniform(4, 10) * _direction(rng)
    weight = 0.5 * s
    return (1 - weight) * x + weight * _translate(x, dy, dx)


def chromatic_aberration(x, s, rng):
    dy, dx = (0.2 + 1.6 * s) * _direction(rng)
    red, green, blue = (x[..., k] for k in range(3))
    red = ndimage.shift(red, (dy, dx), order=1, mode="reflect")
    blue = ndimage.shift(blue, (-dy, -dx), order=1, mode="reflect")
    return np.stack([red, green, blue], axis=-1)


# --- compression -------------------------------------------------------------
def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def jpeg(x, s, rng):
    return _jpeg(x, int(round(80 - 65 * s)))


def quantization(x, s, rng):
    levels = int(round(6 + 26 * (1 - s) ** 1.5))
    return np.round(np.clip(x, 0, 1) * (levels - 1)) / (levels - 1)


# --- combinations ------------------------------------------------------------
def blur_noise(x, s, rng):
    return gaussian_noise(gaussian_blur(x, 0.65 * s, rng), 0.5 * s, rng)


def jpeg_contrast(x, s, rng):
    return _jpeg((x - x.mean()) * (1 - 0.4 * s) + x.mean(), int(round(75 - 55 * s)))


def noise_jpeg(x, s, rng):
    return _jpeg(gaussian_noise(x, 0.6 * s, rng), int(round(75 - 50 * s)))


FAMILIES: dict[str, Family] = {
    "lightness": Family("photometric", "none", lightness),
    "color_shift": Family("photometric", "none", color_shift),
    "contrast": Family("photometric", "none", contrast),
    "saturation": Family("photometric", "none", saturation),
    "gamma": Family("photometric", "none", gamma),
    "gaussian_noise": Family("noise", "texture_hides", gaussian_noise),
    "uniform_noise": Family("noise", "texture_hides", uniform_noise),
    "pink_noise": Family("noise", "texture_hides", pink_noise),
    "blue_noise": Family("noise", "texture_hides", blue_noise),
    "colored_noise": Family("noise", "texture_hides", colored_noise),
    "salt_pepper": Family("noise", "texture_hides", salt_pepper),
    "gaussian_blur": Family("blur", "texture_reveals", gaussian_blur),
    "box_blur": Family("blur", "texture_reveals", box_blur),
    "motion_blur": Family("blur", "texture_reveals", motion_blur),
    "pixelate": Family("blur", "texture_reveals", pixelate),
    "shift": Family("spatial", "texture_reveals", shift),
    "affine_warp": Family("spatial", "texture_reveals", affine_warp),
    "ghosting": Family("spatial", "texture_reveals", ghosting),
    "chromatic_aberration": Family("spatial", "texture_reveals", chromatic_aberration),
    "jpeg": Family("compression", "texture_hides", jpeg),
    "quantization": Family("compression", "texture_hides", quantization),
    "blur_noise": Family("combination", "both", blur_noise),
    "jpeg_contrast": Family("combination", "both", jpeg_contrast),
    "noise_jpeg": Family("combination", "both", noise_jpeg),
}
GROUPS = tuple(dict.fromkeys(f.group for f in FAMILIES.values()))
# Held out of training: two families per group where a group has three or more.
DEFAULT_VAL_FAMILIES = (
    "saturation", "gamma", "blue_noise", "salt_pepper", "motion_blur", "pixelate",
    "ghosting", "chromatic_aberration", "quantization", "noise_jpeg",
)


def distort(context: np.ndarray, family: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Applies `family` at `severity` in (0, 1] to a float RGB image in [0, 1]; returns float32 in [0, 1].

    Example:

    >>> x = np.full((32, 32, 3), 0.5, dtype=np.float32)
    >>> round(float(abs(distort(x, "lightness", 1.0, np.random.default_rng(0)) - x).mean()), 2)
    0.3
    """
    if family not in FAMILIES:
        raise ValueError(f"Unknown distortion family {family!r}; available: {sorted(FAMILIES)}")
    if not 0 < severity <= 1:
        raise ValueError(f"Argument `severity` must be in (0, 1]. Received: severity={severity!r}")
    out = FAMILIES[family].apply(np.array(context, dtype=np.float32), float(severity), rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
