"""`get_loss`: every registered name builds its class; unknown names fail clearly."""

from __future__ import annotations

import keras
import pytest

from keras_percept.losses import LOSSES, TwoAFCBCE, get_loss


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_name_builds_a_serializable_loss(name):
    loss = get_loss(name)
    assert isinstance(loss, LOSSES[name]) and isinstance(loss, keras.losses.Loss)
    assert type(keras.losses.deserialize(keras.losses.serialize(loss))) is LOSSES[name]


def test_kwargs_reach_the_constructor():
    loss = get_loss("bce", label_smoothing=0.1)
    assert isinstance(loss, TwoAFCBCE) and loss.label_smoothing == 0.1


@pytest.mark.parametrize("name", ["BCE", "mse", "", None])
def test_unknown_name(name):
    with pytest.raises(ValueError, match=r"Argument `name` must be one of \[.*'bce'.*\]\. Received: name="):
        get_loss(name)


def test_invalid_option_is_named():
    with pytest.raises(ValueError, match="`margin`"):
        get_loss("hinge", margin=-1.0)
