"""Image validation and file I/O shared by models and the CLI.

Every check raises `ValueError` naming what was received and what is expected:
LPIPS ports are most often misused with the wrong value range, uint8 arrays,
grayscale images or channels-first layouts.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from typing import Sequence

import numpy as np

from keras_percept.atomic import atomic_path

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


def checked_image_pair(x0, x1, input_range: str, *, min_size: int = 1, net: str = "") -> tuple[np.ndarray, np.ndarray]:
    """`x0`, `x1` as float32 NumPy batches after every check a metric's `distance()` makes.

    Single images `(H, W, 3)` become batches of one. Shapes, dtypes and sizes as
    `check_image_batch_pair`, values as `check_image_values`; float32 data is not copied.

    Example:

    >>> checked_image_pair(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), "[0,1]")[0].shape
    (1, 8, 8, 3)
    """
    x0, x1 = np.asarray(x0), np.asarray(x1)
    if x0.ndim == 3 and x1.ndim == 3:
        x0, x1 = x0[None], x1[None]
    check_image_batch_pair(x0.shape, x1.shape, str(x0.dtype), str(x1.dtype), min_size=min_size, net=net)
    check_image_values(x0, "x0", input_range)
    check_image_values(x1, "x1", input_range)
    return x0.astype("float32", copy=False), x1.astype("float32", copy=False)


# At most this many pixels per image side of one trunk call of `distance()`: 8 images of 256 x 256
# (vgg at that size holds about 1 GB of float32 activations per 8 pairs); 64 px batches stay whole up to 128.
CHUNK_PIXELS = 8 * 256 * 256


def pair_chunks(n: int, height: int, width: int, batch_size: int, chunk_pixels: int | None = CHUNK_PIXELS):
    """The `slice`s of `n` image pairs that `distance()` runs through the model one at a time.

    Batches of `batch_size` pairs, each cut further so that no call holds
    more than `chunk_pixels` pixels per side (`None`: no cut), except that
    a call holds at least one pair: the trunk's activations, not the batch
    size a caller chose, then bound the memory of large images (measured on
    vgg at 256 px: see the README's speed table). LPIPS and DISTS distances
    do not depend on the cut.

    Example:

    >>> [(s.start, s.stop) for s in pair_chunks(40, 256, 256, batch_size=32)]
    [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"Argument `batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    step = batch_size if chunk_pixels is None else max(1, min(batch_size, chunk_pixels // (height * width)))
    for batch in range(0, n, batch_size):
        end = min(n, batch + batch_size)
        for start in range(batch, end, step):
            yield slice(start, min(end, start + step))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as a viewer shows it: float32 RGB in [0, 1], shape `(H, W, 3)`.

    The one decoder of the package: the CLI and the `tf.data` readers (through
    `tf.numpy_function`) both call it, so a file gives the same pixels everywhere.

    - EXIF orientation (all 8 values; JPEG, PNG, TIFF, WebP) is applied, as viewers and
      OpenCV's `imread` do: a phone photo stored sideways comes out upright.
    - 16-bit files keep their precision: grayscale PNG/TIFF, colour PNG (decoded with
      TensorFlow, as Pillow reduces it to 8 bits) and uncompressed colour TIFF. A compressed
      16-bit colour TIFF is read at 8 bits, with a warning.
    - Grayscale and palette images are expanded to RGB; an alpha channel (RGBA, LA, palette
      transparency) is dropped, keeping the colours stored under it (as OpenCV does).
    - CMYK (e.g. from print workflows) is converted to RGB; an embedded ICC profile is
      converted to sRGB (what a colour-managed viewer shows; OpenCV ignores profiles), for
      8-bit images; a 16-bit image's profile is ignored, with a warning.
    - GIF, animated WebP and multi-page TIFF: the first frame/page, with a warning.
    - Truncated or damaged files, 32-bit integer or floating-point images and unknown
      formats raise `ValueError` saying what to do.

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
            if getattr(img, "n_frames", 1) > 1:
                kind = "pages" if img.format == "TIFF" else "frames"
                warnings.warn(f"{path!r} has {img.n_frames} {kind}; reading the first.", stacklevel=2)
            orientation = _orientation(img)
            direct = _colour_16_bit(img, path)  # before load(), which empties the TIFF tile list
            img.load()
            if direct is None:
                orientation = _orientation(img)  # Pillow's TIFF loader applies the orientation itself
            arr = _pixels(img, path, direct)
    except UnidentifiedImageError as err:
        raise ValueError(
            f"Could not read image {path!r}: not an image format Pillow knows ({err}). "
            "Convert it to PNG or JPEG."
        ) from err
    except (OSError, SyntaxError) as err:
        raise ValueError(
            f"Could not read image {path!r}: the file is truncated or damaged ({err}). "
            "Copy or export it again."
        ) from err
    return np.ascontiguousarray(orient(arr, orientation))


def image_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """`(H, W, 3)` of `load_image(path)`, from the file header only (EXIF orientation applied).

    Example:

    >>> image_shape("phone_photo.jpg")  # doctest: +SKIP
    (4032, 3024, 3)
    """
    from PIL import Image

    with Image.open(os.fspath(path)) as img:
        width, height = img.size  # Pillow gives a TIFF's size upright already
        if img.format != "TIFF" and _orientation(img, header_only=True) in _SWAPS_AXES:
            width, height = height, width
    return (height, width, 3)


# EXIF Orientation -> the transform that shows the stored pixels upright (TIFF 6.0 / EXIF 2.3).
_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
_SWAPS_AXES = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112
_16_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I;16N")
# Modes converted before colour management: alpha dropped (the stored colour kept), palettes expanded.
_OPAQUE = {"RGBA": "RGB", "RGBa": "RGB", "LA": "L", "La": "L", "PA": "RGB", "P": "RGB", "1": "L"}


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Applies EXIF `orientation` (1..8) to an `(H, W, C)` array; other values leave it as is.

    Example:

    >>> orient(np.arange(6).reshape(2, 3, 1), 6)[..., 0]  # stored sideways, shown upright
    array([[3, 0],
           [4, 1],
           [5, 2]])
    """
    return _ORIENT.get(orientation, _ORIENT[1])(image)


def _orientation(img, *, header_only: bool = False) -> int:
    """EXIF orientation; `header_only` skips a PNG's eXIf chunk after the pixels (getexif() decodes them)."""
    from PIL import Image

    try:
        if header_only and img.format == "PNG":
            exif = Image.Exif()
            exif.load(img.info.get("exif", b""))
            value = exif.get(_EXIF_ORIENTATION, 1)
        else:
            value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except OSError:  # a truncated file: reported by the caller
        raise
    except Exception as err:  # a damaged EXIF block: the pixels are still good
        warnings.warn(f"Unreadable EXIF data ({err}); orientation not applied.", stacklevel=3)
        return 1
    return value if value in _ORIENT else 1


def _pixels(img, path: str, depth16: np.ndarray | None) -> np.ndarray:
    """The decoded image (or `depth16`, its 16-bit colour pixels) as float32 RGB in [0, 1]."""
    mode = img.mode
    if mode in _16_BIT_GRAY or depth16 is not None:
        if "icc_profile" in img.info:
            warnings.warn(f"{path!r}: the ICC profile of a 16-bit image is ignored (read as sRGB).", stacklevel=3)
        arr = np.asarray(img, dtype=np.float32)[..., None] if depth16 is None else depth16
        arr = arr.astype(np.float32) / 65535.0
        return np.repeat(arr[..., :1], 3, axis=-1) if arr.shape[-1] <= 2 else arr[..., :3]
    if mode in ("I", "F"):
        raise ValueError(
            f"Image {path!r} has 32-bit {'integer' if mode == 'I' else 'floating-point'} pixels (mode {mode!r}), "
            "which have no standard display range. Convert it to an 8- or 16-bit PNG or TIFF."
        )
    if mode in _OPAQUE:
        img = img.convert(_OPAQUE[mode])
    icc = img.info.get("icc_profile")
    if icc and img.mode in ("RGB", "CMYK", "L"):
        img = _to_srgb(img, icc, path)
    try:
        rgb = img if img.mode == "RGB" else img.convert("RGB")
    except ValueError as err:
        raise ValueError(f"Image {path!r} has mode {img.mode!r}, which cannot be converted to RGB ({err}). "
                         "Convert it to an RGB PNG or JPEG.") from err
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _to_srgb(img, icc: bytes, path: str):
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(img, source, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as err:
        warnings.warn(f"{path!r}: unusable ICC profile ({err}); colours read as sRGB.", stacklevel=4)
        return img


@functools.lru_cache(maxsize=1)
def _srgb_profile():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _colour_16_bit(img, path: str) -> np.ndarray | None:
    """The `(H, W, C)` uint16 pixels of a 16-bit colour PNG or uncompressed TIFF (Pillow gives 8 bits)."""
    if img.format == "PNG" and img.mode not in _16_BIT_GRAY:
        with open(path, "rb") as f:
            header = f.read(26)
        if len(header) == 26 and header[24] == 16:  # IHDR bit depth
            import tensorflow as tf  # deferred: the CLI needs TensorFlow only for this case

            with open(path, "rb") as f:
                return tf.io.decode_png(f.read(), dtype=tf.uint16).numpy()
        return None
    if img.format == "TIFF" and img.mode in ("RGB", "RGBA"):
        bits = img.tag_v2.get(258, (8,))
        if max(bits) <= 8:
            return None
        width = img.tag_v2[256]  # stored width (img.size is upright)
        raw = [t for t in img.tile if t.codec_name == "raw" and t.args[0] in (f"{img.mode};16L", f"{img.mode};16B")
               and t.extents[0] == 0 and t.extents[2] == width]
        if not raw or len(raw) != len(img.tile):
            warnings.warn(f"{path!r} is a compressed {max(bits)}-bit colour TIFF; read at 8 bits "
                          "(save it uncompressed or as a 16-bit PNG to keep the precision).", stacklevel=4)
            return None
        return _raw_tiff_16(img, path, raw)
    return None


def _raw_tiff_16(img, path: str, tiles) -> np.ndarray:
    channels = len(img.mode)
    width, height = img.tag_v2[256], img.tag_v2[257]
    out = np.zeros((height, width, channels), dtype=np.uint16)
    with open(path, "rb") as f:
        for tile in tiles:
            _, y0, _, y1 = tile.extents
            y1 = min(y1, height)
            dtype = "<u2" if tile.args[0].endswith("L") else ">u2"
            f.seek(tile.offset)
            count = (y1 - y0) * width * channels
            data = np.frombuffer(f.read(2 * count), dtype=dtype)
            if data.size != count:
                raise OSError(f"image file is truncated ({data.size} of {count} values)")
            out[y0:y1] = data.reshape(y1 - y0, width, channels)
    return out


def save_heatmap(distance_map: np.ndarray, path: str | os.PathLike, vmax: float | None = None) -> None:
    """Writes a `(H, W)` or `(H, W, 1)` distance map as a colour PNG in matplotlib's viridis colormap.

    The file is written crash-safely (`atomic_write_image`). `vmax` fixes the top of the colour scale
    (default: the map's maximum).

    Example:

    >>> save_heatmap(metric.distance(x0, x1, spatial=True)[0], "heat.png")  # doctest: +SKIP
    """
    from matplotlib import colormaps
    from PIL import Image

    d = np.asarray(distance_map, dtype=np.float32).squeeze()
    if d.ndim != 2:
        raise ValueError(f"Argument `distance_map` must be 2-D (H, W). Received shape {np.shape(distance_map)}.")
    top = float(vmax) if vmax is not None else float(d.max())
    t = np.clip(d / top, 0.0, 1.0) if top > 0 else np.zeros_like(d)
    rgb = colormaps["viridis"](t, bytes=True)[..., :3]
    atomic_write_image(Image.fromarray(rgb), path)


def atomic_write_image(image, path: str | os.PathLike) -> None:
    """Saves a PIL image crash-safely (see `keras_percept.atomic`); the format follows the extension.

    Example:

    >>> from PIL import Image
    >>> atomic_write_image(Image.new("RGB", (4, 4)), "/tmp/black.png")
    """
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").upper() or "PNG"
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)
