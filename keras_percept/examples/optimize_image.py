"""Optimise an image towards a target with LPIPS as the loss (the reference's `lpips_loss.py`).

    python -m keras_percept.examples.optimize_image --steps 300 --out result.png

The image being optimised is the only weight of a tiny Keras model (an
`ImageParameter` layer, clipped to [0, 1] by a `ClipToRange` constraint),
trained by `model.train_on_batch` steps against
`keras_percept.losses.PerceptualLoss` (one step per call, as the reference's
loop; `fit` would work too but costs an epoch's overhead per step). Nothing
here is backend-specific: the same code runs on TensorFlow, JAX and PyTorch.
The default target is a crop of scikit-image's `chelsea` photograph and the
default start a blurred, noisy copy of it, so it runs offline.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import keras
import numpy as np

from keras_percept.distance import DEFAULT_NET
from keras_percept.layers import ImageParameter


def default_target(size: int = 64, photo: str = "chelsea") -> np.ndarray:
    """A centred `size`x`size` crop of a scikit-image photograph, float32 in [0, 1]."""
    from skimage import data

    img = getattr(data, photo)().astype(np.float32) / 255.0
    if min(img.shape[:2]) < size:
        raise ValueError(f"Argument `size` must be at most {min(img.shape[:2])} for {photo!r}. Received: size={size}")
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return np.ascontiguousarray(img[top:top + size, left:left + size])


def distorted_start(target: np.ndarray, seed: int = 0, sigma: float = 2.0, noise: float = 0.1) -> np.ndarray:
    """`target` blurred (Gaussian, `sigma` px) plus Gaussian noise of std `noise`, clipped to [0, 1]."""
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    blurred = gaussian(target, sigma=sigma, channel_axis=-1)
    return np.clip(blurred + rng.normal(0.0, noise, target.shape), 0.0, 1.0).astype(np.float32)


def optimize_image(
    target: np.ndarray,
    start: np.ndarray,
    steps: int = 300,
    *,
    metric=None,
    net: str = DEFAULT_NET,
    learning_rate: float = 0.01,
    print_every: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Moves `start` towards `target` by Adam steps on LPIPS(target, image).

    Both images are float `(H, W, 3)` in [0, 1]; the image stays in [0, 1]
    (clipped after every step, as the reference clamps after each step).

    Args:
        target: the image to reach.
        start: the initial image, same shape.
        steps: optimizer steps. Defaults to `300`.
        metric: an `LPIPS` model or `.keras` path; `None` builds the
            pretrained metric for `net`. Defaults to `None`.
        net: trunk when `metric` is `None`. Defaults to `"effnet-lite0"`
            (offline).
        learning_rate: Adam learning rate. Defaults to `0.01`.
        print_every: print the distance every this many steps (0: silent).
            Defaults to `0`.

    Returns:
        `(result, distances)`: the optimised image and the LPIPS distance
        before each step plus after the last one, `(steps + 1,)`.

    Example:

    >>> target = default_target(64)
    >>> result, distances = optimize_image(target, distorted_start(target), steps=300)  # doctest: +SKIP
    >>> distances[-1] < 0.5 * distances[0]  # doctest: +SKIP
    True
    """
    from keras_percept.losses.perceptual import PerceptualLoss

    target = np.asarray(target, dtype=np.float32)
    start = np.asarray(start, dtype=np.float32)
    if target.ndim != 3 or target.shape[-1] != 3 or start.shape != target.shape:
        raise ValueError(
            "Arguments `target` and `start` must be (H, W, 3) images of the same shape. "
            f"Received: target {target.shape}, start {start.shape}"
        )
    if int(steps) < 1:
        raise ValueError(f"Argument `steps` must be >= 1. Received: steps={steps}")
    loss = PerceptualLoss(metric, net=net, input_range="[0,1]")
    layer = ImageParameter(target.shape, value_range=(0.0, 1.0), name="image")
    layer.image.assign(np.clip(start, 0.0, 1.0))
    model = keras.Sequential([keras.Input((1,)), layer], name="image_model")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    dummy, y = np.zeros((1, 1), np.float32), target[None]
    distances = []
    for step in range(int(steps)):
        # `train_on_batch` reports the loss tracker's running mean; reset it to log this step's distance.
        model.reset_metrics()
        distances.append(float(model.train_on_batch(dummy, y)))
        if print_every and step % print_every == 0:
            print(f"step {step:5d}  distance {distances[-1]:.4f}", flush=True)
    result = keras.ops.convert_to_numpy(layer.image)
    distances.append(float(keras.ops.convert_to_numpy(loss.metric((y, result[None]), training=False))[0]))
    if print_every:
        print(f"step {int(steps):5d}  distance {distances[-1]:.4f} (final)", flush=True)
    return result, np.array(distances, dtype=np.float64)


def _save_png(image: np.ndarray, path: str) -> None:
    from PIL import Image

    from keras_percept.images import atomic_write_image

    atomic_write_image(Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)), path)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", help="target image file (default: a crop of scikit-image's chelsea photo)")
    p.add_argument("--start", default="distorted",
                   help="'distorted' (blurred + noisy target, default), 'noise' (uniform), or an image file")
    p.add_argument("--size", type=int, default=64, help="side of the default target crop in pixels (default 64)")
    p.add_argument("--net", default=DEFAULT_NET, choices=("effnet-lite0", "alex", "vgg", "squeeze"),
                   help=f"trunk of the pretrained metric (default {DEFAULT_NET}, offline)")
    p.add_argument("--model", help="a metric saved as .keras (overrides --net)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    p.add_argument("--print-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="result.png", help="the optimised image (PNG)")
    p.add_argument("--strip", help="also write a start | result | target PNG strip here")
    args = p.parse_args(argv)
    try:
        from keras_percept.images import load_image

        target = load_image(args.target) if args.target else default_target(args.size)
        if args.start == "distorted":
            start = distorted_start(target, seed=args.seed)
        elif args.start == "noise":
            start = np.random.default_rng(args.seed).uniform(0, 1, target.shape).astype(np.float32)
        else:
            start = load_image(args.start)
        result, distances = optimize_image(target, start, args.steps, metric=args.model, net=args.net,
                                           learning_rate=args.lr, print_every=args.print_every)
        _save_png(result, args.out)
        if args.strip:
            _save_png(np.concatenate([start, result, target], axis=1), args.strip)
    except (ValueError, OSError, ImportError) as err:
        print(f"optimize_image: error: {err}", file=sys.stderr)
        return 2
    print(f"distance {distances[0]:.4f} -> {distances[-1]:.4f} ({100 * (1 - distances[-1] / distances[0]):.0f}% lower); "
          f"wrote {args.out}" + (f" and {args.strip}" if args.strip else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
