"""Per-trunk constants as data: input scaling and the official weight files."""

from __future__ import annotations

from keras_percept.layers.scaling import LPIPS_SCALE, LPIPS_SHIFT

#: Input scaling applied to [-1, 1] images before each trunk (LPIPS v0.1).
#: alex/vgg/squeeze: the reference `ScalingLayer` (ImageNet mean/std).
#: effnet-lite0: TF EfficientNet-Lite's `(x255 - 127) / 128`, rewritten for
#: x in [-1, 1]: x255 = 127.5 (x + 1), so shift = -0.5 / 127.5, scale = 128 / 127.5.
SCALING: dict[str, dict[str, tuple[float, ...]]] = {
    "alex": {"shift": LPIPS_SHIFT, "scale": LPIPS_SCALE},
    "vgg": {"shift": LPIPS_SHIFT, "scale": LPIPS_SCALE},
    "squeeze": {"shift": LPIPS_SHIFT, "scale": LPIPS_SCALE},
    "effnet-lite0": {"shift": (-0.5 / 127.5,) * 3, "scale": (128.0 / 127.5,) * 3},
}

#: Nets with official LPIPS linear weights (`lpips/weights/v{version}/{net}.pth`).
OFFICIAL_LIN_NETS = ("alex", "vgg", "squeeze")
OFFICIAL_LIN_VERSIONS = ("0.0", "0.1")
OFFICIAL_LIN_URL = (
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v{version}/{net}.pth"
)

#: torchvision ImageNet checkpoints (the file name carries a SHA-256 prefix).
TORCHVISION_WEIGHTS: dict[str, str] = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}
