"""Fast `lin`: per-channel feature means computed once, then training without the trunk.

With a frozen trunk, the LPIPS distance of a pair is linear in the
per-channel spatial means of its squared normalised feature differences:

```
d(x, y) = sum_k mean_hw(w_k . (f_k(x) - f_k(y))^2) = m(x, y) @ w
```

(the linear layers are 1x1 convolutions, which commute with the spatial
mean). `channel_means_2afc` computes `m(ref, p0)` and `m(ref, p1)` for every
triplet once and caches them on disk, keyed by the trunk's weights and the
exact files and labels; `CachedLinModel` then trains the linear weights (and
the comparison head) on those `(N, C)` vectors, so later epochs and every
tuning trial of a `lin` study skip the trunk entirely.

Exactness: with dropout off, `CachedLinModel` gives the same d0, d1 as
`TwoAFCModel` (tested to 1e-6). With dropout on, the cached model applies
dropout to the per-channel means, not to each pixel of the difference map
as the reference does: the same expectation, a different noise (the mean of
a dropped-out map is not a dropped-out mean). Augmentation (crops, flips,
mixup) changes the features every epoch and cannot be cached.
"""

from __future__ import annotations

import hashlib
import os
from typing import Sequence

import keras
import numpy as np
from keras import ops

from keras_percept.atomic import atomic_write
from keras_percept.models.lpips import LPIPS
from keras_percept.paths import cache_dir


def trunk_digest(metric: LPIPS) -> str:
    """SHA-1 over the metric's trunk config, its compute dtype and every trunk/scaling weight (what the means depend on)."""
    h = hashlib.sha1()
    h.update(f"{metric.net}|{metric.version}|{metric.input_range}|{metric.epsilon}".encode())
    policy = metric.backbone.dtype_policy.name  # the trunk's effective arithmetic (float32 keys stay as they were)
    if policy != "float32":
        h.update(f"|{policy}".encode())
    for variable in metric.backbone.weights + (metric.scaling.weights if metric.scaling is not None else []):
        h.update(variable.path.encode())
        h.update(np.ascontiguousarray(ops.convert_to_numpy(variable)).tobytes())
    return h.hexdigest()


def _index_digest(index, patch_size: int) -> str:
    h = hashlib.sha1(f"{patch_size}".encode())
    for d in index.image_dirs:
        for path in index.paths[d]:
            stat = os.stat(path)
            h.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    h.update(np.ascontiguousarray(index.labels, dtype=np.float32).tobytes())
    return h.hexdigest()


def channel_means_2afc(
    metric: LPIPS,
    root: str,
    split: str,
    categories: Sequence[str] | None = None,
    *,
    patch_size: int = 64,
    batch_size: int = 100,
    cache: bool = True,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-channel means of every triplet of a split, from the on-disk cache when present.

    Args:
        metric: the (frozen-trunk) metric whose trunk is used.
        root, split, categories: the 2AFC data, as `keras_percept.data.index_2afc`.
        patch_size: image side the data is read at. Defaults to `64`.
        batch_size: triplets per trunk pass. Defaults to `100`.
        cache: read/write `$KERAS_PERCEPT_HOME/cache/features/<key>.npz`. Defaults to `True`.
        progress: show a progress bar while computing. Defaults to `False`.

    Returns:
        `{"m0": (N, C), "m1": (N, C), "h": (N,), "categories": (N,)}`, in
        the reader's order (category, then file name).

    Example:

    >>> means = channel_means_2afc(metric, root, "train")  # doctest: +SKIP
    >>> d0 = means["m0"] @ keras.ops.convert_to_numpy(metric.linear_weights())  # doctest: +SKIP
    """
    from keras_percept.data import index_2afc

    # The key needs file names, sizes, times and labels, not decoded pixels: a header check is enough
    # to find a cached result; on a miss the files are fully verified before the trunk reads them.
    index = index_2afc(root, split, categories, verify="header")
    if not (cache and has_cached_means(metric, index, patch_size=patch_size)):
        index = index_2afc(root, split, categories)
    return channel_means(metric, index, patch_size=patch_size, batch_size=batch_size, cache=cache, progress=progress)


def cache_path(metric: LPIPS, index, *, patch_size: int = 64) -> str:
    """Where `channel_means` keeps the means of `index`'s triplets (keyed by the trunk, files and labels)."""
    key = hashlib.sha1(f"{trunk_digest(metric)}|{_index_digest(index, patch_size)}".encode()).hexdigest()[:20]
    return os.path.join(cache_dir("cache", "features"), f"{metric.net}-{index.split}-{key}.npz")


def has_cached_means(metric: LPIPS, index, *, patch_size: int = 64) -> bool:
    """True when `channel_means(metric, index)` would read its result from the cache."""
    return os.path.exists(cache_path(metric, index, patch_size=patch_size))


def channel_means(metric: LPIPS, index, *, patch_size: int = 64, batch_size: int = 100, cache: bool = True,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """`channel_means_2afc` of the triplets of an `ItemIndex` (e.g. one part of a split), in its order.

    The files are read as `index` lists them: build it with `verify="full"` on a cache miss
    (`has_cached_means`) for errors that name the bad file before the trunk reads it.

    Example:

    >>> fit, selection = carve_selection(index_2afc(root, "train"), 0.2, seed=0)  # doctest: +SKIP
    >>> means = channel_means(metric, selection)  # doctest: +SKIP
    """
    from keras_percept.data import dataset_from_index

    path = cache_path(metric, index, patch_size=patch_size)
    if cache and os.path.exists(path):
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}
    dataset = dataset_from_index(index, patch_size=patch_size, batch_size=batch_size)
    m0, m1 = [], []
    batches = dataset.as_numpy_iterator()
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=int(dataset.cardinality()), desc=f"caching {index.split} features",
                       unit="batch")
    for (ref, p0, p1), _ in batches:
        a, b = _batch_means(metric, ref, p0, p1)
        m0.append(a)
        m1.append(b)
    out = {
        "m0": np.concatenate(m0).astype(np.float32),
        "m1": np.concatenate(m1).astype(np.float32),
        "h": np.asarray(index.labels, dtype=np.float32),
        "categories": np.asarray(index.categories),
    }
    if cache:
        with atomic_write(path, "wb") as f:
            np.savez(f, **out)
    return out


def _batch_means(metric: LPIPS, ref, p0, p1) -> tuple[np.ndarray, np.ndarray]:
    n = ref.shape[0]
    features = metric.normalized_features(ops.convert_to_tensor(np.concatenate([ref, p0, p1])), training=False)
    f_ref = [f[:n] for f in features]
    m0 = metric.channel_means(f_ref, [f[n:2 * n] for f in features])
    m1 = metric.channel_means(f_ref, [f[2 * n:] for f in features])
    return ops.convert_to_numpy(m0), ops.convert_to_numpy(m1)


class CachedLinModel(keras.Model):
    """`(m0, m1) -> [d0, d1, G]` from cached channel means: the `lin` model without its trunk.

    Shares the comparison head with the full model and starts from (and
    `write_back` returns to) the metric's linear weights, so training it
    trains the metric. The linear weights are one non-negative `Dense`
    kernel over all taps' channels; `nonneg`/regularizers are taken from the
    metric's linear kernels (the first tap's, identical on every tap), the
    regularizer applied per tap (`regularizers.PerTap`).

    Example:

    >>> cached = CachedLinModel(metric, comparison)  # doctest: +SKIP
    >>> cached.compile(optimizer="adam", loss=get_loss("bce"))  # doctest: +SKIP
    >>> cached.fit(cached_dataset(means, batch_size=50))  # doctest: +SKIP
    >>> cached.write_back(metric)  # doctest: +SKIP
    """

    def __init__(self, metric: LPIPS, comparison, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not metric.lpips:
            raise ValueError("CachedLinModel trains linear weights: the metric must have lpips=True.")
        channels = sum(metric.tap_channels)
        from keras_percept.regularizers import PerTap

        first = metric.lins[0].kernel
        per_tap = PerTap(first.regularizer, metric.tap_channels) if first.regularizer is not None else None
        self.linear = keras.layers.Dense(
            1, use_bias=False, kernel_constraint=first.constraint, kernel_regularizer=per_tap, name="linear",
        )
        self.linear.build((None, channels))
        self.linear.kernel.assign(ops.reshape(metric.linear_weights(), (channels, 1)))
        self.dropout = keras.layers.Dropout(dropout)
        self.comparison = comparison
        probe = np.zeros((1, channels), np.float32)
        self((probe, probe))  # builds the model (BackupAndRestore needs a built model)

    def call(self, inputs, training=None):
        m0, m1 = inputs
        d0 = ops.reshape(self.linear(self.dropout(m0, training=training)), (-1,))
        d1 = ops.reshape(self.linear(self.dropout(m1, training=training)), (-1,))
        return ops.stack([d0, d1, ops.reshape(self.comparison(d0, d1), (-1,))], axis=-1)

    def write_back(self, metric: LPIPS) -> None:
        """Copies the learned weights into `metric`'s per-tap linear layers."""
        assign_linear_weights(metric, ops.convert_to_numpy(self.linear.kernel).reshape(-1))


def assign_linear_weights(metric: LPIPS, weights: np.ndarray) -> None:
    """Splits a `(sum(tap_channels),)` vector over the metric's per-tap 1x1 kernels."""
    weights = np.asarray(weights, dtype=np.float32).reshape(-1)
    if weights.shape[0] != sum(metric.tap_channels):
        raise ValueError(
            f"Expected {sum(metric.tap_channels)} linear weights for net {metric.net!r}. Received: {weights.shape[0]}"
        )
    start = 0
    for lin, channels in zip(metric.lins, metric.tap_channels):
        lin.kernel.assign(weights[start:start + channels].reshape(1, 1, channels, 1))
        start += channels


def cached_dataset(means: dict, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_remainder=False,
                   epochs: int | None = None, first_epoch: int = 0, steps_per_epoch: int | None = None):
    """A `tf.data` pipeline of `((m0, m1), h)` batches over cached means.

    Shuffled, epoch `e`'s order is a pure function of `(seed, e)`; `epochs`,
    `first_epoch` and `steps_per_epoch` as in `keras_percept.data.load_2afc`
    (one dataset for a whole, possibly resumed, run).

    Example:

    >>> ds = cached_dataset(channel_means_2afc(metric, root, "train"), 50, shuffle=True, epochs=10)  # doctest: +SKIP
    """
    from keras_percept.data.epochs import tensor_batches

    ds = tensor_batches(((means["m0"], means["m1"]), means["h"]), batch_size, shuffle=shuffle, seed=seed,
                        drop_remainder=drop_remainder, epochs=epochs, first_epoch=first_epoch,
                        steps_per_epoch=steps_per_epoch)
    return ds.prefetch(-1)


def evaluate_cached(means: dict, weights: np.ndarray) -> dict[str, float]:
    """2AFC per category (and their mean) of `d = m @ weights` on cached means: exact, no trunk pass.

    The same numbers `evaluate_2afc` gives on the images for a dropout-free
    metric with these linear weights (up to float rounding of the mean).

    Example:

    >>> evaluate_cached(channel_means_2afc(metric, root, "val"), metric.linear_weights())  # doctest: +SKIP
    {'blur': 0.78, ..., 'mean': 0.79}
    """
    from keras_percept.metrics.twoafc import two_afc_score

    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    d0, d1 = means["m0"].astype(np.float64) @ w, means["m1"].astype(np.float64) @ w
    categories = [str(c) for c in means["categories"]]
    row = {}
    for category in dict.fromkeys(categories):
        keep = np.array([c == category for c in categories])
        row[category] = float(two_afc_score(d0[keep], d1[keep], means["h"][keep]))
    row["mean"] = float(np.mean([row[c] for c in row]))
    return row


def solve_lbfgs(means: dict, initial: np.ndarray | None = None, *, l1: float = 0.0,
                max_iter: int = 500, tol: float = 1e-9) -> tuple[np.ndarray, dict]:
    """Full-batch optimum of the convex `lin` + difference problem (w >= 0), by L-BFGS-B.

    With `G = d0 - d1 = (m0 - m1) @ w`, BCE against soft labels h is logistic
    regression with non-negative weights; the difference head's scale is
    redundant with the scale of w, so it is fixed at 1. SciPy's bounded
    L-BFGS-B handles the constraint exactly.

    Formula:

    ```
    min_{w >= 0}  mean(softplus(x @ w) - h * (x @ w)) + l1 * sum(w),   x = m0 - m1
    ```

    Returns:
        `(w, info)`: the weights `(C,)` and SciPy's `{"loss", "iterations", "converged", "message"}`.

    Example:

    >>> w, info = solve_lbfgs(channel_means_2afc(metric, root, "train"))  # doctest: +SKIP
    """
    from scipy.optimize import minimize

    x = (means["m0"] - means["m1"]).astype(np.float64)
    h = means["h"].astype(np.float64)
    n, c = x.shape
    w0 = np.full(c, 1.0 / c) if initial is None else np.asarray(initial, dtype=np.float64).reshape(-1)

    def loss_and_grad(w):
        g = x @ w
        loss = np.mean(np.logaddexp(0.0, g) - h * g) + l1 * w.sum()
        grad = x.T @ (1.0 / (1.0 + np.exp(-g)) - h) / n + l1
        return loss, grad

    result = minimize(loss_and_grad, w0, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * c,
                      options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-10})
    info = {"loss": float(result.fun), "iterations": int(result.nit), "converged": bool(result.success),
            "message": str(result.message)}
    return result.x.astype(np.float32), info
