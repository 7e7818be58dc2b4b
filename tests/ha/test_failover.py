"""High availability on PostgreSQL (issue 14): three config-file nodes on one data
table and one lock table (fresh per run, in database `test` at 127.0.0.1:5432).

- Any node serves any client: standbys relay to the active node.
- kill -9 of the active node under load: a standby is active within 10 s (the time is
  printed), no acknowledged write is lost, no read that started after a write was
  acknowledged returns an older value, and the killed node comes back as a standby.
- `bao operator step-down` hands the lock to another node; hvac reads the leader.
- SIGTERM of the active node (it seals) hands the lock over at once.
- A PostgreSQL outage (the nodes' connections killed with `pg_terminate_backend`,
  again and again for a few seconds): writes meanwhile get a clear 5xx or a real
  2xx, never a false one, and the cluster recovers without an operator.
- One audit file shared by all nodes keeps one unbroken hash chain through all of
  this (`lockana audit verify`): no node that was not active wrote a line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("LOCKANA_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
TAKEOVER_LIMIT = 10.0


def lockana_bin() -> Path:
    env = os.environ.get("LOCKANA_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "lockana"


def bao_bin() -> str:
    import sys

    near = Path(sys.executable).parent / "bao"
    return str(near) if near.exists() else (shutil.which("bao") or "bao")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql: str) -> str:
    assert shutil.which("psql"), "psql is needed"
    out = subprocess.run(["psql", PG_URL, "-At", "-c", sql], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@dataclass
class Node:
    idx: int
    port: int
    cfg: Path
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> int | None:
        try:
            return requests.get(f"{self.addr}/v1/sys/health", timeout=2).status_code
        except requests.RequestException:
            return None


@dataclass
class Cluster:
    nodes: list[Node]
    table: str
    ha_table: str
    app: str
    audit: Path
    key: str = ""
    root: str = ""
    extra_env: dict = field(default_factory=dict)

    def start(self, node: Node) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        node.proc = subprocess.Popen([str(lockana_bin()), "server", "--config", str(node.cfg)],
                                     stdout=open(node.log, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + 20
        while node.health() is None:
            assert node.proc.poll() is None, node.log.read_text()
            assert time.monotonic() < deadline, node.log.read_text()
            time.sleep(0.1)

    def unseal(self, node: Node) -> None:
        r = requests.put(f"{node.addr}/v1/sys/unseal", json={"key": self.key}, timeout=10)
        assert r.status_code == 200 and r.json()["sealed"] is False, r.text

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def active(self) -> list[Node]:
        return [n for n in self.alive() if n.health() == 200]

    def wait_active(self, timeout: float, exclude: Node | None = None) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            act = [n for n in self.active() if n is not exclude]
            if len(act) == 1:
                return act[0]
            time.sleep(0.05)
        raise AssertionError("no single active node: " + self.logs())

    def logs(self) -> str:
        return "\n".join(f"--- node {n.idx}\n{n.log.read_text()[-4000:]}" for n in self.nodes)

    def h(self) -> dict:
        return {"X-Vault-Token": self.root}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ha")
    tag = uuid.uuid4().hex[:10]
    table, ha_table, app = f"lockana_ha_{tag}", f"lockana_ha_locks_{tag}", f"lockana_ha_{tag}"
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}application_name={app}"
    audit = tmp / "audit.log"
    nodes = []
    for i in range(3):
        port = free_port()
        cfg = tmp / f"node{i}.hcl"
        cfg.write_text(
            f'storage "postgresql" {{\n  connection_url = "{url}"\n  table = "{table}"\n'
            f'  ha_enabled = "true"\n  ha_table = "{ha_table}"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://127.0.0.1:{port}"\ncluster_addr = "https://127.0.0.1:{port + 1}"\n'
            f'audit "file" "file" {{\n  options {{ file_path = "{audit}" }}\n}}\n'
        )
        nodes.append(Node(i, port, cfg, tmp / f"node{i}.log"))
    c = Cluster(nodes, table, ha_table, app, audit)
    try:
        for n in nodes:
            c.start(n)
        init = requests.put(f"{nodes[0].addr}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1},
                            timeout=30).json()
        c.key, c.root = init["keys_base64"][0], init["root_token"]
        for n in nodes:
            c.unseal(n)
        yield c
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
        psql(f"DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {ha_table}")


def test_one_active_and_standbys_forward(cluster: Cluster) -> None:
    import hvac

    active = cluster.wait_active(15)
    standbys = [n for n in cluster.nodes if n is not active]
    for n in standbys:
        r = requests.get(f"{n.addr}/v1/sys/health", timeout=5)
        assert r.status_code == 429 and r.json()["standby"] is True and r.json()["sealed"] is False
        assert requests.get(f"{n.addr}/v1/sys/health?standbyok=true", timeout=5).status_code == 200
        assert requests.get(f"{n.addr}/v1/sys/seal-status", timeout=5).json()["sealed"] is False
    assert requests.get(f"{active.addr}/v1/sys/health", timeout=5).json()["standby"] is False
    for n in cluster.nodes:
        leader = hvac.Client(url=n.addr).sys.read_leader_status()
        assert leader["ha_enabled"] is True
        assert leader["is_self"] is (n is active)
        assert leader["leader_address"] == active.addr
        assert leader["leader_cluster_address"] == f"https://127.0.0.1:{active.port + 1}"
        health = hvac.Client(url=n.addr).sys.read_health_status(method="GET", standby_ok=True)
        assert health["initialized"] is True
    # Through a standby: enable KV, write, read back from every node.
    client = hvac.Client(url=standbys[0].addr, token=cluster.root)
    client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    client.secrets.kv.v2.create_or_update_secret(path="hello", secret={"v": "1"})
    for n in cluster.nodes:
        got = hvac.Client(url=n.addr, token=cluster.root).secrets.kv.v2.read_secret_version(
            path="hello", raise_on_deleted_version=True)
        assert got["data"]["data"] == {"v": "1"}
    # Each node echoes every second once unsealed; on a loaded machine the first echo of
    # a node can come late, so give the list a few seconds to fill.
    want = sorted(n.addr for n in cluster.nodes)
    deadline = time.monotonic() + 15
    while True:
        status = requests.get(f"{standbys[1].addr}/v1/sys/ha-status", headers=cluster.h(), timeout=5)
        assert status.status_code == 200, status.text
        nodes = status.json()["data"]["nodes"]
        if sorted(x["api_address"] for x in nodes) == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(x["api_address"] for x in nodes) == want
    assert [x["api_address"] for x in nodes if x["active_node"]] == [active.addr]
    # Unauthenticated through a standby: the active node's 403, relayed.
    assert requests.get(f"{standbys[0].addr}/v1/secret/data/hello", timeout=5).status_code == 403


class Load:
    """A writer (one key, increasing values) and a reader per node, recording times."""

    def __init__(self, cluster: Cluster, key: str) -> None:
        self.c, self.key = cluster, key
        self.stop = threading.Event()
        self.acked: list[tuple[float, int]] = []  # (ack time, value)
        self.attempted = 0
        self.reads: list[tuple[float, int]] = []  # (request start, value)
        self.errors: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.write, daemon=True)]
        self.threads += [threading.Thread(target=self.read, args=(n,), daemon=True) for n in cluster.nodes]

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def write(self) -> None:
        i = 0
        s = requests.Session()
        while not self.stop.is_set():
            i += 1
            n = self.c.nodes[i % 3]
            self.attempted = i
            try:
                r = s.post(f"{n.addr}/v1/secret/data/{self.key}", json={"data": {"n": i}}, headers=self.c.h(),
                           timeout=15)
            except requests.RequestException:
                continue  # a killed node: no answer, nothing acknowledged
            if r.status_code == 200:
                with self.lock:
                    self.acked.append((time.monotonic(), i))
            else:
                assert r.status_code >= 500, (r.status_code, r.text)
                assert r.json()["errors"], r.text
                with self.lock:
                    self.errors.append((r.status_code, r.json()["errors"][0]))
                time.sleep(0.05)

    def read(self, node: Node) -> None:
        s = requests.Session()
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                r = s.get(f"{node.addr}/v1/secret/data/{self.key}", headers=self.c.h(), timeout=15)
            except requests.RequestException:
                time.sleep(0.1)
                continue
            if r.status_code == 200:
                with self.lock:
                    self.reads.append((start, r.json()["data"]["data"]["n"]))
            else:
                time.sleep(0.05)

    def check(self) -> None:
        assert self.acked, "no write was acknowledged"
        last_acked = self.acked[-1][1]
        final = requests.get(f"{self.c.wait_active(15).addr}/v1/secret/data/{self.key}", headers=self.c.h(),
                             timeout=10).json()["data"]["data"]["n"]
        assert last_acked <= final <= self.attempted, (last_acked, final, self.attempted)
        stale = []
        for start, value in self.reads:
            # Every write acknowledged before this read started must be visible to it.
            newest = max((v for t, v in self.acked if t < start), default=0)
            if value < newest:
                stale.append((start, value, newest))
        assert not stale, f"reads older than an acknowledged write: {stale[:5]}"


def test_kill_active_a_standby_takes_over(cluster: Cluster) -> None:
    old = cluster.wait_active(15)
    with Load(cluster, "failover") as load:
        time.sleep(2.0)
        before = len(load.acked)
        killed_at = time.monotonic()
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait()
        new = cluster.wait_active(TAKEOVER_LIMIT + 5)
        took = time.monotonic() - killed_at
        print(f"\nHA takeover after kill -9 of the active node: {took:.2f} s (node {old.idx} -> node {new.idx})")
        assert took < TAKEOVER_LIMIT, f"takeover took {took:.2f} s"
        time.sleep(2.0)
    assert before > 0 and len(load.acked) > before, "writes did not resume after the takeover"
    load.check()
    print(f"writes acknowledged: {len(load.acked)}, 5xx during the takeover: {len(load.errors)}, reads: {len(load.reads)}")
    # The killed node comes back sealed, then as a standby.
    cluster.start(old)
    assert old.health() == 503
    cluster.unseal(old)
    deadline = time.monotonic() + 10
    while old.health() != 429:
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.1)
    # It learns the leader at its first look at the lock (within half a second).
    deadline = time.monotonic() + 5
    while requests.get(f"{old.addr}/v1/sys/leader", timeout=5).json()["leader_address"] != new.addr:
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.1)
    assert cluster.wait_active(5) is new


def test_step_down_with_bao(cluster: Cluster) -> None:
    old = cluster.wait_active(15)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update({"VAULT_ADDR": old.addr, "VAULT_TOKEN": cluster.root, "BAO_ADDR": old.addr, "BAO_TOKEN": cluster.root})
    out = subprocess.run([bao_bin(), "operator", "step-down"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    started = time.monotonic()
    new = cluster.wait_active(TAKEOVER_LIMIT, exclude=old)
    print(f"\nHA takeover after step-down: {time.monotonic() - started:.2f} s (node {old.idx} -> node {new.idx})")
    assert new is not old
    assert old.health() == 429
    deadline = time.monotonic() + 5
    while requests.get(f"{old.addr}/v1/sys/leader", timeout=5).json()["leader_address"] != new.addr:
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.05)
    # Still one cluster: a write through the old node lands on the new one.
    r = requests.post(f"{old.addr}/v1/secret/data/after-step-down", json={"data": {"v": 1}}, headers=cluster.h(),
                      timeout=10)
    assert r.status_code == 200, r.text


def test_postgres_outage_recovers_without_an_operator(cluster: Cluster) -> None:
    cluster.wait_active(15)
    acked: list[int] = []
    acked_at: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            n = cluster.nodes[i % 3]
            try:
                r = requests.put(f"{n.addr}/v1/secret/data/outage/{i}", json={"data": {"i": i}},
                                 headers=cluster.h(), timeout=15)
            except requests.RequestException as e:
                raise AssertionError(f"node {n.idx} stopped answering: {e}")
            statuses.append(r.status_code)
            if r.status_code == 200:
                acked.append(i)
                acked_at.append(time.monotonic())
            else:
                assert r.status_code >= 500, (r.status_code, r.text)
                assert r.json()["errors"] and r.json()["errors"][0], r.text
                time.sleep(0.05)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    time.sleep(1.0)
    killed = 0
    until = time.monotonic() + 4.0
    while time.monotonic() < until:
        killed += int(psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE application_name = '{cluster.app}'").strip() or 0)
        time.sleep(0.2)
    outage_end = time.monotonic()
    assert killed >= 3, "no connection of the nodes was found to terminate"
    active = cluster.wait_active(20)
    recovered = time.monotonic() - outage_end
    deadline = time.monotonic() + 15
    while sum(1 for t_ in acked_at if t_ > outage_end) < 5:
        assert t.is_alive(), "writer failed"
        assert time.monotonic() < deadline, f"writes did not resume: {statuses[-20:]}\n{cluster.logs()}"
        time.sleep(0.2)
    stop.set()
    t.join(timeout=30)
    errors = sum(1 for s in statuses if s >= 500)
    print(f"\nPostgreSQL outage: {killed} connections killed, {errors} writes answered 5xx, "
          f"{len(acked)} acknowledged; active again {recovered:.2f} s after the outage (node {active.idx})")
    assert errors > 0, "the outage was not felt: the test did not test anything"
    # No false 2xx: every acknowledged write is there.
    h = cluster.h()
    for i in acked:
        r = requests.get(f"{active.addr}/v1/secret/data/outage/{i}", headers=h, timeout=10)
        assert r.status_code == 200 and r.json()["data"]["data"] == {"i": i}, (i, r.status_code)
    assert len(cluster.active()) == 1


def test_sigterm_of_the_active_node_hands_over_at_once(cluster: Cluster) -> None:
    old = cluster.wait_active(15)
    started = time.monotonic()
    old.proc.send_signal(signal.SIGTERM)
    new = cluster.wait_active(10, exclude=old)
    took = time.monotonic() - started
    print(f"\nHA takeover after SIGTERM of the active node: {took:.2f} s (node {old.idx} -> node {new.idx})")
    assert old.proc.wait(timeout=30) == 0
    # Sealing gives the lock up: no wait for the lease to run out.
    assert took < 3.0, f"{took:.2f} s"
    cluster.start(old)
    cluster.unseal(old)


def test_audit_chain_is_unbroken_across_takeovers(cluster: Cluster) -> None:
    assert cluster.audit.exists()
    lines = cluster.audit.read_text().splitlines()
    assert len(lines) > 100
    out = subprocess.run([str(lockana_bin()), "audit", "verify", str(cluster.audit)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    seqs = [json.loads(x).get("lockana_seq") for x in lines if x.strip()]
    seqs = [s for s in seqs if s is not None]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "two nodes wrote the chain at once"
