"""Helpers for the data tests: writing a small BAPPS-layout folder of real PNG files and `.npy` labels."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

FIXTURE_2AFC = {"train": {"traditional": 3, "cnn": 2}, "val": {"traditional": 4, "cnn": 3, "color": 2}}
FIXTURE_JND = {"traditional": 3, "cnn": 2}
FIXTURE_SIZE = 16
SMALL_EMBEDDED = dict(seed=3, n_train=140, n_val=84, n_jnd=60, progress=False)


def write_png(path: str, pixels: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def write_label(path: str, value) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, np.asarray(value))


def fixture_pixels(rng: np.random.Generator, size: int = FIXTURE_SIZE) -> np.ndarray:
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_bapps(root: str, *, size: int = FIXTURE_SIZE, seed: int = 0) -> dict:
    """Writes a BAPPS-layout tree; returns `{(kind, split, category, id): (images dict, label)}`."""
    rng = np.random.default_rng(seed)
    truth = {}
    layouts = [("2afc", split, cats, ("ref", "p0", "p1"), "judge") for split, cats in FIXTURE_2AFC.items()]
    layouts.append(("jnd", "val", FIXTURE_JND, ("p0", "p1"), "same"))
    for kind, split, categories, image_dirs, label_dir in layouts:
        for category, n in categories.items():
            folder = os.path.join(root, kind, split, category)
            for i in range(n):
                item_id = f"{i:06d}"
                images = {d: fixture_pixels(rng, size) for d in image_dirs}
                for d, pixels in images.items():
                    write_png(os.path.join(folder, d, f"{item_id}.png"), pixels)
                label = np.float32(rng.integers(0, 6) / 5)
                write_label(os.path.join(folder, label_dir, f"{item_id}.npy"), np.array([label]))
                truth[(kind, split, category, item_id)] = (images, float(label))
    return truth
