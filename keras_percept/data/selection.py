"""The selection split: carved from the training data, so no choice ever reads the reported split.

Early stopping, the choice among restarts and the Optuna objective score a
model on the *selection* split; the validation split of a BAPPS-layout folder
(BAPPS `val`, the paper's reporting split) is the *test* split, scored once at
the end. `carve_selection` takes `fraction` of the training triplets out of
training:

- grouped by photograph where the folder says which photograph each triplet
  was cut from (the embedded set's `metadata/2afc_train.csv`) and there are at
  least `MIN_GROUPS` photographs: patches of one photograph overlap, so a
  split by triplet would put near-copies of a selection triplet into training;
- else (BAPPS, whose files do not name their source image) a seeded fraction
  of each training category, so every category is represented.

The split depends only on the data and `seed` (the config's `data.seed`),
never on the training seed: every restart and every trial of a study is
scored on the same selection triplets.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from keras_percept.data.layout import ItemIndex

#: Fewest photographs for a split by photograph (below it, by triplet per category).
MIN_GROUPS = 5
#: Fewest photographs on each side of a split by photograph: a choice made on one image's content is noisy.
MIN_SIDE_GROUPS = 2


def photo_groups(index: ItemIndex) -> list[str] | None:
    """The source photograph of every item of `index`, from `<root>/metadata/2afc_<split>.csv`; None if unknown.

    Example:

    >>> photo_groups(index_2afc(embedded.build(), "train"))[:2]  # doctest: +SKIP
    ['astronaut', 'coffee']
    """
    path = os.path.join(index.root, "metadata", f"2afc_{index.split}.csv")
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        photo = {(row["category"], row["id"]): row["photo"] for row in csv.DictReader(f) if row.get("photo")}
    groups = [photo.get((c, i)) for c, i in zip(index.categories, index.ids)]
    return None if any(g is None for g in groups) else groups


def selection_positions(categories: list[str], fraction: float, *, seed: int,
                        groups: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(positions kept for fitting, positions of the selection split), both sorted.

    With `groups` holding at least `MIN_GROUPS` distinct values, whole groups
    go to the selection split: a seeded order of the groups, cut where the
    selection's share of the items is closest to `fraction`, with at least
    `MIN_SIDE_GROUPS` groups on each side (on the embedded set's 7 training
    photographs, 2 of them: about 28 % of the triplets for any fraction
    up to 0.35). Otherwise, per category, a
    seeded `round(fraction * n)` of its items (at least one of a category of
    two or more).

    Example:

    >>> fit, selection = selection_positions(["a"] * 10, 0.2, seed=0)
    >>> len(fit), len(selection)
    (8, 2)
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"Argument `fraction` must be a number in (0, 1). Received: fraction={fraction!r}")
    n = len(categories)
    rng = np.random.default_rng([int(seed), 0x5E1EC7])
    chosen = np.zeros(n, dtype=bool)
    if groups is not None and len(set(groups)) >= MIN_GROUPS:
        names = sorted(set(groups))
        order = [names[k] for k in rng.permutation(len(names))]
        sizes = np.array([sum(g == name for g in groups) for name in order])
        counts = np.arange(MIN_SIDE_GROUPS, len(names) - MIN_SIDE_GROUPS + 1)  # groups taken, allowed
        shares = np.cumsum(sizes)[counts - 1] / n
        take = set(order[:int(counts[np.argmin(np.abs(shares - fraction))])])
        chosen = np.array([g in take for g in groups])
    else:
        for category in dict.fromkeys(categories):
            members = np.flatnonzero(np.asarray(categories) == category)
            k = int(round(fraction * len(members)))
            if len(members) >= 2:
                k = min(max(k, 1), len(members) - 1)
            else:
                k = 0
            chosen[rng.permutation(members)[:k]] = True
    if not chosen.any():
        raise ValueError(f"The training data ({n} triplets) is too small to carve a selection split of "
                         f"fraction {fraction}: add data or raise data.selection_fraction.")
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


def carve_selection(index: ItemIndex, fraction: float, *, seed: int) -> tuple[ItemIndex, ItemIndex]:
    """(the triplets to fit on, the selection triplets) of a training `ItemIndex`; see the module docstring.

    Example:

    >>> fit, selection = carve_selection(index_2afc(root, "train"), 0.2, seed=0)  # doctest: +SKIP
    >>> len(selection) / (len(fit) + len(selection))  # doctest: +SKIP
    0.2
    """
    fit, selection = selection_positions(index.categories, fraction, seed=seed, groups=photo_groups(index))
    return index.subset(fit), index.subset(selection)
