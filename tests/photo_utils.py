"""Real-photo test pairs (a plain module: `conftest` names clash between test folders)."""

from __future__ import annotations

import numpy as np


def photo_pairs(photos: dict[str, np.ndarray], size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A batch of 4 real-photo crops (in [-1, 1]) and distorted copies (noise, blur, shift, contrast)."""
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    refs, dists = [], []
    for k, img in enumerate(photos.values()):
        top = rng.integers(0, img.shape[0] - size - 4)
        left = rng.integers(0, img.shape[1] - size - 4)
        crop = img[top:top + size, left:left + size]
        if k == 0:
            other = crop + rng.normal(0, 0.08, crop.shape)
        elif k == 1:
            other = gaussian(crop, sigma=1.5, channel_axis=-1)
        elif k == 2:
            other = img[top + 3:top + 3 + size, left + 2:left + 2 + size]
        else:
            other = 0.5 + 0.6 * (crop - 0.5)
        refs.append(crop)
        dists.append(np.clip(other, 0, 1))
    to_pm1 = lambda a: (np.stack(a) * 2 - 1).astype(np.float32)  # noqa: E731
    return to_pm1(refs), to_pm1(dists)
