"""The simulated observer that labels the embedded dataset. Its labels are NOT human judgments.

Model (a Thurstone-style observer with one common severity scale):

1. Each distorted patch has a perceived magnitude `q = s * c`, where `s` in
   (0, 1] is the family's severity level (the families' parameter ranges were
   calibrated by eye so equal `s` looks about equally bad) and `c` is a
   content factor from the reference patch's texture `r` (mean luminance
   gradient over `TEXTURE_SCALE`): additive errors (noise, compression) are
   masked by texture, `c = 2 / (1 + r)`; blur and geometric errors only show
   where there is detail, `c = 2r / (1 + r)`; photometric changes `c = 1`;
   combinations the geometric mean of the two.
2. Each judge sees `q' = q * exp(b_family) + e` with a judge-specific
   sensitivity to each family `b ~ N(0, family_spread)` (judges disagree
   about which kind of damage is worse) and trial noise `e ~ N(0, noise)`.
3. 2AFC: the judge picks the patch with the smaller `q'`; with probability
   `lapse` the judge answers at random. The label is the fraction of judges
   picking `p1`, so for one judge P(p1) = lapse/2 + (1 - lapse) *
   P(q1' < q0'), a psychometric function of the severity difference.
4. JND: the judge says "same" when `q'` is below a personal threshold
   `jnd_threshold * exp(N(0, 0.25))`; the label is the fraction saying "same".

Within one family both patches share `b` and `c`, so preferences follow the
severity order up to trial noise and lapses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_percept.data.embedded.distortions import FAMILIES

# Median mean-gradient of luminance over 64-pixel patches of the shipped photos (rounded).
TEXTURE_SCALE = 0.035
_THRESHOLD_SPREAD = 0.25


@dataclasses.dataclass(frozen=True)
class Observer:
    """Parameters of the simulated judges; see the module docstring for the model.

    Args:
        noise: standard deviation of the trial noise on perceived magnitude. Defaults to `0.1`.
        family_spread: standard deviation of a judge's log-sensitivity to a family. Defaults to `0.3`.
        lapse: probability of a random answer. Defaults to `0.05`.
        jnd_threshold: median perceived magnitude at which a judge starts
            to see a difference. Defaults to `0.2`.

    Example:

    >>> obs = Observer()
    >>> rng = np.random.default_rng(0)
    >>> obs.judge_2afc(rng, ("gaussian_blur", 0.8), ("gaussian_blur", 0.2), texture=1.0, n_judges=5)
    1.0
    """

    noise: float = 0.1
    family_spread: float = 0.3
    lapse: float = 0.05
    jnd_threshold: float = 0.2

    def __post_init__(self):
        for name in ("noise", "family_spread", "jnd_threshold"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"Argument `{name}` must be >= 0. Received: {name}={getattr(self, name)!r}")
        if not 0 <= self.lapse <= 1:
            raise ValueError(f"Argument `lapse` must be in [0, 1]. Received: lapse={self.lapse!r}")

    def judge_2afc(self, rng: np.random.Generator, d0: tuple[str, float], d1: tuple[str, float], *,
                   texture: float, n_judges: int) -> float:
        """Fraction of `n_judges` simulated judges who find distortion `d1` (family, severity) less visible."""
        q0, q1 = (magnitude(family, s, texture) for family, s in (d0, d1))
        votes = []
        for _ in range(n_judges):
            if rng.random() < self.lapse:
                votes.append(rng.random() < 0.5)
                continue
            # dict.fromkeys, not a set: a set's order (and so which family gets which draw) follows
            # PYTHONHASHSEED, which made the labels differ between processes.
            sensitivity = {f: np.exp(rng.normal(0, self.family_spread)) for f in dict.fromkeys((d0[0], d1[0]))}
            seen0 = q0 * sensitivity[d0[0]] + rng.normal(0, self.noise)
            seen1 = q1 * sensitivity[d1[0]] + rng.normal(0, self.noise)
            votes.append(seen1 < seen0)
        return float(np.mean(votes))

    def judge_jnd(self, rng: np.random.Generator, distortion: tuple[str, float] | None, *,
                  texture: float, n_judges: int) -> float:
        """Fraction of `n_judges` who see no difference; `distortion=None` means an identical pair."""
        q = 0.0 if distortion is None else magnitude(*distortion, texture)
        votes = []
        for _ in range(n_judges):
            if rng.random() < self.lapse:
                votes.append(rng.random() < 0.5)
                continue
            threshold = self.jnd_threshold * np.exp(rng.normal(0, _THRESHOLD_SPREAD))
            seen = q * np.exp(rng.normal(0, self.family_spread)) + rng.normal(0, self.noise / 2)
            votes.append(seen < threshold)
        return float(np.mean(votes))


def texture_of(patch: np.ndarray) -> float:
    """Mean luminance gradient magnitude of a float RGB patch in [0, 1], over `TEXTURE_SCALE`.

    Example:

    >>> texture_of(np.zeros((8, 8, 3)))
    0.0
    """
    luma = np.asarray(patch, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(luma)
    return float(np.mean(np.hypot(gx, gy)) / TEXTURE_SCALE)


def magnitude(family: str, severity: float, texture: float) -> float:
    """Perceived magnitude `q = severity * content factor` on the common scale.

    Example:

    >>> magnitude("contrast", 0.6, texture=3.0)
    0.6
    """
    masking = FAMILIES[family].masking
    hides, reveals = 2.0 / (1.0 + texture), 2.0 * texture / (1.0 + texture)
    factor = {"none": 1.0, "texture_hides": hides, "texture_reveals": reveals,
              "both": float(np.sqrt(hides * reveals))}[masking]
    return float(severity * factor)
