"""Evaluation: 2AFC per category (selection or test split) for a learned metric and the classical baselines."""

from __future__ import annotations

import os
from typing import Callable, Mapping

import numpy as np

from keras_percept.metrics.twoafc import jnd_map


def distances_2afc(distance_fn: Callable, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs `distance_fn(x0, x1) -> (N,)` over a `((ref, p0, p1), judge)` dataset; returns d0, d1, h."""
    d0, d1, h = [], [], []
    for (ref, p0, p1), judge in dataset.as_numpy_iterator():
        d0.append(np.asarray(distance_fn(ref, p0)).reshape(-1))
        d1.append(np.asarray(distance_fn(ref, p1)).reshape(-1))
        h.append(np.asarray(judge).reshape(-1))
    return np.concatenate(d0), np.concatenate(d1), np.concatenate(h)


def evaluate_2afc(distance_fns: Mapping[str, Callable], datasets: Mapping[str, object]) -> dict[str, dict[str, float]]:
    """2AFC score of each named distance on each category, plus their mean (`"mean"`).

    The learned metric and the classical baselines (L2, SSIM, PSNR) go
    through this same function, so they are scored identically.

    Returns:
        `{distance name: {category: score, ..., "mean": mean over categories}}`.
    """
    from keras_percept.metrics.twoafc import two_afc_score

    table: dict[str, dict[str, float]] = {}
    for name, fn in distance_fns.items():
        row = {}
        for category, ds in datasets.items():
            d0, d1, h = distances_2afc(fn, ds)
            row[category] = float(two_afc_score(d0, d1, h))
        row["mean"] = float(np.mean([row[c] for c in datasets]))
        table[name] = row
    return table


def classical_distances(value_range: str = "[-1,1]") -> dict[str, Callable]:
    """L2, SSIM and PSNR as distances (larger = more different) on NHWC batches."""
    from keras_percept.metrics.classical import l2_distance, psnr_distance, ssim_distance

    return {
        "l2": lambda a, b: l2_distance(a, b, value_range=value_range),
        "ssim": lambda a, b: ssim_distance(a, b, value_range=value_range),
        "psnr": lambda a, b: psnr_distance(a, b, value_range=value_range),
    }


def format_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """A fixed-width text table: one row per distance, one column per category (percent)."""
    columns = list(next(iter(table.values())))
    width = max(len(n) for n in table) + 2
    lines = [f"{'':<{width}}" + "".join(f"{c[:12]:>13}" for c in columns)]
    for name, row in table.items():
        lines.append(f"{name:<{width}}" + "".join(f"{100 * row[c]:>13.2f}" for c in columns))
    return "\n".join(lines)


def per_triplet_scores(distance_fn: Callable, datasets: Mapping[str, object]) -> np.ndarray:
    """Every triplet's 2AFC score over all categories, in a fixed order (for paired comparisons)."""
    from keras_percept.metrics.twoafc import two_afc_score

    return np.concatenate([two_afc_score(*distances_2afc(distance_fn, ds), reduction="none")
                           for ds in datasets.values()])


def distances_jnd(distance_fn: Callable, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Runs `distance_fn(p0, p1) -> (N,)` over a `((p0, p1), same)` dataset; returns distances, same."""
    d, same = [], []
    for (p0, p1), s in dataset.as_numpy_iterator():
        d.append(np.asarray(distance_fn(p0, p1)).reshape(-1))
        same.append(np.asarray(s).reshape(-1))
    return np.concatenate(d), np.concatenate(same)


def evaluate_jnd(distance_fns: Mapping[str, Callable], datasets: Mapping[str, object]) -> dict[str, dict[str, float]]:
    """JND mAP of each named distance on each JND category, plus their mean (`"mean"`).

    As the reference and the paper report it: average precision is computed within a
    category (`traditional`, `cnn`), never over the pooled pairs, whose ranking mixes
    the categories' distance scales.

    Args:
        distance_fns: `{name: distance_fn(p0, p1) -> (N,)}`.
        datasets: `{category: ((p0, p1), same) dataset}`, e.g. from `load_jnd_by_category`.

    Returns:
        `{distance name: {category: mAP, ..., "mean": mean over categories}}`.

    Example:

    >>> from keras_percept.data import load_jnd_by_category
    >>> table = evaluate_jnd(classical_distances(), load_jnd_by_category("dataset"))  # doctest: +SKIP
    >>> sorted(table["l2"])  # doctest: +SKIP
    ['cnn', 'mean', 'traditional']
    """
    table: dict[str, dict[str, float]] = {}
    for name, fn in distance_fns.items():
        row = {category: float(jnd_map(*distances_jnd(fn, ds))) for category, ds in datasets.items()}
        row["mean"] = float(np.mean([row[c] for c in datasets]))
        table[name] = row
    return table


def evaluate_jnd_folder(distance_fns: Mapping[str, Callable], root: str, *, patch_size: int = 64,
                        batch_size: int = 50) -> dict[str, dict[str, float]]:
    """`evaluate_jnd` on `<root>/jnd/val` per category, or `{}` when `root` has no `jnd/` folder.

    Example:

    >>> evaluate_jnd_folder(classical_distances(), "dataset")["l2"]["mean"]  # doctest: +SKIP
    0.52
    """
    from keras_percept.data import load_jnd_by_category

    if not os.path.isdir(os.path.join(root, "jnd")):
        return {}
    return evaluate_jnd(distance_fns, load_jnd_by_category(root, patch_size=patch_size, batch_size=batch_size))


def jnd_metrics(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """MLflow metrics of an `evaluate_jnd` table: `jnd_map_<category>` and `jnd_map_mean` for the
    evaluated metric (`"lpips"`), `jnd_map_<name>_<category>` for the others.

    Example:

    >>> jnd_metrics({"lpips": {"cnn": 0.5, "mean": 0.5}, "l2": {"cnn": 0.4, "mean": 0.4}})
    {'jnd_map_cnn': 0.5, 'jnd_map_mean': 0.5, 'jnd_map_l2_cnn': 0.4, 'jnd_map_l2_mean': 0.4}
    """
    return _table_metrics(table, "jnd_map")


def twoafc_metrics(table: Mapping[str, Mapping[str, float]], split: str) -> dict[str, float]:
    """MLflow metrics of an `evaluate_2afc` table: `<split>_2afc_<category>` for the evaluated metric
    (`"lpips"`), `<split>_2afc_<name>_<category>` for the others; `split` is "test" or "selection".

    Example:

    >>> twoafc_metrics({"lpips": {"cnn": 0.7, "mean": 0.7}, "l2": {"cnn": 0.6, "mean": 0.6}}, "test")
    {'test_2afc_cnn': 0.7, 'test_2afc_mean': 0.7, 'test_2afc_l2_cnn': 0.6, 'test_2afc_l2_mean': 0.6}
    """
    return _table_metrics(table, f"{split}_2afc")


def _table_metrics(table: Mapping[str, Mapping[str, float]], prefix: str) -> dict[str, float]:
    out = {}
    for name, row in table.items():
        row_prefix = prefix if name == "lpips" else f"{prefix}_{name}"
        out.update({f"{row_prefix}_{category}": float(value) for category, value in row.items()})
    return out
