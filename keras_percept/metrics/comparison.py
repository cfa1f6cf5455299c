"""Comparing two metrics (or two paradigms) on the same 2AFC triplets: bootstrap CIs and a paired test."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class PairedComparison:
    """Scores of metrics A and B on the same triplets, and whether their difference is real.

    `ci_*` are percentile-bootstrap 95% intervals (triplets resampled with
    replacement, the same resample for A and B, so the pairing is kept);
    `p_value` is a two-sided paired sign-flip permutation test of mean(A - B) = 0.
    """

    score_a: float
    score_b: float
    difference: float
    ci_a: tuple[float, float]
    ci_b: tuple[float, float]
    ci_difference: tuple[float, float]
    p_value: float
    n: int

    def describe(self, name_a: str = "A", name_b: str = "B") -> str:
        """One line, in percent."""
        lo, hi = self.ci_difference
        verdict = "significant" if self.p_value < 0.05 else "not significant"
        return (f"{name_a} {100 * self.score_a:.2f} [{100 * self.ci_a[0]:.2f}, {100 * self.ci_a[1]:.2f}] vs "
                f"{name_b} {100 * self.score_b:.2f} [{100 * self.ci_b[0]:.2f}, {100 * self.ci_b[1]:.2f}]: "
                f"difference {100 * self.difference:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}], "
                f"paired p = {self.p_value:.4f} ({verdict} at 0.05, n = {self.n})")


def compare_paired(scores_a, scores_b, *, n_boot: int = 2000, n_perm: int = 5000, seed: int = 0) -> PairedComparison:
    """Bootstrap 95% CIs and a paired permutation test for per-triplet 2AFC scores of two metrics.

    Args:
        scores_a: per-triplet scores of metric A (`two_afc_score(..., reduction="none")`), shape `(N,)`.
        scores_b: metric B's scores on the same triplets, same shape.
        n_boot: bootstrap resamples. Defaults to `2000`.
        n_perm: random sign flips for the test. Defaults to `5000`.
        seed: random seed. Defaults to `0`.

    Example:

    >>> a = np.array([1.0, 1.0, 0.0, 1.0]); b = np.array([0.0, 1.0, 0.0, 0.0])
    >>> compare_paired(a, b).difference
    0.5
    """
    a = np.asarray(scores_a, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"`scores_a` and `scores_b` must be non-empty and the same size. Received: {a.size}, {b.size}")
    for name, value in (("n_boot", n_boot), ("n_perm", n_perm)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}")
    rng = np.random.default_rng(seed)
    n = a.size
    idx = rng.integers(0, n, size=(n_boot, n))
    boot_a, boot_b = a[idx].mean(axis=1), b[idx].mean(axis=1)
    diff = a - b
    signs = rng.choice([-1.0, 1.0], size=(n_perm, n))
    null = np.abs((signs * diff).mean(axis=1))
    observed = abs(diff.mean())
    p_value = (1 + np.sum(null >= observed - 1e-15)) / (n_perm + 1)
    interval = lambda x: (float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5)))  # noqa: E731
    return PairedComparison(float(a.mean()), float(b.mean()), float(diff.mean()), interval(boot_a), interval(boot_b),
                            interval(boot_a - boot_b), float(p_value), n)
