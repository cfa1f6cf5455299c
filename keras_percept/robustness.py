"""Robustness of a distance on 2AFC triplets: the shift test of ST-LPIPS and the 2AFC score under a PGD attack.

Shift test (Ghildyal & Liu, ECCV 2022): the reference of every triplet is shifted right by
n pixels (its first n columns cropped, n columns reflected in on the other side), p0 and p1
unchanged; a judgment flips when the order of `d(ref, p0)` and `d(ref, p1)` changes. A
shift-invariant metric flips none; the paper reports LPIPS flipping a few percent of BAPPS at
1-3 px. Works for every distance, classical ones included.

PGD (`keras_percept.adversarial.PGD`): the attacked image (by default the reference) moves
within the ball so as to turn the metric against the human majority: it ascends
`mean(s * (d0 - d1))` with `s = sign(0.5 - h)`, +1 where humans found p0 closer. Triplets with
h = 0.5 have no majority and are not attacked. The score is the 2AFC score of the attacked
triplets; it needs a differentiable distance written in `keras.ops` (a metric of this package,
or a lambda). For E-LPIPS each step's gradient is that of the metric's own average over its
`n` random transforms, drawn afresh at every step (expectation over transformation); a fixed
draw would overstate its robustness.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import keras
import numpy as np
from keras import ops

from keras_percept.adversarial import PGD
from keras_percept.metrics.twoafc import two_afc_score

DEFAULT_SHIFTS = (1, 2, 3)


def shift_right(images: np.ndarray, pixels: int) -> np.ndarray:
    """NHWC `images` shifted right by `pixels`: the last `pixels` columns dropped, the first reflected in.

    The ST-LPIPS shift: the content moves, the size stays, and no black border appears.

    Example:

    >>> shift_right(np.arange(5.0).reshape(1, 1, 5, 1), 2)[0, 0, :, 0]
    array([2., 1., 0., 1., 2.])
    """
    pixels = int(pixels)
    if pixels < 0 or pixels >= images.shape[2]:
        raise ValueError(f"Argument `pixels` must be in [0, width={images.shape[2]}). Received: pixels={pixels}")
    if pixels == 0:
        return images
    kept = images[:, :, : images.shape[2] - pixels]
    return np.pad(kept, ((0, 0), (0, 0), (pixels, 0), (0, 0)), mode="reflect")


def shift_test(distance_fns: Mapping[str, Callable], dataset, shifts: Iterable[int] = DEFAULT_SHIFTS
               ) -> dict[str, dict[str, float]]:
    """Flip rate and 2AFC score of each distance when the reference is shifted by each of `shifts` pixels.

    Args:
        distance_fns: name -> `fn(x0, x1) -> (N,)` on NHWC batches in [-1, 1].
        dataset: batches `((ref, p0, p1), judge)` (e.g. `keras_percept.data.load_2afc`).
        shifts: pixel shifts. Defaults to `(1, 2, 3)`.

    Returns:
        `{name: {"2afc": unshifted score, "flip_1px": fraction flipped, "2afc_1px": score, ...}}`.

    Example:

    >>> shift_test({"l2": l2_fn}, load_2afc(root, "val"))["l2"]["flip_1px"]  # doctest: +SKIP
    0.031
    """
    shifts = tuple(int(s) for s in shifts)
    batches = list(dataset.as_numpy_iterator())
    table = {}
    for name, fn in distance_fns.items():
        orders, scores = {}, {}
        judge = np.concatenate([np.reshape(h, -1) for _, h in batches])
        for shift in (0, *shifts):
            d0, d1 = [], []
            for (ref, p0, p1), _ in batches:
                moved = shift_right(ref, shift)
                d0.append(np.reshape(np.asarray(fn(moved, p0)), -1))
                d1.append(np.reshape(np.asarray(fn(moved, p1)), -1))
            d0, d1 = np.concatenate(d0), np.concatenate(d1)
            orders[shift] = np.sign(d1 - d0)
            scores[shift] = float(two_afc_score(d0, d1, judge))
        row = {"2afc": scores[0]}
        for shift in shifts:
            row[f"flip_{shift}px"] = float(np.mean(orders[shift] != orders[0]))
            row[f"2afc_{shift}px"] = scores[shift]
        table[name] = row
    return table


def pgd_2afc(distance: Callable, dataset, attack: PGD, *, variables=()) -> dict[str, float]:
    """2AFC score of a differentiable distance before and after `attack`, over `dataset`.

    Args:
        distance: `fn(x0, x1) -> (N,)` in `keras.ops` (e.g. a metric of this package, called with
            `training=False`).
        dataset: batches `((ref, p0, p1), judge)`.
        attack: the `PGD` attack (its `target` is the image moved).
        variables: variables `distance` assigns (JAX: E-LPIPS's `SeedGenerator` state, so each
            step draws new transforms); `metric.variables` is enough.

    Returns:
        `{"2afc": clean score, "2afc_pgd": attacked score, "attacked": fraction of triplets with a majority}`.

    Example:

    >>> metric = keras_percept.LPIPS(net="alex")
    >>> pgd_2afc(lambda a, b: metric((a, b), training=False), val, PGD(0.03))  # doctest: +SKIP
    """
    def perturb(ref, p0, p1, side):
        def margin(r, a, b):
            return ops.mean(side * (distance(r, a) - distance(r, b)))

        return attack.perturb((ref, p0, p1), margin, variables=variables)

    if keras.backend.backend() == "tensorflow":  # one graph for all steps: eager tapes cost ~10x here
        import tensorflow as tf

        perturb = tf.function(perturb, reduce_retracing=True)
    clean0, clean1, adv0, adv1, judges = [], [], [], [], []
    for (ref, p0, p1), judge in dataset.as_numpy_iterator():
        h = np.reshape(judge, -1).astype("float32")
        triplet = tuple(ops.convert_to_tensor(x) for x in (ref, p0, p1))
        attacked = perturb(*triplet, ops.convert_to_tensor(np.sign(0.5 - h)))
        for images, out0, out1 in ((triplet, clean0, clean1), (attacked, adv0, adv1)):
            out0.append(np.reshape(ops.convert_to_numpy(distance(images[0], images[1])), -1))
            out1.append(np.reshape(ops.convert_to_numpy(distance(images[0], images[2])), -1))
        judges.append(h)
    judge = np.concatenate(judges)
    return {
        "2afc": float(two_afc_score(np.concatenate(clean0), np.concatenate(clean1), judge)),
        "2afc_pgd": float(two_afc_score(np.concatenate(adv0), np.concatenate(adv1), judge)),
        "attacked": float(np.mean(judge != 0.5)),
    }


def metric_distance(metric: keras.Model) -> Callable:
    """`fn(x0, x1)` of a package metric in inference mode, as `pgd_2afc` wants it."""
    return lambda a, b: metric((a, b), training=False)


def l2_distance_ops(x0, x1):
    """Mean squared difference per image in `keras.ops` (differentiable): L2 for `pgd_2afc`."""
    return ops.mean(ops.square(x0 - x1), axis=(1, 2, 3))
