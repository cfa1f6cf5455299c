"""Views of `backbones.TRUNKS` by what they are used for, and the official LPIPS weight files."""

from __future__ import annotations

from keras_percept.backbones import TRUNKS

#: Input scaling applied to [-1, 1] images before each trunk (LPIPS v0.1).
SCALING: dict[str, dict[str, tuple[float, ...]]] = {net: trunk.scaling for net, trunk in TRUNKS.items()}

#: Nets with official LPIPS linear weights (`lpips/weights/v{version}/{net}.pth`).
OFFICIAL_LIN_NETS = tuple(net for net, trunk in TRUNKS.items() if trunk.official_lin)
OFFICIAL_LIN_VERSIONS = ("0.0", "0.1")
OFFICIAL_LIN_URL = (
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v{version}/{net}.pth"
)

#: torchvision ImageNet checkpoints (the file name carries a SHA-256 prefix).
TORCHVISION_WEIGHTS: dict[str, str] = {net: trunk.imagenet_url for net, trunk in TRUNKS.items() if trunk.imagenet_url}
