"""A TensorFlow Datasets builder for BAPPS, reading an already downloaded copy from `manual_dir`.

Importing this module registers the builder `bapps` with one config per
BAPPS folder: `2afc_train_{traditional,cnn,mix}`,
`2afc_val_{traditional,cnn,superres,deblur,color,frameinterp}` and
`jnd_val_{traditional,cnn}`. Each config has one split named like the BAPPS
split (`"train"` or `"val"`). Import it through
`keras_percept.data.register_tfds_builder()`, which explains a missing
`tensorflow-datasets`.

Example:

>>> import tensorflow_datasets as tfds
>>> keras_percept.data.register_tfds_builder()  # doctest: +SKIP
>>> ds = tfds.load(
...     "bapps/2afc_val_traditional", split="val", data_dir="~/tfds", as_supervised=True,
...     download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir="~/bapps")},
... )  # doctest: +SKIP
>>> (ref, p0, p1), judge = next(iter(ds))  # doctest: +SKIP
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from keras_percept.data.layout import BAPPS_2AFC_CATEGORIES, BAPPS_JND_CATEGORIES, index_2afc, index_jnd


class BappsConfig(tfds.core.BuilderConfig):
    """One BAPPS folder: `kind` is `"2afc"` or `"jnd"`, `split` the BAPPS split, `category` the folder."""

    def __init__(self, *, kind: str, split: str, category: str, **kwargs):
        super().__init__(name=f"{kind}_{split}_{category}", **kwargs)
        self.kind = kind
        self.split = split
        self.category = category


def _configs() -> list[BappsConfig]:
    configs = [
        BappsConfig(kind="2afc", split=split, category=category,
                    description=f"BAPPS 2AFC {split} triplets, category '{category}'.")
        for split, categories in BAPPS_2AFC_CATEGORIES.items()
        for category in categories
    ]
    configs += [
        BappsConfig(kind="jnd", split="val", category=category,
                    description=f"BAPPS JND validation pairs, category '{category}'.")
        for category in BAPPS_JND_CATEGORIES
    ]
    return configs


class Bapps(tfds.core.GeneratorBasedBuilder):
    """BAPPS (Berkeley-Adobe Perceptual Patch Similarity), Zhang et al., CVPR 2018."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Reads the official folder layout from manual_dir."}
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download and extract BAPPS so that `manual_dir` holds `2afc/` and `jnd/`:
        python -m keras_percept.data.download <manual_dir>
    (or the archives named in richzhang/PerceptualSimilarity scripts/download_dataset.sh).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        image = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
        if self.builder_config.kind == "2afc":
            features = {"ref": image, "p0": image, "p1": image, "judge": np.float32, "id": tfds.features.Text()}
            supervised = (("ref", "p0", "p1"), "judge")
        else:
            features = {"p0": image, "p1": image, "same": np.float32, "id": tfds.features.Text()}
            supervised = (("p0", "p1"), "same")
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=supervised,
            homepage="https://richzhang.github.io/PerceptualSimilarity/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        if not os.path.isdir(os.path.join(root, "2afc")) and os.path.isdir(os.path.join(root, "dataset", "2afc")):
            root = os.path.join(root, "dataset")
        return {self.builder_config.split: self._generate_examples(root)}

    def _generate_examples(self, root: str):
        config = self.builder_config
        if config.kind == "2afc":
            index, label_key = index_2afc(root, config.split, [config.category]), "judge"
        else:
            index, label_key = index_jnd(root, [config.category]), "same"
        for i, item_id in enumerate(index.ids):
            example = {d: index.paths[d][i] for d in index.image_dirs}
            example.update({label_key: index.labels[i], "id": item_id})
            yield item_id, example


_CITATION = """
@inproceedings{zhang2018perceptual,
  title={The Unreasonable Effectiveness of Deep Features as a Perceptual Metric},
  author={Zhang, Richard and Isola, Phillip and Efros, Alexei A and Shechtman, Eli and Wang, Oliver},
  booktitle={CVPR},
  year={2018}
}
"""
