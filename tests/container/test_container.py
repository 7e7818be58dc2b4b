"""The container image, for real, under podman (issue 13).

Builds the Dockerfile's runtime stage around the binary built on this host (no
registry: `dist/container/rootfs.sh` assembles the tree, a `FROM scratch` image
carries it, and `--build-arg ROOTFS=` hands it to the runtime stage in place of the
Rust build stage), then runs it as a user would: read-only root filesystem, the
image's non-root user, a named volume, a published port on 127.0.0.1.

Podman runs here only with runc and explicit ulimits (crun fails on this machine's
limits); `--health-interval=disable` keeps podman from wanting systemd timers, and
`podman healthcheck run` runs the image's HEALTHCHECK by hand.

Needs root and podman (tests/run-all.sh installs podman, runc). Everything it makes
is named with a random suffix and removed at the end, so runs can overlap.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
PODMAN_RUN_FLAGS = ["--runtime=runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
IMAGE_UID = 10001
STOP_TIMEOUT = 40  # above the server's 30 s drain


def lockana_bin() -> Path:
    p = Path(os.environ.get("LOCKANA_BIN", "target/debug/lockana"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"Lockana binary not found at {p}: cargo build -p lockana-server, or set LOCKANA_BIN",
                    pytrace=False)
    return p


def podman(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Container:
    def __init__(self, name: str, port: int):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}/v1"

    def logs(self) -> str:
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def inspect(self, fmt: str) -> str:
        return podman("inspect", "-f", fmt, self.name).stdout.strip()

    def host_pid(self) -> int:
        return int(self.inspect("{{.State.Pid}}"))

    def wait_answering(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = requests.get(f"{self.url}/sys/seal-status", timeout=5)
                if r.status_code == 200:
                    return r.json()
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the container did not answer on port {self.port}:\n{self.logs()}")
            time.sleep(0.2)

    def call(self, method: str, path: str, token: str | None = None, body: dict | None = None) -> requests.Response:
        headers = {"X-Vault-Token": token} if token else {}
        return requests.request(method, f"{self.url}/{path}", headers=headers, json=body, timeout=30)

    def unseal(self, key: str) -> None:
        r = self.call("PUT", "sys/unseal", body={"key": key})
        assert r.status_code == 200 and r.json()["sealed"] is False, r.text

    def stop(self) -> tuple[int, str]:
        """`podman stop`; returns the server's exit code and its log."""
        podman("stop", "-t", str(STOP_TIMEOUT), self.name, timeout=STOP_TIMEOUT + 30)
        return int(self.inspect("{{.State.ExitCode}}")), self.logs()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: apt-get install -y podman runc (tests/run-all.sh does)", pytrace=False)
    if os.geteuid() != 0:
        pytest.skip("rootful podman: run as root (CI does)")
    suffix = uuid.uuid4().hex[:12]
    ctx = tmp_path_factory.mktemp("image")
    # The debug binary without its debug info (300 MB of DWARF): the image is the same
    # shape as the release one, only the binary is bigger.
    binary = ctx / "lockana"
    subprocess.run(["objcopy", "--strip-debug", str(lockana_bin()), str(binary)], check=True)
    subprocess.run(["sh", str(REPO_ROOT / "dist/container/rootfs.sh"), str(binary), str(ctx / "rootfs")], check=True)
    binary.unlink()
    (ctx / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /rootfs/\n")
    rootfs_image = f"localhost/lockana-test-rootfs:{suffix}"
    runtime_image = f"localhost/lockana-test:{suffix}"
    podman("build", "--runtime=runc", "-q", "-t", rootfs_image, "-f", str(ctx / "Containerfile"), str(ctx))
    try:
        podman("build", "--runtime=runc", "-q", "--format", "docker", "--target", "runtime",
               "--build-arg", f"ROOTFS={rootfs_image}", "-t", runtime_image,
               "-f", str(REPO_ROOT / "Dockerfile"), str(ctx))
        size = int(podman("image", "inspect", "-f", "{{.Size}}", runtime_image).stdout.strip())
        print(f"\nruntime image around the debug binary: {size / 1e6:.1f} MB")
        yield runtime_image
    finally:
        podman("rmi", "-f", runtime_image, rootfs_image, check=False)


@pytest.fixture(scope="module")
def container(image):
    suffix = uuid.uuid4().hex[:12]
    name, volume = f"lockana-test-{suffix}", f"lockana-test-data-{suffix}"
    port = free_port()
    podman("volume", "create", volume)
    try:
        podman("run", *PODMAN_RUN_FLAGS, "-d", "--name", name, "--read-only", "--health-interval=disable",
               "-p", f"127.0.0.1:{port}:8200", "-v", f"{volume}:/var/lib/lockana", image)
        c = Container(name, port)
        c.volume = volume
        yield c
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("volume", "rm", "-f", volume, check=False)


def test_image_metadata_declares_the_contract(image):
    """What `docker run` relies on without reading the docs."""
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert "8200/tcp" in config["ExposedPorts"]
    assert "/var/lib/lockana" in config["Volumes"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["/usr/local/bin/lockana"]
    assert config["Cmd"] == ["server", "--config", "/etc/lockana/lockana.hcl"]
    health = json.loads(podman("image", "inspect", "-f", "{{json .HealthCheck}}", image).stdout)
    assert health["Test"] == ["CMD", "/usr/local/bin/lockana", "health"]


def test_container_lifecycle_read_only_non_root_restart_and_clean_seal(container):
    c = container
    status = c.wait_answering()
    assert status["initialized"] is False and status["sealed"] is True

    # The image's HEALTHCHECK, run by hand: the binary itself, no curl in the image.
    hc = podman("healthcheck", "run", c.name, check=False)
    assert hc.returncode == 0, f"healthcheck: {hc.stdout}{hc.stderr}"

    # Read-only root (as the server sees it), the image's non-root user, hardening.
    pid = c.host_pid()
    root_mount = next(line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                      if line.split()[4] == "/")
    assert "ro" in root_mount[5].split(","), root_mount
    uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split("\n")[0].split()
    assert uids == [str(IMAGE_UID)] * 4, f"the server runs as {uids}"
    # Not dumpable: the kernel gives the process's /proc files to root, so the same
    # uid can neither ptrace it nor read its memory.
    assert os.stat(f"/proc/{pid}/mem").st_uid == 0
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core
    log = c.logs()
    assert "core dumps disabled, process not dumpable" in log
    # The container's memlock limit (8 MiB here; podman cannot raise it on this host)
    # does not allow locking a growing heap: the server says so instead of failing.
    assert "memory NOT locked" in log and "--ulimit memlock=-1" in log

    # Init and unseal through the published port; write a secret.
    r = c.call("PUT", "sys/init", body={"secret_shares": 1, "secret_threshold": 1})
    assert r.status_code == 200, r.text
    key, root = r.json()["keys_base64"][0], r.json()["root_token"]
    c.unseal(key)
    r = c.call("POST", "sys/mounts/secret", root, {"type": "kv", "options": {"version": "2"}})
    assert r.status_code == 204, r.text
    r = c.call("POST", "secret/data/app", root, {"data": {"password": "container-s3cret"}})
    assert r.status_code == 200, r.text

    # The data lives in the volume, written by the image's user.
    mountpoint = Path(podman("volume", "inspect", "-f", "{{.Mountpoint}}", c.volume).stdout.strip())
    files = list(mountpoint.iterdir())
    assert files and all(f.stat().st_uid == IMAGE_UID for f in files), files

    # `podman stop` sends the image's STOPSIGNAL: the server seals and exits 0.
    code, log = c.stop()
    assert code == 0, log
    assert "SIGTERM received" in log and "vault sealed and closed" in log

    # Restart the same container on the same volume: sealed, unseal, the secret is back.
    podman("start", c.name)
    status = c.wait_answering()
    assert status["initialized"] is True and status["sealed"] is True
    c.unseal(key)
    r = c.call("GET", "secret/data/app", root)
    assert r.status_code == 200 and r.json()["data"]["data"] == {"password": "container-s3cret"}, r.text
    hc = podman("healthcheck", "run", c.name, check=False)
    assert hc.returncode == 0, f"healthcheck: {hc.stdout}{hc.stderr}"

    code, log = c.stop()
    assert code == 0, log
    assert log.count("vault sealed and closed") == 2
    # The unseal key and the root token never reach the log.
    assert key not in log and root not in log and "container-s3cret" not in log


PG_URL = os.environ.get("LOCKANA_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


def test_postgres_variant_config_runs_the_image_on_postgresql(image, tmp_path):
    """dist/container/lockana-postgres.hcl (docker-compose.postgres.yml's config) on the
    machine's PostgreSQL: the URL comes from LOCKANA_PG_URL, data survives a restart.
    Host networking reaches 127.0.0.1:5432; the listener and the table are made unique."""
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to drop the test's table", pytrace=False)
    suffix = uuid.uuid4().hex[:12]
    table, port, name = f"lockana_container_{suffix}", free_port(), f"lockana-test-pg-{suffix}"
    config = (REPO_ROOT / "dist/container/lockana-postgres.hcl").read_text()
    assert '"0.0.0.0:8200"' in config and '"lockana_kv"' in config
    config = config.replace('"0.0.0.0:8200"', f'"127.0.0.1:{port}"').replace('"lockana_kv"', f'"{table}"')
    (tmp_path / "lockana.hcl").write_text(config)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "lockana.hcl", 0o644)
    try:
        podman("run", *PODMAN_RUN_FLAGS, "-d", "--name", name, "--read-only", "--health-interval=disable",
               "--network=host", "-e", f"LOCKANA_PG_URL={PG_URL}",
               "-v", f"{tmp_path / 'lockana.hcl'}:/etc/lockana/lockana.hcl:ro", image)
        c = Container(name, port)
        assert c.wait_answering()["storage_type"] == "postgresql"
        r = c.call("PUT", "sys/init", body={"secret_shares": 1, "secret_threshold": 1})
        assert r.status_code == 200, r.text
        key, root = r.json()["keys_base64"][0], r.json()["root_token"]
        c.unseal(key)
        assert c.call("POST", "sys/mounts/secret", root, {"type": "kv", "options": {"version": "2"}}).status_code == 204
        assert c.call("POST", "secret/data/db", root, {"data": {"dsn": "pg-s3cret"}}).status_code == 200
        code, log = c.stop()
        assert code == 0 and "vault sealed and closed" in log, log
        podman("start", name)
        assert c.wait_answering()["sealed"] is True
        c.unseal(key)
        r = c.call("GET", "secret/data/db", root)
        assert r.status_code == 200 and r.json()["data"]["data"] == {"dsn": "pg-s3cret"}, r.text
        code, log = c.stop()
        assert code == 0, log
        assert PG_URL not in log, "the connection URL reached the log"
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        subprocess.run(["psql", PG_URL, "-c", f"DROP TABLE IF EXISTS {table}"], capture_output=True, timeout=30)
