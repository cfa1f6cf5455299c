"""Downloading the official BAPPS archives (about 6.6 GB) for users with internet access.

The archive addresses are the ones in the reference repository's
`scripts/download_dataset.sh` (richzhang/PerceptualSimilarity). The authors
publish no checksums; the SHA-256 values below for the two 2AFC archives are
the ones pinned by an independent project that mirrors BAPPS, and no checksum
is known for the JND archive (it is downloaded unverified, and the function
says so). Without network access the download raises `OfflineError`.

Command line equivalent:

    python -m keras_percept.data.download DEST [--parts 2afc_val jnd 2afc_train]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
import warnings
from typing import Sequence

_BASE = "https://perceptual-similarity.s3.us-west-2.amazonaws.com/dataset/"

# part → (archive URL, SHA-256 or None, the folder under DEST it provides; the archive holds that
# folder relative to the folder's parent, e.g. twoafc_val.tar.gz holds "val/...").
BAPPS_ARCHIVES: dict[str, tuple[str, str | None, str]] = {
    "jnd": (_BASE + "jnd.tar.gz", None, "jnd"),
    "2afc_val": (
        _BASE + "twoafc_val.tar.gz", "41486671b06de923e7ba277c4797d4d9d86d609863ba35ecdb576133f8b9d859", "2afc/val",
    ),
    "2afc_train": (
        _BASE + "twoafc_train.tar.gz", "b4f5c772c7cd88ac44bcb4ff0741745d434c05f0094f2bfb262ddcd0055bf393",
        "2afc/train",
    ),
}


def download_bapps(
    dest: str | os.PathLike,
    parts: Sequence[str] = ("2afc_val", "jnd", "2afc_train"),
    *,
    timeout: float = 60.0,
    keep_archives: bool = False,
) -> str:
    """Downloads, verifies and extracts BAPPS into `dest`; returns `dest` (the reader's `root`).

    Each archive is downloaded by the package's one downloader
    (`keras_percept.download.fetch`: `keras.utils.get_file` where the full
    SHA-256 is known, through a temporary renamed only when complete and
    verified), and extracted (only regular files
    and folders inside `dest` are extracted). Already extracted parts are skipped.

    Args:
        dest: target folder; it will hold `2afc/` and `jnd/`.
        parts: any of `"2afc_val"` (1.1 GB), `"jnd"` (0.2 GB), `"2afc_train"`
            (5.3 GB). Defaults to all three.
        timeout: seconds to wait for the server. Defaults to `60.0`.
        keep_archives: keep the `.tar.gz` files after extraction. Defaults to `False`.

    Example:

    >>> root = download_bapps("~/data/bapps", parts=["2afc_val"])  # doctest: +SKIP
    >>> ds = keras_percept.data.load_2afc(root, "val")  # doctest: +SKIP
    """
    unknown = [p for p in parts if p not in BAPPS_ARCHIVES]
    if unknown or isinstance(parts, str):
        raise ValueError(
            f"Argument `parts` must be a list drawn from {sorted(BAPPS_ARCHIVES)}. Received: parts={parts!r}"
        )
    dest = os.path.expanduser(os.fspath(dest))
    os.makedirs(dest, exist_ok=True)
    for part in parts:
        url, sha256, folder = BAPPS_ARCHIVES[part]
        if os.path.isdir(os.path.join(dest, folder)):
            continue
        archive = _download(url, dest, sha256, timeout)
        _extract(archive, dest, folder)
        if not keep_archives:
            os.remove(archive)
    return dest


def _extract(archive: str, dest: str, folder: str) -> None:
    """Extracts `folder` via a scratch folder, so an interrupted run never looks finished."""
    scratch = os.path.join(dest, f".extracting-{os.path.basename(archive)}")
    target = os.path.join(scratch, os.path.dirname(folder))
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target, filter="data")
            else:  # Python < 3.10.12: refuse members that would land outside the folder
                for member in tar.getmembers():
                    unsafe = os.path.isabs(member.name) or ".." in member.name.split("/")
                    if unsafe or not (member.isfile() or member.isdir()):
                        raise ValueError(f"Refusing unsafe archive member {member.name!r} in {archive}")
                tar.extractall(target)
        if not os.path.isdir(os.path.join(scratch, folder)):
            raise ValueError(f"{archive} did not contain the expected folder {os.path.basename(folder)!r}.")
        os.makedirs(os.path.dirname(os.path.join(dest, folder)), exist_ok=True)
        os.replace(os.path.join(scratch, folder), os.path.join(dest, folder))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _download(url: str, dest: str, sha256: str | None, timeout: float) -> str:
    # Imported here: the downloader's module is not needed to read data.
    from keras_percept.download import fetch

    if sha256 is None:
        warnings.warn(f"No published checksum for {url}; it is used unverified.", UserWarning, stacklevel=3)
    return fetch(url, target=os.path.join(dest, os.path.basename(url)), sha256=sha256, timeout=timeout,
                 hint="or use the embedded dataset: keras_percept.data.embedded.build()")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Download the BAPPS dataset (about 6.6 GB).")
    parser.add_argument("dest", help="target folder (will hold 2afc/ and jnd/)")
    parser.add_argument("--parts", nargs="+", default=["2afc_val", "jnd", "2afc_train"], choices=sorted(BAPPS_ARCHIVES))
    args = parser.parse_args(argv)
    from keras_percept.download import OfflineError

    try:
        print(download_bapps(args.dest, args.parts))
    except (OfflineError, ValueError) as err:
        raise SystemExit(f"download_bapps: error: {err}") from err


if __name__ == "__main__":
    main()
