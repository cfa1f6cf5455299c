"""IQAConfig: defaults, YAML + overrides, and an error naming each invalid key."""

from __future__ import annotations

import os

import pytest

from keras_percept.iqa.config import iqa_config_from_dict, load_iqa_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_the_compare_config_loads_and_overrides_apply():
    config = load_iqa_config(os.path.join(REPO, "configs", "iqa", "compare.yaml"),
                             overrides=["loss_type=fidelity", "loss_kwargs.sigma=0.5", "optim.epochs=2"])
    assert (config.loss_type, config.loss_kwargs, config.optim.epochs) == ("fidelity", {"sigma": 0.5}, 2)
    assert config.model.mode == "fr" and config.optim.schedule == "cosine" and config.uses_feature_cache()


@pytest.mark.parametrize("values, message", [
    ({"loss_type": "huber"}, "`loss_type` must be one of"),
    ({"model": {"mode": "xx"}}, "`model.mode` must be one of"),
    ({"model": {"drop_path": 1.5}}, r"`model.drop_path` must be in \[0.0, 1.0\)"),
    ({"model": {"taps": "all"}}, "`model.taps` must be a non-empty list"),
    ({"data": {"batch_size": 1}}, "`data.batch_size` must be an integer >= 2"),
    ({"data": {"test_fraction": 1.0}}, r"`data.test_fraction` must be in \(0, 1\)"),
    ({"data": {"val_fraction": 1.0}}, r"`data.val_fraction` must be in \[0, 1\)"),
    ({"data": {"val_fraction": 0}, "early_stopping_patience": 3},
     r"`early_stopping_patience` needs a validation split .* Received: data.val_fraction=0"),
    ({"data": {"val_fraction": 0}, "restarts": 2},
     r"`restarts` > 1 needs a validation split .* Received: restarts=2, data.val_fraction=0"),
    ({"restarts": 0}, "`restarts` must be a positive integer"),
    ({"data": {"patch_size": 96}}, "`data.patch_size` must be <= 64 for the embedded dataset"),
    ({"data": {"dataset": "/no/such.csv"}}, "`data.dataset` must be 'embedded' or a MOS CSV file"),
    ({"optim": {"learning_rate": 0}}, "`optim.learning_rate` must be a number > 0"),
    ({"early_stopping_patience": 0}, "`early_stopping_patience` must be a positive integer"),
    ({"feature_cache": True, "model": {"trunk_trainable": True}}, "`feature_cache: true` needs a frozen trunk"),
    ({"loss_kwargs": {"temperature": 0.1}}, r"`loss_kwargs` .* loss 'l1'"),
    ({"data": {"typo": 1}}, "Unknown config key 'data.typo'"),
])
def test_invalid_values_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        iqa_config_from_dict(values)


def test_split_by_image_keeps_groups_whole():
    import numpy as np

    from keras_percept.data.mos import MOSTable, split_by_image

    table = MOSTable(tuple(f"/d/{i}.png" for i in range(12)), np.arange(12.0))
    photos = [f"photo{i // 3}" for i in range(12)]  # 4 photographs, 3 images each
    train, val = split_by_image(table, test_fraction=0.25, seed=0, groups=photos)
    held = {photos[int(p[3:-4])] for p in val.paths}
    assert len(held) == 1 and len(val) == 3
    assert not held & {photos[int(p[3:-4])] for p in train.paths}
    with pytest.raises(ValueError, match=r"`groups` must have one label per row \(12\). Received: 2"):
        split_by_image(table, groups=["a", "b"])
