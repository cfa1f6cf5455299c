"""The one downloader (`keras_percept.download.fetch`) against a real HTTP server on 127.0.0.1.

Both transfer paths: `keras.utils.get_file` (full SHA-256 known) and the streamed read (a
prefix or no hash). A download SIGKILLed mid-transfer leaves nothing a later run trusts.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time

import pytest

from keras_percept.download import OfflineError, fetch

pytestmark = pytest.mark.one_pass  # files and sockets

PAYLOAD = os.urandom(3 << 20)  # 3 MB: several chunks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    stall = False  # send half of the file, then hang (a transfer killed mid-way)
    short = False  # announce the whole file, send 1,000 bytes and close (a dropped connection)

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.short:
            self.wfile.write(PAYLOAD[:1000])
            return
        if self.stall:
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            time.sleep(60)
            return
        self.wfile.write(PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    _Handler.stall = _Handler.short = False


@pytest.mark.parametrize("hashes", [dict(sha256=DIGEST), dict(sha256_prefix=DIGEST[:8]), {}],
                         ids=["get_file", "prefix", "no-hash"])
def test_download_lands_verified_and_is_then_read_from_disk(server, tmp_path, hashes):
    target = tmp_path / "files" / "weights-abc.pth"
    assert fetch(f"{server}/weights-abc.pth", target=target, **hashes) == str(target)
    assert target.read_bytes() == PAYLOAD
    assert os.listdir(target.parent) == ["weights-abc.pth"]  # no temporary left
    # Cached: no server needed the second time.
    assert fetch("http://127.0.0.1:9/weights-abc.pth", target=target, **hashes) == str(target)


@pytest.mark.parametrize("hashes", [dict(sha256="0" * 64), dict(sha256_prefix="00000000")], ids=["full", "prefix"])
def test_a_wrong_hash_is_an_error_and_leaves_no_file(server, tmp_path, hashes):
    target = tmp_path / "weights.pth"
    with pytest.raises(ValueError, match=r"SHA-256 of .* expected 0{8}.* for http://127\.0\.0\.1"):
        fetch(f"{server}/weights.pth", target=target, **hashes)
    assert os.listdir(tmp_path) == []


def test_a_transfer_cut_short_is_an_error_even_without_a_hash(server, tmp_path):
    _Handler.short = True
    with pytest.raises(OfflineError, match=r"Could not download .*w\.pth"):
        fetch(f"{server}/w.pth", target=tmp_path / "w.pth", timeout=10)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("hashes", [dict(sha256=DIGEST), {}], ids=["get_file", "stream"])
def test_offline_error_names_the_url_the_target_and_the_hint(tmp_path, hashes):
    with pytest.raises(OfflineError, match=r"Could not download http://127\.0\.0\.1:9/w\.pth .*copy it to "
                                           r".*w\.pth, then run this again; or build it yourself\."):
        fetch("http://127.0.0.1:9/w.pth", target=tmp_path / "w.pth", timeout=5, hint="or build it yourself", **hashes)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("hashes", ["sha256=DIGEST", "sha256_prefix=DIGEST[:8]"], ids=["get_file", "prefix"])
def test_a_download_killed_mid_transfer_leaves_nothing_trusted_and_the_next_run_completes(server, tmp_path, hashes):
    _Handler.stall = True
    target = tmp_path / "big.pth"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, hashlib; from keras_percept.download import fetch\n"
        f"DIGEST = {DIGEST!r}\n"
        f"fetch({server + '/big.pth'!r}, target={str(target)!r}, {hashes}, timeout=120)")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.stat().st_size > 0 for p in tmp_path.iterdir()):
        time.sleep(0.1)  # the child is mid-transfer once the temporary holds bytes
    assert any(p.stat().st_size > 0 for p in tmp_path.iterdir()), "the child never started writing"
    child.kill()
    child.wait()
    assert not target.exists()  # only a temporary, which the next write removes
    _Handler.stall = False
    with pytest.warns(UserWarning, match="killed writer"):
        fetch(f"{server}/big.pth", target=target, sha256=DIGEST)
    assert target.read_bytes() == PAYLOAD and os.listdir(tmp_path) == ["big.pth"]
