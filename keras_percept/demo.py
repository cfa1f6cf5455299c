"""`keras-percept demo`: perceptual distances on real photographs, fully offline.

Writes crops of scikit-image's photographs and distorted copies (noise, blur,
JPEG, shift, contrast) into `<out>/ref` and `<out>/distorted`, computes
distances with the CLI's code path, and writes `distances.csv`, one heatmap per
pair and `montage.png` (reference | distorted | distance map, one row per pair).
"""

from __future__ import annotations

import io
import os

import numpy as np


def _distortions(img: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from PIL import Image
    from skimage.filters import gaussian

    buf = io.BytesIO()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=10)
    jpeg = np.asarray(Image.open(buf), dtype=np.float32) / 255.0
    return {
        "noise": np.clip(img + rng.normal(0, 0.06, img.shape), 0, 1),
        "blur": gaussian(img, sigma=2.0, channel_axis=-1),
        "jpeg": jpeg,
        "shift": np.roll(img, (2, 3), axis=(0, 1)),
        "contrast": 0.5 + 0.7 * (img - 0.5),
    }


def make_demo_images(out: str, size: int = 256, seed: int = 0) -> None:
    """Writes reference crops and distorted copies as PNG files under `out`."""
    from PIL import Image
    from skimage import data

    from keras_percept.images import atomic_write_image

    rng = np.random.default_rng(seed)
    for photo in ("chelsea", "astronaut", "coffee"):
        img = getattr(data, photo)().astype(np.float32) / 255.0
        top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
        crop = img[top:top + size, left:left + size]
        for kind, distorted in _distortions(crop, rng).items():
            name = f"{photo}_{kind}.png"
            for sub, arr in (("ref", crop), ("distorted", distorted)):
                atomic_write_image(Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)),
                                   os.path.join(out, sub, name))


def run_demo(out: str = "demo_out", net: str = "effnet-lite0") -> list[tuple[str, float]]:
    """Runs the demo and prints a table of distances, smallest first. Returns (name, distance) rows."""
    from PIL import Image

    from keras_percept.distance import (
        collect_pairs, compute_distances, heatmap_filename, load_metric, write_csv,
    )
    from keras_percept.images import atomic_write_image

    metric = load_metric(net)  # first: a metric that cannot be loaded (offline) leaves no files behind
    make_demo_images(out)
    pairs = collect_pairs(os.path.join(out, "ref"), os.path.join(out, "distorted"))
    heat_dir = os.path.join(out, "heatmaps")
    heatmaps = [os.path.join(heat_dir, heatmap_filename(p)) for p in pairs]
    distances = compute_distances(metric, pairs, heatmap_paths=heatmaps, progress=False)
    write_csv(os.path.join(out, "distances.csv"), pairs, distances)
    rows = sorted(zip((p.name for p in pairs), distances), key=lambda r: r[1])
    width = max(len(name) for name, _ in rows)
    print(f"{'pair':<{width}}  distance ({net})")
    for name, d in rows:
        print(f"{name:<{width}}  {d:.4f}")
    tiles = []
    for pair, heatmap in zip(pairs, heatmaps):
        imgs = [Image.open(p).convert("RGB") for p in (pair.path0, pair.path1, heatmap)]
        tiles.append(np.concatenate([np.asarray(i) for i in imgs], axis=1))
    atomic_write_image(Image.fromarray(np.concatenate(tiles, axis=0)), os.path.join(out, "montage.png"))
    print(f"wrote {out}/distances.csv, {out}/heatmaps/, {out}/montage.png")
    return rows
