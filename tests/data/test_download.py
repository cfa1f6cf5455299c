"""The BAPPS download command, exercised offline: clear error, checksum check, safe extraction."""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request

import pytest
from bapps_fixture import make_bapps

from keras_percept.data import BAPPS_ARCHIVES, download_bapps, index_2afc, index_jnd

pytestmark = pytest.mark.one_pass  # downloads and archives


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("Temporary failure in name resolution")


def _tar(source_dir: str, member: str, archive: str) -> str:
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(os.path.join(source_dir, member), arcname=os.path.basename(member))
    return archive


def test_archives_are_the_official_ones():
    assert sorted(BAPPS_ARCHIVES) == ["2afc_train", "2afc_val", "jnd"]
    for url, sha256, _ in BAPPS_ARCHIVES.values():
        assert url.startswith("https://perceptual-similarity.s3.us-west-2.amazonaws.com/dataset/")
        assert sha256 is None or len(sha256) == 64


def test_offline_error_is_clear(monkeypatch, tmp_path):
    from keras_percept.download import OfflineError

    # A local port nobody listens on: the download fails at once, as it does offline.
    url, sha256, folder = BAPPS_ARCHIVES["2afc_val"]
    monkeypatch.setitem(BAPPS_ARCHIVES, "2afc_val", ("http://127.0.0.1:9/dataset/twoafc_val.tar.gz", sha256, folder))
    with pytest.raises(OfflineError, match=r"twoafc_val\.tar\.gz.*offline.*embedded"):
        download_bapps(tmp_path, ["2afc_val"])
    assert os.listdir(tmp_path) == []  # no partial file left


def test_verified_archive_is_extracted_into_the_layout(monkeypatch, tmp_path):
    source = str(tmp_path / "source")
    make_bapps(source)
    archive = _tar(os.path.join(source, "2afc"), "val", str(tmp_path / "dest" / "twoafc_val.tar.gz"))
    digest = hashlib.sha256(open(archive, "rb").read()).hexdigest()
    url = BAPPS_ARCHIVES["2afc_val"][0]
    monkeypatch.setitem(BAPPS_ARCHIVES, "2afc_val", (url, digest, "2afc/val"))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)  # must not be needed
    root = download_bapps(tmp_path / "dest", ["2afc_val"])
    assert len(index_2afc(root, "val")) == 9
    assert not os.path.exists(archive)
    assert sorted(os.listdir(root)) == ["2afc"]


def test_archive_without_checksum_warns(monkeypatch, tmp_path):
    source = str(tmp_path / "source")
    make_bapps(source)
    _tar(source, "jnd", str(tmp_path / "dest" / "jnd.tar.gz"))
    with pytest.warns(UserWarning, match="No published checksum"):
        root = download_bapps(tmp_path / "dest", ["jnd"], keep_archives=True)
    assert len(index_jnd(root)) == 5 and os.path.exists(tmp_path / "dest" / "jnd.tar.gz")


def test_checksum_mismatch_is_an_error(tmp_path):
    os.makedirs(tmp_path / "dest")
    (tmp_path / "dest" / "twoafc_val.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(ValueError, match="SHA-256 .* expected 41486671"):
        download_bapps(tmp_path / "dest", ["2afc_val"])
    assert not os.path.exists(tmp_path / "dest" / "2afc")


def test_invalid_parts(tmp_path):
    with pytest.raises(ValueError, match="parts"):
        download_bapps(tmp_path, ["2afc_test"])
    with pytest.raises(ValueError, match="parts"):
        download_bapps(tmp_path, "jnd")


def test_archive_escaping_the_folder_is_refused(tmp_path):
    import io

    os.makedirs(tmp_path / "dest")
    with tarfile.open(tmp_path / "dest" / "jnd.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.warns(UserWarning, match="No published checksum"), pytest.raises(Exception, match="evil"):
        download_bapps(tmp_path / "dest", ["jnd"])
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dest" / "jnd").exists()
