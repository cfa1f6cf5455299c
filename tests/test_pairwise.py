"""`LPIPS.pairwise` and `keras-percept distance DIR --matrix`: each image through the trunk once.

The expected matrix is every pair through `LPIPS.distance` (the trunk run on both images of a
pair, as the reference does), not the code under test.
"""

from __future__ import annotations

import csv
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_percept import LPIPS
from keras_percept.cli import main

N = 7


def _pairs_by_pair(model: LPIPS, images: np.ndarray) -> np.ndarray:
    expected = np.zeros((len(images), len(images)), np.float32)
    for i in range(len(images)):
        for j in range(len(images)):
            if i != j:
                expected[i, j] = model.distance(images[i], images[j])[0]
    return expected


@pytest.fixture(scope="module")
def photos_64(photos) -> np.ndarray:
    """Seven real 64 x 64 crops in [-1, 1] (crops of four photographs, two of them noisy)."""
    crops = [photos[name][y:y + 64, x:x + 64] for name in ("astronaut", "chelsea", "coffee", "rocket")
             for y, x in ((40, 60), (100, 120))][:N]
    noise = np.random.default_rng(0).normal(0, 0.05, (N, 64, 64, 3)) * (np.arange(N) % 2)[:, None, None, None]
    return np.clip(2 * np.stack(crops) - 1 + noise, -1, 1).astype("float32")


@pytest.mark.parametrize("net,lpips", [("alex", True), ("squeeze", True), ("effnet-lite0", False)])
def test_pairwise_equals_the_distance_of_every_pair(net, lpips, photos_64):
    keras.utils.set_random_seed(1)
    model = LPIPS(net=net, lpips=lpips)
    if lpips:  # non-uniform linear weights, so a tap or channel mix-up would show
        for k, lin in enumerate(model.lins):
            lin.kernel.assign(np.random.default_rng(k).uniform(0, 2, lin.kernel.shape) / lin.kernel.shape[2])
    # batch_size 3: several trunk batches and a padded last one, pairs across batch boundaries.
    matrix = model.pairwise(photos_64, batch_size=3)
    expected = _pairs_by_pair(model, photos_64)
    assert matrix.shape == (N, N) and matrix.dtype == np.float32
    assert np.abs(matrix - expected).max() <= 1e-6
    np.testing.assert_array_equal(matrix, matrix.T)
    assert np.all(np.diag(matrix) == 0) and matrix[~np.eye(N, dtype=bool)].min() > 0


def test_pairwise_takes_the_metric_range_and_rejects_bad_input(photos_64):
    keras.utils.set_random_seed(2)
    model = LPIPS(net="alex", input_range="[0,1]")
    unit = (photos_64[:3] + 1) / 2
    np.testing.assert_allclose(model.pairwise(unit), _pairs_by_pair(model, unit), atol=1e-6)
    with pytest.raises(ValueError, match="outside input_range='\\[0,1\\]'"):
        model.pairwise(photos_64[:3])
    with pytest.raises(ValueError, match="spatial maps for all N x N pairs are not supported"):
        model.with_options(spatial=True).pairwise(unit)
    with pytest.raises(ValueError, match="x0 has 1 channel"):
        model.pairwise(unit[..., :1])
    assert model.with_options(return_per_layer=True).pairwise(unit).shape == (3, 3)


@pytest.mark.one_pass  # command-line plumbing; pairwise itself is checked above on every backend
def test_matrix_cli_writes_the_named_matrix(photos_64, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = [f"img{k}.png" for k in range(4)]
    for name, image in zip(names, photos_64):
        Image.fromarray(((image + 1) * 127.5).round().astype(np.uint8)).save(folder / name)
    keras.utils.set_random_seed(3)
    model = LPIPS(net="alex")
    path = str(tmp_path / "alex.keras")
    model.save(path)
    out = tmp_path / "m.csv"
    assert main(["distance", str(folder), "--matrix", "--out", str(out), "--model", path, "--batch-size", "3"]) == 0
    assert "wrote the 4x4 distance matrix" in capsys.readouterr().out
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["", *names] and [r[0] for r in rows[1:]] == names
    read = np.stack([np.asarray(Image.open(folder / n), np.float32) / 127.5 - 1 for n in names])
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]),
                               _pairs_by_pair(model, read), atol=1.5e-6)
    assert main(["distance", str(folder), "--matrix", "--model", path]) == 0  # no --out: stdout
    assert capsys.readouterr().out.splitlines()[0] == "," + ",".join(names)

    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(folder / "small.png")
    assert main(["distance", str(folder), "--matrix", "--out", str(tmp_path / "x.csv"), "--model", path]) == 2
    err = capsys.readouterr().err
    assert "must have one size" in err and "small.png" in err and not os.path.exists(tmp_path / "x.csv")
    for extra in (["--spatial", str(tmp_path / "heat")], ["--shard", "1/2"]):
        assert main(["distance", str(folder), "--matrix", *extra]) == 2
        assert "does not take --spatial, --shard" in capsys.readouterr().err
