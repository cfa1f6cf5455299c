"""2AFC, JND and MOS data: the BAPPS reader, a TFDS builder, the embedded real-photo dataset, augmentation,
MOS tables for image-quality regression (`mos`).

Everything reads the BAPPS folder layout into `tf.data` pipelines, which
`model.fit` accepts on every Keras backend. Images are float32 NHWC in
[-1, 1] by default (`value_range="[0,1]"` for [0, 1]).

Example:

>>> from keras_percept import data
>>> root = data.embedded.build()  # offline: real photos, simulated judges  # doctest: +SKIP
>>> train = data.load_2afc(root, "train", shuffle=True, batch_size=50)  # doctest: +SKIP
>>> val = data.load_2afc_by_category(root, "val")  # doctest: +SKIP
"""

from __future__ import annotations

from keras_percept.data import embedded
from keras_percept.data.augment import TripletAugmentation
from keras_percept.data.bad_data import BadDataError, SkippedItem
from keras_percept.data.download import BAPPS_ARCHIVES, download_bapps
from keras_percept.data.layout import (
    BAPPS_2AFC_CATEGORIES,
    BAPPS_JND_CATEGORIES,
    ItemIndex,
    index_2afc,
    index_jnd,
)
from keras_percept.data.mos import (
    MOSTable,
    average_over_patches,
    embedded_mos,
    mos_patch_dataset,
    read_mos_csv,
    split_by_image,
)
from keras_percept.data.reader import (
    VALUE_RANGES,
    dataset_from_index,
    datasets_by_category,
    load_2afc,
    load_2afc_by_category,
    load_jnd,
    load_jnd_by_category,
)


def register_tfds_builder() -> type:
    """Registers the `bapps` TensorFlow Datasets builder and returns its class.

    Example:

    >>> register_tfds_builder()  # doctest: +SKIP
    >>> tfds.load("bapps/2afc_val_traditional", split="val", download_and_prepare_kwargs={
    ...     "download_config": tfds.download.DownloadConfig(manual_dir="~/bapps")})  # doctest: +SKIP
    """
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "The BAPPS TFDS builder needs `tensorflow-datasets`: pip install tensorflow-datasets "
            "(the plain reader `keras_percept.data.load_2afc` does not)."
        ) from err
    from keras_percept.data.tfds_bapps import Bapps

    return Bapps


__all__ = [
    "BAPPS_2AFC_CATEGORIES", "BAPPS_ARCHIVES", "BAPPS_JND_CATEGORIES", "BadDataError", "ItemIndex", "MOSTable",
    "SkippedItem", "TripletAugmentation", "VALUE_RANGES", "average_over_patches", "dataset_from_index", "datasets_by_category",
    "download_bapps", "embedded", "embedded_mos", "index_2afc", "index_jnd", "load_2afc", "load_2afc_by_category",
    "load_jnd", "load_jnd_by_category", "mos_patch_dataset", "read_mos_csv", "register_tfds_builder", "split_by_image",
]
