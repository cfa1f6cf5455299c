"""Test-only access to the PyTorch reference `lpips` package (PyPI lpips 0.1.4).

torchvision 0.28's C extension links CUDA libraries the CPU build of torch
lacks, so `import torchvision` dies registering fake kernels for its ops
("operator torchvision::nms does not exist"). LPIPS needs only torchvision's
pure-Python model definitions, so during that one import the three
`torch.library` registration hooks are made no-ops. This is a test shim, never
used by the package itself.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np


@contextlib.contextmanager
def _no_op_torch_library_registration():
    import torch

    lib = torch.library
    saved = (lib.register_fake, lib.register_autograd, lib.Library.impl)

    def register_fake(*args, **kwargs):
        return lambda fn: fn

    lib.register_fake = register_fake
    lib.register_autograd = lambda *args, **kwargs: None
    lib.Library.impl = lambda self, *args, **kwargs: (lambda fn: fn)
    try:
        yield
    finally:
        lib.register_fake, lib.register_autograd, lib.Library.impl = saved


@functools.lru_cache(maxsize=None)
def import_lpips():
    """Imports torchvision (through the shim) and the reference `lpips` package."""
    import torch  # noqa: F401

    with _no_op_torch_library_registration():
        import torchvision  # noqa: F401
    import lpips

    return lpips


def reference_lpips(net: str, *, seed: int = 0, version: str = "0.1", lpips: bool = True, spatial: bool = False):
    """The reference `lpips.LPIPS` with a seeded random torchvision trunk and the official lin weights."""
    import torch

    ref = import_lpips()
    torch.manual_seed(seed)
    model = ref.LPIPS(
        net=net, version=version, lpips=lpips, spatial=spatial, pretrained=True, pnet_rand=True, verbose=False
    )
    return model.eval()


def state_dict_numpy(module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def run_reference(model, x0: np.ndarray, x1: np.ndarray, *, normalize: bool = False, per_layer: bool = False):
    """Runs the reference on NHWC NumPy arrays; returns NHWC / flat NumPy results."""
    import torch

    t0 = torch.from_numpy(np.ascontiguousarray(x0.transpose(0, 3, 1, 2)))
    t1 = torch.from_numpy(np.ascontiguousarray(x1.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        out = model(t0, t1, retPerLayer=per_layer, normalize=normalize)
    if per_layer:
        total, layers = out
        return total.numpy().transpose(0, 2, 3, 1), [t.numpy().transpose(0, 2, 3, 1) for t in layers]
    return out.numpy().transpose(0, 2, 3, 1)
