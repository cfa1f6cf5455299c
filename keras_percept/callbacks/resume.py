"""Resuming a killed `fit`: a crash-safe epoch backup, early stopping that survives it, per-epoch seeds.

Keras's `BackupAndRestore` writes the weights and then the epoch number as two
plain files (a kill between them applies an epoch twice; a kill inside the
`.h5` write leaves a file the next run cannot load), and `EarlyStopping` keeps
its wait count and best weights in memory only. `ResumableBackup` writes each
epoch's checkpoint — weights with optimizer state, the epoch, the history so
far and the state of its companion callbacks — as one folder renamed into
place (`keras_percept.atomic`), so a kill at any point leaves the previous
complete checkpoint. `EpochSeeds` makes dropout and other in-model randomness
a function of (seed, epoch, step): Keras does not save `SeedGenerator` states,
and on torch an unseeded `Dropout` draws from torch's global generator.
Together with data pipelines ordered by (seed, epoch)
(`keras_percept.data.epochs`) a run killed anywhere and started again ends
with the weights of the uninterrupted run.

Example:

>>> stopping = ResumableEarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
>>> backup = ResumableBackup("/tmp/run/backup", companions=[stopping])
>>> start = backup.resume_epoch()  # build the data for epochs start ... epochs - 1
>>> model.fit(train, epochs=10, initial_epoch=start, callbacks=[EpochSeeds(0), stopping, backup])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any, Sequence

import keras
import numpy as np

from keras_percept.atomic import atomic_path, remove_stale_temporaries

_CHECKPOINT = re.compile(r"^epoch_(\d+)$")
_WEIGHTS, _STATE, _ARRAYS = "model.weights.h5", "state.json", "arrays.npz"
#: The name Keras gives every `SeedGenerator`'s state variable.
SEED_STATE_NAME = "seed_generator_state"


class ResumableBackup(keras.callbacks.Callback):
    """Backs up the training state at each epoch end, crash-safely; restores it when `fit` starts again.

    A checkpoint is the folder `<backup_dir>/epoch_<n>` (n = epochs done),
    complete or absent: weights and optimizer variables (`save_weights`),
    `state.json` (epoch, whether training stopped early, the history of every
    finished epoch, each companion's state, the `fingerprint`) and
    `arrays.npz` (the companions' arrays). Older checkpoints are removed once
    a newer one is in place; temporaries of killed writers at the next start.
    Place it last among the callbacks: it must see the epoch logs and the
    companions' state after they have updated them, and restore the
    companions after their own `on_train_begin` resets.

    Args:
        backup_dir: the folder of this run's checkpoints (one run per folder).
        companions: callbacks with `resume_name`, `get_resume_state()` →
            `(dict, list of arrays)` and `set_resume_state(dict, arrays)`
            (`ResumableEarlyStopping`, `WeightMonitor`). Defaults to `()`.
        fingerprint: what the run is (e.g. a hash of its config); a
            checkpoint of another fingerprint raises instead of resuming a
            different run. Defaults to `""`.
        delete_checkpoint: delete `backup_dir` when `fit` ends. Defaults to `True`.

    Example:

    >>> backup = ResumableBackup("/tmp/run/backup", fingerprint="lin-seed0")
    >>> backup.resume_epoch()
    0
    """

    def __init__(self, backup_dir: str | os.PathLike, *, companions: Sequence[Any] = (), fingerprint: str = "",
                 delete_checkpoint: bool = True):
        super().__init__()
        if not backup_dir:
            raise ValueError(f"Argument `backup_dir` must be a non-empty path. Received: backup_dir={backup_dir!r}")
        names = [c.resume_name for c in companions]
        if len(set(names)) != len(names):
            raise ValueError(f"Argument `companions` must have distinct `resume_name`s. Received: {names}")
        self.backup_dir = os.fspath(backup_dir)
        self.companions = list(companions)
        self.fingerprint = fingerprint
        self.delete_checkpoint = delete_checkpoint
        self.history: dict[str, list[float]] = {}

    def _checkpoints(self) -> list[tuple[int, str]]:
        try:
            entries = os.listdir(self.backup_dir)
        except FileNotFoundError:
            return []
        found = [(int(m.group(1)), os.path.join(self.backup_dir, e)) for e in entries if (m := _CHECKPOINT.match(e))]
        return sorted(found)

    def _state(self) -> tuple[str, dict] | None:
        checkpoints = self._checkpoints()
        if not checkpoints:
            return None
        path = checkpoints[-1][1]
        with open(os.path.join(path, _STATE)) as f:
            state = json.load(f)
        if state["fingerprint"] != self.fingerprint:
            raise ValueError(
                f"The backup in {self.backup_dir!r} is of another run (fingerprint {state['fingerprint']!r}, this "
                f"run's is {self.fingerprint!r}). Run the same config to resume it, or delete the folder to start over."
            )
        return path, state

    def resume_epoch(self, epochs: int | None = None) -> int:
        """The epoch `fit` starts at: 0 without a checkpoint, else the epochs done (`epochs` if it stopped early)."""
        found = self._state()
        if found is None:
            return 0
        state = found[1]
        return epochs if state["stopped"] and epochs is not None else state["epoch"]

    def on_train_begin(self, logs=None):
        for entry in os.listdir(self.backup_dir) if os.path.isdir(self.backup_dir) else ():
            if entry.startswith(".") and ".tmp-" in entry:  # a checkpoint a killed process was writing
                remove_stale_temporaries(os.path.join(self.backup_dir, entry[1:entry.index(".tmp-")]))
        self.history = {}
        found = self._state()
        if found is None:
            return
        path, state = found
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(path, _WEIGHTS))
        self.history = {k: list(v) for k, v in state["history"].items()}
        with np.load(os.path.join(path, _ARRAYS)) as stored:
            arrays = {k: stored[k] for k in stored.files}
        for companion in self.companions:
            name = companion.resume_name
            count = state["companions"][name]["arrays"]
            companion.set_resume_state(state["companions"][name]["info"], [arrays[f"{name}/{i}"] for i in range(count)])
        self.model._initial_epoch = self.params["epochs"] if state["stopped"] else state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            try:
                self.history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
        companions, arrays = {}, {}
        for companion in self.companions:
            info, values = companion.get_resume_state()
            companions[companion.resume_name] = {"info": info, "arrays": len(values)}
            arrays.update({f"{companion.resume_name}/{i}": np.asarray(v) for i, v in enumerate(values)})
        state = {"epoch": epoch + 1, "stopped": bool(self.model.stop_training), "fingerprint": self.fingerprint,
                 "history": self.history, "companions": companions}
        target = os.path.join(self.backup_dir, f"epoch_{epoch + 1:05d}")
        with atomic_path(target, is_dir=True) as tmp:
            self.model.save_weights(os.path.join(tmp, _WEIGHTS))
            with open(os.path.join(tmp, _ARRAYS), "wb") as f:
                np.savez(f, **arrays)
            with open(os.path.join(tmp, _STATE), "w") as f:
                json.dump(state, f)
        for done, path in self._checkpoints():
            if done < epoch + 1:
                shutil.rmtree(path, ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            self.delete()

    def delete(self) -> None:
        """Removes `backup_dir` (the run is complete)."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` whose wait count, best score, best epoch and best weights survive a restart.

    Give it to `ResumableBackup(companions=[...])`, which stores its state with
    each checkpoint and restores it when `fit` starts again. Arguments as in
    `keras.callbacks.EarlyStopping`.

    Example:

    >>> stopping = ResumableEarlyStopping(monitor="val_twoafc", mode="max", patience=3, restore_best_weights=True)
    >>> info, arrays = stopping.get_resume_state()
    >>> info["wait"], arrays
    (0, [])
    """

    resume_name = "early_stopping"

    def get_resume_state(self) -> tuple[dict, list[np.ndarray]]:
        """(wait, stopped epoch, best, best epoch; the best weights) for `ResumableBackup`."""
        best = getattr(self, "best", None)
        info = {"wait": int(self.wait), "stopped_epoch": int(self.stopped_epoch), "best_epoch":
                int(getattr(self, "best_epoch", 0)), "best": None if best is None else float(best)}
        return info, [np.asarray(w) for w in (self.best_weights or [])]

    def set_resume_state(self, info: dict, arrays: list[np.ndarray]) -> None:
        """Restores what `get_resume_state` returned."""
        self.wait, self.stopped_epoch, self.best_epoch = info["wait"], info["stopped_epoch"], info["best_epoch"]
        self.best = info["best"]
        self.best_weights = list(arrays) if arrays else None


class EpochSeeds(keras.callbacks.Callback):
    """At each epoch's first batch, reseeds the model's `SeedGenerator`s and the global generators from `(seed, epoch)`.

    Dropout and drop-path draws then depend only on (seed, epoch, step), not
    on how many steps this process has run: Keras saves no `SeedGenerator`
    state in a checkpoint, and on torch an unseeded `Dropout` uses torch's
    global generator (reseeded here through `keras.utils.set_random_seed`).
    The first batch, not the epoch start: on torch the data iterator, which
    a resumed run starts in a later epoch than an uninterrupted one, draws
    from that generator when it starts.

    Args:
        seed: the run's seed.

    Example:

    >>> model.fit(train, epochs=3, callbacks=[EpochSeeds(0)])  # doctest: +SKIP
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_train_begin(self, logs=None):
        self.states = [(v, keras.ops.convert_to_numpy(v)) for v in self.model.variables
                       if v.path.split("/")[-1] == SEED_STATE_NAME]

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if batch != 0:
            return
        keras.utils.set_random_seed(_mix(self.seed, self.epoch))
        for variable, initial in self.states:
            variable.assign(np.array([_mix(int(initial[0]), self.epoch), 0], dtype=initial.dtype))


def _mix(seed: int, epoch: int) -> int:
    """A seed in [0, 2**31) for (seed, epoch); distinct epochs give unrelated streams."""
    return int(np.random.SeedSequence([seed % 2**32, epoch]).generate_state(1)[0] % 2**31)
