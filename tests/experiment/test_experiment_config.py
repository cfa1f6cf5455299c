"""The shared configuration helpers and command-line types of `keras_percept.experiment`."""

from __future__ import annotations

import argparse

import pytest

from keras_percept.experiment.cli_args import default_or_text, none_or_text, optional_number, split_overrides
from keras_percept.experiment.config import (
    check_choice,
    check_positive_int,
    check_range,
    merge_config,
    parse_override,
    read_yaml,
)

pytestmark = pytest.mark.one_pass  # plain Python


def test_overrides_parse_as_yaml_and_merge_only_known_keys():
    assert parse_override("optim.learning_rate=1e-4") == {"optim": {"learning_rate": 1e-4}}
    assert read_yaml("lr: 3e-4")["lr"] == 3e-4  # YAML 1.1 alone reads this as a string
    assert merge_config({"a": {"b": 1, "c": 2}}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}}
    with pytest.raises(ValueError, match=r"Unknown config key 'a.x'. Known keys here: \['b', 'c'\]"):
        merge_config({"a": {"b": 1, "c": 2}}, {"a": {"x": 5}})
    with pytest.raises(ValueError, match="Overrides look like key.sub=value. Received: 'lr'"):
        parse_override("lr")


def test_validators_name_the_key_the_constraint_and_the_value():
    with pytest.raises(ValueError, match=r"`net` must be one of \['alex'\]. Received: 'vgg'"):
        check_choice("net", "vgg", ("alex",))
    with pytest.raises(ValueError, match=r"`dropout` must be in \[0.0, 1.0\). Received: 1.0"):
        check_range("dropout", 1.0, 0.0, 1.0, high_open=True)
    with pytest.raises(ValueError, match="`l2sp` must be in >= 0.0. Received: -1"):
        check_range("l2sp", -1, 0.0, None)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="`epochs` must be a positive integer"):
            check_positive_int("epochs", bad)


def test_none_is_parsed_one_way_everywhere():
    for text in ("none", "None", "null", "", None):
        assert none_or_text(text) is None and optional_number(int, "--epochs")(text) is None
    assert none_or_text("runs") == "runs"
    assert default_or_text("none") == "none" and default_or_text("default") is None
    assert optional_number(float, "--lr")("3e-4") == 3e-4
    with pytest.raises(argparse.ArgumentTypeError, match=r"--epochs must be int or 'none'. Received: 'two'"):
        optional_number(int, "--epochs")("two")
    with pytest.raises(argparse.ArgumentTypeError, match=r"--epochs must be > 0. Received: '0'"):
        optional_number(int, "--epochs")("0")
    assert split_overrides(["a=1 b=2", "none", "c=3"]) == ["a=1", "b=2", "c=3"]
