"""Fixtures for the data tests: a damageable BAPPS-layout folder, and a small embedded dataset per session."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from bapps_fixture import SMALL_EMBEDDED, make_bapps  # noqa: E402


@pytest.fixture
def bapps(tmp_path) -> tuple[str, dict]:
    """A fresh BAPPS-layout folder (safe to damage) and its ground truth."""
    root = str(tmp_path / "dataset")
    return root, make_bapps(root)


@pytest.fixture(scope="session")
def embedded_root(tmp_path_factory) -> str:
    """A small embedded dataset, built once per test session."""
    from keras_percept.data import embedded

    return embedded.build(str(tmp_path_factory.mktemp("embedded") / "set"), **SMALL_EMBEDDED)
