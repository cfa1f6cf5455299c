"""Fixtures of the tuning tests: tiny data, a throw-away PostgreSQL (`tuning` is installed with the package)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> str:
    from keras_percept.data import embedded

    return embedded.build(str(tmp_path_factory.mktemp("tuning_tiny") / "set"), seed=5, n_train=140, n_val=84,
                          n_jnd=40, progress=False)


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """A PostgreSQL cluster in a temporary folder, listening only on 127.0.0.1 (a free port); stopped afterwards.

    PostgreSQL refuses to run as root, so under root (CI) the server runs as the
    `postgres` user that Debian's package creates.
    """
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")
    psycopg2 = pytest.importorskip("psycopg2", reason="the PostgreSQL driver: pip install psycopg2-binary")
    prefix: list[str] = []
    folder = tempfile.mkdtemp(prefix="kp_pg_", dir="/tmp")
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(folder, "data")
    port = _free_port()
    subprocess.run(prefix + [initdb, "-D", data, "-U", "optuna", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True, timeout=120)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    subprocess.run(prefix + [pg_ctl, "-D", data, "-o", options, "-l", os.path.join(folder, "log"), "-w", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="optuna", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE optuna")
        connection.close()
        yield f"postgresql+psycopg2://optuna@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
