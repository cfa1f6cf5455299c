"""Test-only access to the PyTorch reference `lpips` package (PyPI lpips 0.1.4).

torchvision 0.28's C extension links CUDA libraries the CPU build of torch
lacks, so `import torchvision` dies registering fake kernels for its ops
("operator torchvision::nms does not exist"). LPIPS needs only torchvision's
pure-Python model definitions, so during that one import the three
`torch.library` registration hooks are made no-ops
(`keras_percept.data.embedded.cvvdp_judge.skip_torch_op_registration`, which
the opt-in ColorVideoVDP judge uses the same way).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from keras_percept.data.embedded.cvvdp_judge import skip_torch_op_registration


@functools.lru_cache(maxsize=None)
def import_lpips():
    """Imports torchvision (through the shim) and the reference `lpips` package."""
    import torch  # noqa: F401

    with skip_torch_op_registration():
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
    """A snapshot of `module`'s state as NumPy copies (`.numpy()` alone shares memory with in-place updates)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


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


def reference_trainer(net: str, *, seed: int = 0):
    """The reference `lpips.Trainer` set up for `lin` training on CPU, with dropout off.

    Seeded random torchvision trunk (`pnet_rand=True`, frozen), the Trainer's
    own random lin layers and `Dist2LogitLayer`, Adam(lr 1e-4, betas (0.5,
    0.999)). The Trainer always builds its lin layers with dropout; putting
    those `Dropout` modules in eval mode makes training deterministic.
    """
    import io

    import torch

    ref = import_lpips()
    torch.manual_seed(seed)
    trainer = ref.Trainer()
    with contextlib.redirect_stdout(io.StringIO()):  # the reference prints from its constructors
        trainer.initialize(model="lpips", net=net, use_gpu=False, is_train=True, pnet_rand=True)
    for module in trainer.net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    return trainer


def _trainer_input(ref: np.ndarray, p0: np.ndarray, p1: np.ndarray, judge: np.ndarray) -> dict:
    import torch

    nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # noqa: E731
    return {"ref": nchw(ref), "p0": nchw(p0), "p1": nchw(p1), "judge": torch.from_numpy(judge.reshape(-1, 1, 1, 1))}


@contextlib.contextmanager
def torch_threads(n: int):
    """Runs PyTorch CPU ops on `n` threads inside the block.

    On a small, shared machine PyTorch's default of one OpenMP thread per core
    oversubscribes it, and every small op then waits at a barrier: under load a
    reference LPIPS forward pass took ~1 s on 2 threads and ~0.1 s on one.
    """
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def trainer_step(trainer, ref: np.ndarray, p0: np.ndarray, p1: np.ndarray, judge: np.ndarray) -> float:
    """One `Trainer.optimize_parameters` step on NHWC NumPy triplets in [-1, 1]; returns its loss (before the step)."""
    trainer.set_input(_trainer_input(ref, p0, p1, judge))
    trainer.optimize_parameters()
    return float(trainer.loss_total.detach())


def trainer_loss(trainer, ref: np.ndarray, p0: np.ndarray, p1: np.ndarray, judge: np.ndarray) -> float:
    """The Trainer's loss on a batch, without a step."""
    import torch

    trainer.set_input(_trainer_input(ref, p0, p1, judge))
    with torch.no_grad():
        return float(trainer.forward_train().detach())


def reference_dists(*, seed: int = 0):
    """The reference `DISTS_pytorch.DISTS` (PyPI dists-pytorch 0.1) with a seeded random torchvision VGG16.

    It builds `torchvision.models.vgg16(pretrained=True)`, a download; here that call gets a seeded
    random VGG16 instead, and the module's own alpha/beta load (`load_weights=True`: the shipped
    `weights.pt`).
    """
    import torch

    import_lpips()  # torchvision, through the shim
    import torchvision
    from DISTS_pytorch import DISTS_pt

    torch.manual_seed(seed)
    trunk = torchvision.models.vgg16(weights=None)
    saved = DISTS_pt.models.vgg16
    DISTS_pt.models.vgg16 = lambda *args, **kwargs: trunk
    try:
        return DISTS_pt.DISTS(load_weights=True).eval()
    finally:
        DISTS_pt.models.vgg16 = saved


def run_reference_dists(model, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """The reference DISTS on NHWC NumPy images in [0, 1]; `(N,)`."""
    import torch

    nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # noqa: E731
    with torch.no_grad():
        return model(nchw(x0), nchw(x1)).reshape(-1).numpy()


def reference_stlpips(net: str, *, spatial: bool = False):
    """The reference ST-LPIPS (PyPI stlpips-pytorch 0.0.2): `net` alex / vgg, variant shift_tolerant.

    Built with `pretrained=True`, it loads its own shipped weights (`weights/vST0.0/`): the
    published metric, trunk and linear layers trained together.
    """
    import io

    import_lpips()  # torchvision, through the shim
    from stlpips_pytorch import stlpips

    with contextlib.redirect_stdout(io.StringIO()):  # the reference prints from its constructor
        model = stlpips.LPIPS(net=net, variant="shift_tolerant", spatial=spatial, pretrained=True, verbose=False)
    return model.eval()
