"""A search space as data (`configs/search/*.yaml`): config keys → Optuna distributions.

Example:

>>> space = SearchSpace.from_yaml("configs/search/lin.yaml")  # doctest: +SKIP
>>> space.overrides(space.suggest(trial))  # doctest: +SKIP
['optim.optimizer=adam', 'optim.learning_rate=0.003', ...]
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from keras_percept.experiment.config import read_yaml

PARAM_TYPES = ("float", "int", "categorical")
SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "halving", "hyperband", "none")


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched config key. `when`: {other key: allowed values} under which it is suggested."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    when: Mapping[str, tuple] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.type not in PARAM_TYPES:
            raise ValueError(f"`params.{self.name}.type` must be one of {list(PARAM_TYPES)}. Received: {self.type!r}")
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"`params.{self.name}.choices` must be a non-empty list. Received: {self.choices!r}")
            return
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.low, self.high)) \
                or not self.low < self.high:
            raise ValueError(f"`params.{self.name}` needs numbers low < high. Received: low={self.low!r}, "
                             f"high={self.high!r}")
        if self.log and self.low <= 0:
            raise ValueError(f"`params.{self.name}.low` must be > 0 with log: true. Received: {self.low!r}")

    def suggest(self, trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Searched parameters, overrides fixed for every trial, and the study's sampler / pruner settings."""

    params: tuple[Param, ...]
    fixed: Mapping[str, Any]
    paradigm: str = "lin"
    direction: str = "maximize"
    sampler: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"name": "tpe"})
    pruner: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"name": "median"})
    monitor: str | None = None  # None: the task's (`Task.monitor`)
    source: str | None = None
    task: str = "2afc"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> "SearchSpace":
        known = {"task", "paradigm", "objective", "params", "fixed", "study"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown search-space keys {sorted(unknown)}. Known keys: {sorted(known)}")
        raw_params = data.get("params") or {}
        if not isinstance(raw_params, Mapping) or not raw_params:
            raise ValueError(f"`params` must be a non-empty mapping of config keys. Received: {raw_params!r}")
        params = []
        for name, spec in raw_params.items():
            if not isinstance(spec, Mapping):
                raise ValueError(f"`params.{name}` must be a mapping with a `type`. Received: {spec!r}")
            spec = dict(spec)
            extra = set(spec) - {"type", "low", "high", "log", "choices", "when"}
            if extra:
                raise ValueError(f"Unknown keys {sorted(extra)} in `params.{name}`.")
            when = {k: tuple(v) if isinstance(v, (list, tuple)) else (v,) for k, v in (spec.pop("when", None) or {}).items()}
            for key in when:
                if key not in raw_params:
                    raise ValueError(f"`params.{name}.when` refers to {key!r}, which is not a searched parameter.")
            params.append(Param(name=name, when=when, choices=tuple(spec.pop("choices", ()) or ()), **spec))
        study = dict(data.get("study") or {})
        extra = set(study) - {"direction", "sampler", "pruner", "monitor"}
        if extra:
            raise ValueError(f"Unknown keys {sorted(extra)} in `study`.")
        space = cls(params=tuple(params), fixed=dict(data.get("fixed") or {}), paradigm=data.get("paradigm", "lin"),
                    direction=study.get("direction", "maximize"), sampler=dict(study.get("sampler") or {"name": "tpe"}),
                    pruner=dict(study.get("pruner") or {"name": "median"}), monitor=study.get("monitor"),
                    source=source, task=data.get("task", "2afc"))
        from keras_percept.experiment.task import task_names

        if space.task not in task_names():
            raise ValueError(f"`task` must be one of {task_names()}. Received: {space.task!r}")
        if space.direction not in ("maximize", "minimize"):
            raise ValueError(f"`study.direction` must be 'maximize' or 'minimize'. Received: {space.direction!r}")
        if space.sampler.get("name") not in SAMPLERS:
            raise ValueError(f"`study.sampler.name` must be one of {list(SAMPLERS)}. Received: {space.sampler.get('name')!r}")
        if space.pruner.get("name") not in PRUNERS:
            raise ValueError(f"`study.pruner.name` must be one of {list(PRUNERS)}. Received: {space.pruner.get('name')!r}")
        return space

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "SearchSpace":
        with open(path) as f:
            data = read_yaml(f) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{str(path)!r} must hold a YAML mapping. Received: {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    def suggest(self, trial) -> dict[str, Any]:
        """Asks `trial` for every parameter whose `when` condition holds, in file order."""
        values: dict[str, Any] = {}
        for param in self.params:
            if all(values.get(key) in allowed for key, allowed in param.when.items()):
                values[param.name] = param.suggest(trial)
        return values

    def fixed_overrides(self) -> list[str]:
        return [f"{key}={_yaml_scalar(value)}" for key, value in self.fixed.items()]

    @staticmethod
    def overrides(values: Mapping[str, Any]) -> list[str]:
        """`{"optim.learning_rate": 0.01}` → `["optim.learning_rate=0.01"]` (for `load_config`)."""
        return [f"{key}={_yaml_scalar(value)}" for key, value in values.items()]


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
