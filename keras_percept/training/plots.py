"""Plots logged with each run (matplotlib, headless)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(history: Mapping[str, Sequence[float]], path: str) -> None:
    """Loss and 2AFC score per epoch, training and selection split (Keras's `val_*`) side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "twoafc")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = history.get(prefix + key)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, style, label=f"{'selection' if prefix else 'train'} {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_linear_weights(metric, path: str) -> None:
    """The learned non-negative per-channel weights, one panel per tap (DISTS: alpha and beta)."""
    import keras

    plt = _pyplot()
    kernels = [keras.ops.convert_to_numpy(w).reshape(-1) for w in metric.head_weights]
    # LPIPS: ".../lin_k/kernel" -> "lin_k"; DISTS: "alpha", "beta"
    labels = [w.path.split("/")[-2] if w.name == "kernel" else w.name for w in metric.head_weights]
    fig, axes = plt.subplots(1, max(1, len(kernels)), figsize=(2.2 * max(1, len(kernels)), 2.6), squeeze=False)
    for ax, w, label in zip(axes[0], kernels, labels):
        ax.bar(np.arange(len(w)), w, width=1.0)
        ax.set_title(f"{label} ({len(w)} ch)")
        ax.set_xticks([])
    fig.suptitle(f"linear weights ({metric.net})")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
