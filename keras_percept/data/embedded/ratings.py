"""SIMULATED mean opinion scores for the embedded dataset's distorted patches. NOT human ratings.

Each distorted patch (`p0`/`p1` of a 2AFC triplet) is rated on the
5-point ACR scale (5 = excellent ... 1 = bad) by `raters` simulated raters
built on the same observer as the 2AFC labels (`observer.py`):

1. the perceived magnitude `q = magnitude(family, severity, texture)`;
2. a rater sees `q' = q * exp(b) + e`, `b ~ N(0, family_spread)` (their
   sensitivity to that family), `e ~ N(0, noise)`;
3. their rating is `round(1 + 4 * exp(-max(q', 0) / RATING_SCALE))`
   clipped to 1..5 (no visible damage → 5; the scale sets how fast
   quality falls, chosen so the shipped families spread over the scale);
   with probability `lapse` the rater answers uniformly at random.

MOS is the mean rating and `std` its sample standard deviation. The
observer parameters are the ones the dataset was built with (its
manifest); the result depends only on them, the item, `raters` and `seed`.

A dataset built with `judge="cvvdp"` is rated on ColorVideoVDP's JOD scale
instead: the MOS of a patch is its JOD (stored in the metadata at build
time) and each rater reports `JOD + N(0, cvvdp_judge.RATER_SD)` (see
`cvvdp_judge.rate_jod`), so MOS is in JOD (10 = identical to the reference).
"""

from __future__ import annotations

import csv
import os

import numpy as np

from keras_percept.atomic import atomic_write
from keras_percept.data.embedded import cvvdp_judge
from keras_percept.data.embedded.generate import CVVDP_NOTE, NOTE, read_manifest, read_metadata
from keras_percept.data.embedded.observer import Observer, magnitude

# Perceived magnitude at which the noiseless rating falls from 5 to 1 + 4/e (about 2.5).
RATING_SCALE = 0.6
# Bump when a change here changes the ratings, so old CSVs are not reused.
RATINGS_VERSION = 1
SPLITS = ("train", "val")


def rate_acr(rng: np.random.Generator, family: str, severity: float, *, texture: float, observer: Observer,
             raters: int) -> np.ndarray:
    """`raters` simulated 5-point ratings (ints 1..5) of one distorted patch; see the module docstring.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> mild = rate_acr(rng, "gaussian_blur", 0.2, texture=1.0, observer=Observer(), raters=20).mean()
    >>> severe = rate_acr(rng, "gaussian_blur", 1.0, texture=1.0, observer=Observer(), raters=20).mean()
    >>> bool(mild > severe)
    True
    """
    q = magnitude(family, severity, texture)
    seen = q * np.exp(rng.normal(0, observer.family_spread, raters)) + rng.normal(0, observer.noise, raters)
    ratings = np.clip(np.round(1 + 4 * np.exp(-np.maximum(seen, 0) / RATING_SCALE)), 1, 5)
    lapses = rng.random(raters) < observer.lapse
    ratings[lapses] = rng.integers(1, 6, lapses.sum())
    return ratings.astype(np.int64)


def write_mos_csv(root: str | os.PathLike, split: str, *, raters: int = 20, seed: int = 0) -> str:
    """Writes (once) the simulated-MOS CSV of one split of a built embedded dataset; returns its path.

    Generic layout `filename,mos,std,ref` (paths relative to `root`) plus
    informative columns `photo,family,severity,texture`. Written
    atomically; an existing file is reused (its content is deterministic).

    Example:

    >>> path = write_mos_csv(keras_percept.data.embedded.build(), "val")  # doctest: +SKIP
    >>> keras_percept.data.mos.read_mos_csv(path).mos[:2]  # doctest: +SKIP
    """
    if split not in SPLITS:
        raise ValueError(f"Argument `split` must be one of {SPLITS}. Received: split={split!r}")
    if not isinstance(raters, int) or isinstance(raters, bool) or raters < 2:
        raise ValueError(
            f"Argument `raters` must be an int >= 2 (for a standard deviation). Received: raters={raters!r}"
        )
    root = os.fspath(root)
    try:
        params = read_manifest(root)["params"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(
            f"Argument `root` must be a built embedded dataset (keras_percept.data.embedded.build). Received: "
            f"root={root!r} ({err})"
        ) from err
    path = os.path.join(root, f"mos_{split}_raters{raters}_seed{seed}_v{RATINGS_VERSION}.csv")
    if os.path.isfile(path):
        return path
    observer = Observer(params["observer_noise"], params["observer_family_spread"], params["observer_lapse"])
    by_cvvdp = params.get("judge", "observer") == "cvvdp"
    rows = []
    for i, item in enumerate(read_metadata(root, f"2afc_{split}")):
        folder = f"2afc/{split}/{item['category']}"
        for k in (0, 1):
            rng = np.random.default_rng([seed, SPLITS.index(split), i, k])
            family, severity = item[f"family{k}"], item[f"severity{k}"]
            if by_cvvdp:
                ratings = cvvdp_judge.rate_jod(rng, item[f"jod{k}"], raters)
            else:
                ratings = rate_acr(rng, family, severity, texture=item["texture"], observer=observer, raters=raters)
            rows.append({
                "filename": f"{folder}/p{k}/{item['id']}.png", "mos": f"{ratings.mean():.4f}",
                "std": f"{ratings.std(ddof=1):.4f}", "ref": f"{folder}/ref/{item['id']}.png",
                "photo": item["photo"], "family": family, "severity": severity, "texture": item["texture"],
            })
    with atomic_write(path, "w", newline="") as f:
        f.write(f"# SIMULATED MOS, not human ratings. {CVVDP_NOTE if by_cvvdp else NOTE}\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
