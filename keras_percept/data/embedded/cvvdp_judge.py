"""An external judge for the embedded sets: ColorVideoVDP (Mantiuk et al., SIGGRAPH 2024; PyPI `cvvdp`).

ColorVideoVDP is a model of human vision calibrated on human experiments;
it scores a test image against its reference in JOD (just-objectionable
differences; 10 = identical). Its unit is defined by human choice: two
images 1 JOD apart are told apart in favour of the better one by 75 % of
observers. So, for a 2AFC triplet (BAPPS convention: the label is the
fraction of judges who find `p1` closer to `ref`),

    P(p1 closer) = Phi(Z75 * (JOD(p1) - JOD(p0))),   Z75 = Phi^-1(0.75) = 0.6745,

and each of the `n` judges votes for `p1` with that probability (the label
is the fraction of votes, as BAPPS stores it).

JND (same/different, `p0` the reference): with the same scale a 2AFC
observer is correct with `Pc = Phi(Z75 * |dJOD|)`; under the standard
guessing correction (a judge who does not see the difference guesses, right
half the time) the fraction who SEE it is `2 Pc - 1`, so

    P(same) = 2 * (1 - Phi(Z75 * |dJOD|)),

1 at 0 JOD and 0.5 at 1 JOD, the usual 75 %-correct threshold. Votes are
drawn from it per judge.

MOS: a patch's score is its JOD; each simulated rater reports
`JOD + N(0, RATER_SD)` with `RATER_SD = 1 / (Z75 * sqrt(2))` (about 1.05
JOD), the Thurstone case-V spread that makes two raters' preferences follow
the 75 %-per-JOD definition; no other noise, no lapses.

The display model is fixed here (`DISPLAY`), chosen for 64-pixel patches
before any training result was seen, and written into each manifest: the
`standard_fhd` preset shipped with ColorVideoVDP, a 24-inch 1920 x 1080
sRGB monitor, 200 cd/m^2 peak, contrast 1000:1, 250 lux office light, seen
from 0.6 m (about 38 pixels per degree, a 64-pixel patch spans about 1.7
degrees), the common desktop case in which BAPPS-style patches are judged.

`pycvvdp` imports torchvision for one pure-PyTorch class (`GaussianBlur`).
PyPI's torchvision wheel links CUDA libraries that the CPU build of torch
lacks and fails to import ("operator torchvision::nms does not exist"). Where
that happens, `import_pycvvdp` imports torchvision once with its compiled-op
registrations skipped (the pure-Python transforms are unaffected), and warns.
This is why `observer`, not `cvvdp`, is the default judge.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import sys
import warnings

import numpy as np
from scipy.special import ndtr

JUDGES = ("observer", "cvvdp")
Z75 = 0.6744897501960817  # Phi^-1(0.75): 1 JOD <=> 75 % preference
RATER_SD = 1.0 / (Z75 * math.sqrt(2.0))
# Fixed before any training result; never tuned to a metric (issue 17).
DISPLAY = "standard_fhd"
_BATCH = 256
_INSTALL = "`judge='cvvdp'` needs ColorVideoVDP: `pip install cvvdp` (or `pip install keras-percept[cvvdp]`)."


def p1_closer(jod0: np.ndarray, jod1: np.ndarray) -> np.ndarray:
    """Probability that a judge finds `p1` closer to the reference than `p0`, from their JODs.

    Example:

    >>> float(p1_closer(np.array([9.0]), np.array([10.0]))[0])
    0.75
    """
    return ndtr(Z75 * (np.asarray(jod1, np.float64) - np.asarray(jod0, np.float64)))


def p_same(jod: np.ndarray, reference_jod: float = 10.0) -> np.ndarray:
    """Probability that a judge sees no difference between a patch of `jod` and its reference.

    Example:

    >>> p_same(np.array([10.0, 9.0])).round(3).tolist()
    [1.0, 0.5]
    """
    return 2.0 * (1.0 - ndtr(Z75 * np.abs(reference_jod - np.asarray(jod, np.float64))))


def votes(rng: np.random.Generator, probability: float, n_judges: int) -> float:
    """Fraction of `n_judges` independent judges saying yes, each with `probability`.

    Example:

    >>> votes(np.random.default_rng(0), 1.0, 5)
    1.0
    """
    return float(rng.binomial(n_judges, min(max(float(probability), 0.0), 1.0)) / n_judges)


def rate_jod(rng: np.random.Generator, jod: float, raters: int) -> np.ndarray:
    """`raters` simulated ratings (JOD scale) around a patch's ColorVideoVDP JOD.

    Example:

    >>> bool(abs(rate_jod(np.random.default_rng(0), 9.0, 1000).mean() - 9.0) < 0.2)
    True
    """
    return jod + rng.normal(0.0, RATER_SD, raters)


def version() -> str:
    """`cvvdp <package version>`, part of the cache key of cvvdp-judged datasets.

    Example:

    >>> version()  # doctest: +SKIP
    'cvvdp 0.5.7'
    """
    try:
        return f"cvvdp {importlib.metadata.version('cvvdp')}"
    except importlib.metadata.PackageNotFoundError as err:
        raise ImportError(_INSTALL) from err


@contextlib.contextmanager
def skip_torch_op_registration():
    """Inside the block, torch's op-registration hooks are no-ops: torchvision imports beside CPU torch.

    torchvision 0.28's compiled extension needs CUDA libraries the CPU torch wheel lacks, so importing it
    dies registering fake kernels ("operator torchvision::nms does not exist"). Its pure-Python parts
    (transforms, model definitions) work without them. Also used by the tests' reference `lpips` import.

    Example:

    >>> with skip_torch_op_registration():  # doctest: +SKIP
    ...     import torchvision
    """
    import torch

    lib = torch.library
    saved = (lib.register_fake, lib.register_autograd, lib.Library.impl)
    lib.register_fake = lambda *args, **kwargs: (lambda fn: fn)
    lib.register_autograd = lambda *args, **kwargs: None
    lib.Library.impl = lambda self, *args, **kwargs: (lambda fn: fn)
    try:
        yield
    finally:
        lib.register_fake, lib.register_autograd, lib.Library.impl = saved


def import_pycvvdp():
    """Imports `pycvvdp`; see the module docstring for the torchvision fallback.

    Example:

    >>> pycvvdp = import_pycvvdp()  # doctest: +SKIP
    """
    version()  # a clear error when cvvdp is not installed
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except RuntimeError as err:
            if "torchvision::" not in str(err):
                raise
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
            warnings.warn(
                f"torchvision's compiled ops do not load beside this torch ({err}); ColorVideoVDP needs only its "
                "pure-Python transforms, so torchvision is imported with those op registrations skipped.",
                stacklevel=2,
            )
            with skip_torch_op_registration():
                import torchvision  # noqa: F401
    import pycvvdp

    return pycvvdp


class CVVDPJudge:
    """ColorVideoVDP under the fixed display model `DISPLAY`, scoring batches of uint8 patches on the CPU.

    Example:

    >>> judge = CVVDPJudge()  # doctest: +SKIP
    >>> ref = np.zeros((1, 64, 64, 3), np.uint8)  # doctest: +SKIP
    >>> judge.jod(ref, ref)  # doctest: +SKIP
    array([10.])
    """

    def __init__(self):
        import torch

        pycvvdp = import_pycvvdp()
        self._torch = torch
        self._metric = pycvvdp.cvvdp(display_name=DISPLAY, quiet=True, device=torch.device("cpu"))

    def display_model(self, patch_size: int) -> dict:
        """The display model as stored in a manifest: preset, geometry, photometry, patch extent in degrees."""
        geometry, photometry = self._metric.display_geometry, self._metric.display_photometry
        ppd = float(geometry.get_ppd())
        return {
            "judge": version(), "preset": DISPLAY, "resolution": list(geometry.resolution),
            "display_size_meters": [round(v, 4) for v in geometry.display_size_m],
            "viewing_distance_meters": geometry.distance_m,
            "pixels_per_degree": round(ppd, 3), "patch_degrees": round(patch_size / ppd, 3),
            "peak_luminance_cd_m2": float(photometry.Y_peak), "contrast": float(photometry.contrast),
            "ambient_lux": float(photometry.E_ambient), "eotf": str(photometry.EOTF),
        }

    def jod(self, test: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """JOD of each `test[i]` against `reference[i]`; both `(N, H, W, 3)` uint8 display-encoded (sRGB)."""
        test, reference = np.asarray(test), np.asarray(reference)
        if test.shape != reference.shape or test.ndim != 4 or test.dtype != np.uint8 or reference.dtype != np.uint8:
            raise ValueError(
                "Arguments `test` and `reference` must be uint8 arrays of one shape (N, H, W, 3). Received: "
                f"test {test.dtype}{test.shape}, reference {reference.dtype}{reference.shape}"
            )
        torch = self._torch
        out = []
        with torch.no_grad():
            for start in range(0, len(test), _BATCH):
                # BCFHW: batch, colour, frames (1: an image), height, width.
                t, r = (torch.from_numpy(np.ascontiguousarray(a[start:start + _BATCH].transpose(0, 3, 1, 2)[:, :, None]))
                        for a in (test, reference))
                q, _ = self._metric.predict(t, r, dim_order="BCFHW")
                out.append(np.asarray(q, dtype=np.float64).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0)
