"""Image files of every kind cameras, phones, scanners and editors write, made with Pillow (and a
hand-written TIFF where Pillow cannot write one), each with the pixels a viewer shows, computed
without the reader under test.

`write_kind(kind, folder)` returns `(path, expected, atol)`: `expected` is float32 RGB in [0, 1].
"""

from __future__ import annotations

import os
import struct

import numpy as np
from PIL import Image, ImageCms

H, W = 12, 20  # not square: a missed rotation changes the shape


def _rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _f(a: np.ndarray, top: float = 255.0) -> np.ndarray:
    return (a.astype(np.float64) / top).astype(np.float32)


def smooth_rgb(seed: int = 0) -> np.ndarray:
    """A smooth image (JPEG keeps it within a few levels)."""
    y, x = np.mgrid[0:H, 0:W]
    phase = np.random.default_rng(seed).uniform(0, 6, 3)
    return np.stack([127 + 100 * np.sin(x / 5 + y / 7 + p) for p in phase], -1).round().astype(np.uint8)


def write_tiff_rgb16(path: str, pixels: np.ndarray, *, big_endian: bool = False) -> None:
    """An uncompressed 16-bit RGB TIFF, one strip (Pillow cannot write 16-bit colour)."""
    e = ">" if big_endian else "<"
    h, w, _ = pixels.shape
    data = pixels.astype(f"{e}u2").tobytes()
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, "bps"), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, "data"), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    ifd = 8
    bps = ifd + 2 + 12 * len(entries) + 4
    offsets = {"bps": bps, "data": bps + 6}
    out = bytearray((b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(f"{e}I", ifd))
    out += struct.pack(f"{e}H", len(entries))
    for tag, kind, count, value in entries:
        if isinstance(value, str):
            out += struct.pack(f"{e}HHII", tag, kind, count, offsets[value])
        elif kind == 3:
            out += struct.pack(f"{e}HHIHH", tag, kind, count, value, 0)
        else:
            out += struct.pack(f"{e}HHII", tag, kind, count, value)
    out += struct.pack(f"{e}I", 0) + struct.pack(f"{e}HHH", 16, 16, 16) + data
    with open(path, "wb") as f:
        f.write(out)


def write_png_rgb16(path: str, pixels: np.ndarray) -> None:
    import tensorflow as tf

    tf.io.write_file(path, tf.io.encode_png(tf.constant(pixels.astype(np.uint16))))


def _palette_image(transparent: bool):
    rng = np.random.default_rng(5)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    index = rng.integers(0, 16, (H, W), dtype=np.uint8)
    img = Image.fromarray(index, mode="P")
    img.putpalette(palette.reshape(-1).tolist())
    if transparent:
        img.info["transparency"] = 3
    return img, _f(palette[index])


def write_kind(kind: str, folder: str) -> tuple[str, np.ndarray, float]:
    os.makedirs(folder, exist_ok=True)
    rgb = _rgb()
    gray = rgb[..., 0]
    if kind == "gray":
        path = os.path.join(folder, "gray.png")
        Image.fromarray(gray, mode="L").save(path)
        return path, np.repeat(_f(gray)[..., None], 3, -1), 0.0
    if kind == "gray_alpha":
        path = os.path.join(folder, "gray_alpha.png")
        Image.fromarray(np.stack([gray, rgb[..., 1]], -1), mode="LA").save(path)
        return path, np.repeat(_f(gray)[..., None], 3, -1), 0.0
    if kind in ("palette", "palette_transparent", "gif"):
        img, expected = _palette_image(kind == "palette_transparent")
        path = os.path.join(folder, f"{kind}.{'gif' if kind == 'gif' else 'png'}")
        img.save(path, **({"transparency": 3} if kind == "palette_transparent" else {}))
        return path, expected, 0.0
    if kind == "rgba":
        path = os.path.join(folder, "rgba.png")
        Image.fromarray(np.concatenate([rgb, rgb[..., :1]], -1), mode="RGBA").save(path)
        return path, _f(rgb), 0.0
    if kind == "gray16_png" or kind == "gray16_tiff":
        g16 = np.random.default_rng(1).integers(0, 65536, (H, W), dtype=np.uint16)
        path = os.path.join(folder, f"{kind}.{'png' if kind.endswith('png') else 'tif'}")
        Image.fromarray(g16).save(path)
        return path, np.repeat(_f(g16, 65535.0)[..., None], 3, -1), 0.0
    if kind in ("rgb16_png", "rgb16_tiff", "rgb16_tiff_be"):
        a16 = np.random.default_rng(2).integers(0, 65536, (H, W, 3), dtype=np.uint16)
        path = os.path.join(folder, f"{kind}.{'png' if kind.endswith('png') else 'tif'}")
        if kind == "rgb16_png":
            write_png_rgb16(path, a16)
        else:
            write_tiff_rgb16(path, a16, big_endian=kind.endswith("be"))
        return path, _f(a16, 65535.0), 0.0
    if kind == "cmyk_jpeg":
        # Flat colours: pure cyan+magenta = blue, magenta+yellow = red; no colour management.
        cmyk = np.zeros((H, W, 4), dtype=np.uint8)
        cmyk[:, : W // 2, :2] = 255
        cmyk[:, W // 2:, 1:3] = 255
        path = os.path.join(folder, "cmyk.jpg")
        Image.fromarray(cmyk, mode="CMYK").save(path, quality=100)
        expected = np.zeros((H, W, 3), dtype=np.float32)
        expected[:, : W // 2, 2] = 1.0
        expected[:, W // 2:, 0] = 1.0
        return path, expected, 6 / 255
    if kind == "icc_srgb":
        path = os.path.join(folder, "icc.png")
        profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        Image.fromarray(rgb).save(path, icc_profile=profile.tobytes())
        return path, _f(rgb), 1 / 255
    if kind == "progressive_jpeg":
        smooth = smooth_rgb()
        path = os.path.join(folder, "progressive.jpg")
        Image.fromarray(smooth).save(path, quality=95, subsampling=0, progressive=True)
        return path, _f(smooth), 12 / 255
    if kind == "webp":
        path = os.path.join(folder, "lossless.webp")
        Image.fromarray(rgb).save(path, lossless=True)
        return path, _f(rgb), 0.0
    if kind == "bmp":
        path = os.path.join(folder, "plain.bmp")
        Image.fromarray(rgb).save(path)
        return path, _f(rgb), 0.0
    if kind == "multipage_tiff":
        path = os.path.join(folder, "pages.tif")
        Image.fromarray(rgb).save(path, save_all=True, append_images=[Image.fromarray(_rgb(9))])
        return path, _f(rgb), 0.0
    if kind == "animated_gif":
        img, expected = _palette_image(False)
        other = Image.fromarray(255 - np.asarray(img.convert("RGB")))
        path = os.path.join(folder, "animated.gif")
        img.save(path, save_all=True, append_images=[other.quantize(16)], duration=100)
        return path, expected, 0.0
    raise ValueError(f"unknown kind {kind!r}")


KINDS = ("gray", "gray_alpha", "palette", "palette_transparent", "gif", "rgba", "gray16_png", "gray16_tiff",
         "rgb16_png", "rgb16_tiff", "rgb16_tiff_be", "cmyk_jpeg", "icc_srgb", "progressive_jpeg", "webp", "bmp",
         "multipage_tiff", "animated_gif")


def write_oriented(path: str, upright: np.ndarray, orientation: int, **save_kwargs) -> None:
    """Stores `upright` as a camera would with EXIF `orientation`: the viewer's transform undoes it."""
    inverse = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
               7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    img = Image.fromarray(upright)
    stored = img if inverse is None else img.transpose(inverse)
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif, **save_kwargs)
