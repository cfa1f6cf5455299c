"""Training orders as a pure function of (seed, epoch, position): the data side of resuming a killed run.

`tf.data`'s `shuffle(reshuffle_each_iteration=True)` draws each epoch's order
from the iterator's history, so a new process replays epoch 0's order. Here
epoch `e`'s order is a stateless permutation keyed by `(seed, e)`, and the
random draws of item `j` of epoch `e` (crops, flips) are keyed by
`(seed, e * items_per_epoch + j)`; a pipeline spanning epochs
`first_epoch ... epochs - 1` therefore yields, from its first batch, what an
uninterrupted run sees from epoch `first_epoch` on.

Example:

>>> order = epoch_order(5, seed=0, epoch=tf.constant(3, tf.int64), items=5)
>>> sorted(order.numpy().tolist())
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def epoch_order(n: int, *, seed: int, epoch: tf.Tensor, items: int, shuffle: bool = True) -> tf.Tensor:
    """The item indices of one epoch, `(items,)` int64: permutations of `range(n)` keyed by `(seed, epoch, pass)`.

    An epoch longer than the data (`items > n`, a `steps_per_epoch` beyond one
    pass) chains further permutations; a shorter one takes the first `items`.
    With `shuffle=False` the order is `0, 1, ..., n - 1, 0, 1, ...`.

    Example:

    >>> epoch_order(3, seed=1, epoch=tf.constant(0, tf.int64), items=3, shuffle=False).numpy()
    array([0, 1, 2])
    """
    positions = tf.range(items, dtype=tf.int64)
    if not shuffle:
        return positions % n
    key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0x5EED], tf.int64), tf.cast(epoch, tf.int64))
    passes = [tf.argsort(tf.random.stateless_uniform([n], seed=tf.random.experimental.stateless_fold_in(key, q)))
              for q in range(-(-items // n))]
    return tf.cast(tf.concat(passes, axis=0)[:items], tf.int64)


def item_seeds(seed: int, epoch: tf.Tensor, items: int) -> tf.Tensor:
    """`(items, 2)` int64 stateless seeds `[seed, epoch * items + j]`: one per item of the epoch, never repeated."""
    start = tf.cast(epoch, tf.int64) * items
    positions = tf.range(start, start + items, dtype=tf.int64)
    return tf.stack([tf.fill([items], tf.constant(seed, tf.int64)), positions], axis=1)


def over_epochs(one_epoch: Callable[[tf.Tensor], tf.data.Dataset], *, first_epoch: int, epochs: int,
                batches_per_epoch: int) -> tf.data.Dataset:
    """The batches of epochs `first_epoch ... epochs - 1`, each built by `one_epoch(epoch)`, with a known cardinality.

    Give the result to `fit(..., steps_per_epoch=batches_per_epoch, initial_epoch=first_epoch)`:
    Keras then keeps one iterator across epochs and epoch `e` gets exactly
    the batches of `one_epoch(e)`.

    Example:

    >>> ds = over_epochs(lambda e: tf.data.Dataset.from_tensors(e), first_epoch=2, epochs=4, batches_per_epoch=1)
    >>> [int(x) for x in ds]
    [2, 3]
    """
    for name, value in (("first_epoch", first_epoch), ("epochs", epochs), ("batches_per_epoch", batches_per_epoch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"Argument `{name}` must be a non-negative int. Received: {name}={value!r}")
    if first_epoch >= epochs:
        raise ValueError(f"Argument `first_epoch` must be < epochs={epochs}. Received: first_epoch={first_epoch}")
    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    return ds.apply(tf.data.experimental.assert_cardinality((epochs - first_epoch) * batches_per_epoch))


def tensor_batches(tensors, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_remainder: bool = False,
                   epochs: int | None = None, first_epoch: int = 0,
                   steps_per_epoch: int | None = None) -> tf.data.Dataset:
    """Batches of in-memory arrays (any nest of equal-length arrays), ordered per epoch as `epoch_order` says.

    `epochs=None`: one pass (epoch 0's order); an int: the batches of epochs
    `first_epoch ... epochs - 1` (see `over_epochs`).

    Example:

    >>> import numpy as np
    >>> ds = tensor_batches((np.arange(6.0), np.arange(6.0)), 3, shuffle=True, seed=0, epochs=2)
    >>> [tuple(sorted(x.numpy().tolist())) == tuple(sorted(y.numpy().tolist())) for x, y in ds]
    [True, True, True, True]
    """
    tensors = tf.nest.map_structure(tf.convert_to_tensor, tensors)
    n = int(tf.nest.flatten(tensors)[0].shape[0])
    items = steps_per_epoch * batch_size if steps_per_epoch else n
    batches = steps_per_epoch or (n // batch_size if drop_remainder else -(-n // batch_size))

    def one_epoch(epoch):
        order = epoch_order(n, seed=seed, epoch=epoch, items=items, shuffle=shuffle)
        ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)
        return ds.map(lambda rows: tf.nest.map_structure(lambda t: tf.gather(t, rows), tensors))

    if epochs is None:
        return one_epoch(tf.constant(0, tf.int64))
    return over_epochs(one_epoch, first_epoch=first_epoch, epochs=epochs, batches_per_epoch=batches)
