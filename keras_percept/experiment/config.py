"""Configuration shared by every experiment: YAML reading, `key.sub=value` overrides, merging, validators.

One place for what the 2AFC (`keras_percept.training.config`) and the
image-quality (`keras_percept.iqa.config`) configurations both need. The
validators raise `ValueError` in Keras's wording: "`name` must be ...
Received: value".

Example:

>>> merge_config({"optim": {"lr": 1.0}}, parse_override("optim.lr=3e-4"))
{'optim': {'lr': 0.0003}}
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Mapping, Sequence

import yaml


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` (no dot) as a string; configs mean a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(text_or_stream):
    """`yaml.safe_load` that also reads `1e-4` as a float."""
    return yaml.load(text_or_stream, Loader=_Loader)


def get_dotted(config, dotted: str):
    """`get_dotted(config, "optim.epochs")` is `config.optim.epochs`."""
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def check_choice(name: str, value, allowed: Sequence) -> None:
    """Raises `ValueError` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}. Received: {value!r}")


def check_range(name: str, value, low: float, high: float | None, *, high_open: bool = False) -> None:
    """Raises `ValueError` unless `value` is a number in [low, high] (`high_open`: [low, high); None: no bound)."""
    bad = not isinstance(value, (int, float)) or value < low
    if high is not None and not bad:
        bad = value >= high if high_open else value > high
    if bad:
        upper = "" if high is None else (f", {high})" if high_open else f", {high}]")
        interval = f"[{low}{upper}" if high is not None else f">= {low}"
        raise ValueError(f"`{name}` must be in {interval}. Received: {value!r}")


def check_positive_int(name: str, value) -> None:
    """Raises `ValueError` unless `value` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {value!r}")


def merge_config(base: dict, update: Mapping, path: str = "") -> dict:
    """`base` updated by `update`, recursively; a key `base` lacks is an error naming the known keys."""
    out = dict(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base:
            raise ValueError(f"Unknown config key {where!r}. Known keys here: {sorted(base)}")
        if isinstance(base[key], dict) and base[key] is not None:
            if not isinstance(value, Mapping):
                raise ValueError(f"Config key {where!r} must be a mapping. Received: {value!r}")
            out[key] = merge_config(base[key], value, f"{where}.")
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict:
    """`"optim.learning_rate=3e-4"` → `{"optim": {"learning_rate": 0.0003}}` (values parsed as YAML).

    Example:

    >>> parse_override("data.flip=true")
    {'data': {'flip': True}}
    """
    if "=" not in text:
        raise ValueError(f"Overrides look like key.sub=value. Received: {text!r}")
    key, raw = text.split("=", 1)
    value = read_yaml(raw) if raw != "" else None
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def config_fingerprint(config) -> str:
    """A short hash of the resolved config (`config.to_dict()`): a backup or an MLflow run is resumed only by the same config."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
