"""Hostile clients against a real `lockana server` (issue 11, transport items).

One server per module, from a config file with short connection deadlines so the
suite runs in seconds: header 2 s, body 3 s, idle 4 s, 24 connections in all and 8
per client address. Memory is read from /proc/<pid>/status (VmRSS), sampled every
few milliseconds while the hostile requests run. Raw sockets throughout: the
point is what the server does with bytes that no well-behaved client sends.

The measured numbers are printed (`pytest -s`) so a run shows them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

HEADER_TIMEOUT = 2.0
READ_TIMEOUT = 3.0
IDLE_TIMEOUT = 4.0
MAX_CONNECTIONS = 24
MAX_PER_CLIENT = 8
# Slack for a loaded 2-core machine on top of each deadline.
SLACK = 2.0

MB = 1024 * 1024


def lockana_bin() -> Path:
    p = Path(os.environ.get("LOCKANA_BIN", "target/debug/lockana"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"Lockana binary not found at {p}: cargo build -p lockana-server, or set LOCKANA_BIN",
                    pytrace=False)
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lockana:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc = proc
        self.port = port
        self.log = log
        self.root = ""

    # ----------------------------------------------------------------- process
    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    # ----------------------------------------------------------------- HTTP
    def connect(self, source: str = "127.0.0.1", timeout: float = 15.0) -> socket.socket:
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", self.port))
        return s

    def request(self, method: str, path: str, body: bytes = b"", token: str | None = None,
                source: str = "127.0.0.1", timeout: float = 15.0) -> tuple[int, dict, float]:
        """One request on a fresh connection; the body is sent by a second thread while
        the answer is read, so an early answer is seen when it comes. Returns status,
        JSON body and seconds from the first byte sent to the whole answer read."""
        s = self.connect(source, timeout)
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        if token:
            head += f"X-Vault-Token: {token}\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"

        def send():
            try:
                s.sendall(head.encode() + body)
            except OSError:
                pass  # the server answered and closed before taking all of it

        start = time.monotonic()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        raw = read_answer(s)
        elapsed = time.monotonic() - start
        s.close()
        sender.join(timeout)
        status, payload = parse_answer(raw)
        return status, payload, elapsed


def read_answer(s: socket.socket) -> bytes:
    """Reads one HTTP answer (head and Content-Length body), or until EOF."""
    raw = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        raw += chunk
        if b"\r\n\r\n" in raw:
            head, _, rest = raw.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length" and len(rest) >= int(v):
                    return raw
    return raw


def parse_answer(raw: bytes) -> tuple[int, dict]:
    if not raw:
        return 0, {}
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    try:
        return status, json.loads(rest) if rest.strip() else {}
    except ValueError:
        return status, {"raw": rest[:200].decode(errors="replace")}


def closed_after(s: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes `s` (EOF or reset), reading whatever comes;
    None when still open after `limit`."""
    start = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        if not chunk:
            return time.monotonic() - start
    return None


class RssSampler:
    """Samples the server's RSS every few ms in a thread; `peak` is the maximum seen."""

    def __init__(self, server: Lockana):
        self.server = server
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_mb())
            time.sleep(0.003)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_mb())


def start_lockana(tmp: Path, header_timeout: float, read_timeout: float, idle_timeout: float):
    """Starts `lockana server` on a free port with these deadlines and the caps above,
    initialized, unsealed and with KV v2 at secret/; yields it, then stops it."""
    port = free_port()
    config = tmp / "lockana.hcl"
    config.write_text(f"""
storage "inmem" {{}}
listener "tcp" {{
  address     = "127.0.0.1:{port}"
  tls_disable = true
  http_read_header_timeout = "{header_timeout:g}s"
  http_read_timeout        = "{read_timeout:g}s"
  http_idle_timeout        = "{idle_timeout:g}s"
  max_connections            = {MAX_CONNECTIONS}
  max_connections_per_client = {MAX_PER_CLIENT}
  # the per-client cap applies to loopback too, so it can be shown from here
  rate_limit_exempt_loopback = false
}}
""")
    log = tmp / "lockana.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(lockana_bin()), "server", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    srv = Lockana(proc, port, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, _ = srv.request("GET", "/v1/sys/seal-status", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"lockana did not start:\n{srv.log_text()}", pytrace=False)
            time.sleep(0.1)
        status, init, _ = srv.request("PUT", "/v1/sys/init",
                                      json.dumps({"secret_shares": 1, "secret_threshold": 1}).encode())
        assert status == 200, init
        srv.root = init["root_token"]
        status, body, _ = srv.request("PUT", "/v1/sys/unseal", json.dumps({"key": init["keys"][0]}).encode())
        assert status == 200 and body["sealed"] is False, body
        status, body, _ = srv.request("POST", "/v1/sys/mounts/secret",
                                      json.dumps({"type": "kv", "options": {"version": "2"}}).encode(),
                                      token=srv.root)
        assert status in (200, 204), body
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Lockana:
    yield from start_lockana(tmp_path_factory.mktemp("hardening"), HEADER_TIMEOUT, READ_TIMEOUT, IDLE_TIMEOUT)


@pytest.fixture(scope="module")
def patient_server(tmp_path_factory) -> Lockana:
    """The same caps with deadlines long enough that held connections stay open."""
    yield from start_lockana(tmp_path_factory.mktemp("hardening-caps"), 60, 60, 60)


@pytest.fixture(scope="module")
def hostile_body() -> bytes:
    """30 MB of one object with 2.5 million keys: the issue's body."""
    keys = b",".join(b'"k%07d":1' % i for i in range(2_500_000))
    body = b'{"data":{' + keys + b"}}"
    assert 29 * MB < len(body) <= 32 * MB
    return body


def idle_rss(server: Lockana) -> float:
    """RSS after a few ordinary requests and a moment of calm."""
    for _ in range(5):
        server.request("GET", "/v1/sys/health")
    time.sleep(0.5)
    return server.rss_mb()


def settle_rss(server: Lockana, idle: float, within: float, wait: float = 5.0) -> float:
    """RSS once it is back within `within` MB of `idle`, or after `wait` seconds."""
    deadline = time.monotonic() + wait
    rss = server.rss_mb()
    while rss > idle + within and time.monotonic() < deadline:
        time.sleep(0.25)
        rss = server.rss_mb()
    return rss


# --------------------------------------------------------------------------- bodies

def test_unauthenticated_hostile_body_costs_less_than_its_size_and_is_refused_at_once(server, hostile_body):
    idle = idle_rss(server)
    with RssSampler(server) as rss:
        status, body, elapsed = server.request("PUT", "/v1/secret/data/x", hostile_body)
    print(f"\nno token, {len(hostile_body) / MB:.1f} MB: {status} in {elapsed * 1000:.0f} ms; "
          f"RSS idle {idle:.1f} MB, peak {rss.peak:.1f} MB")
    assert status == 403
    assert body == {"errors": ["permission denied"]}
    assert (rss.peak - idle) * MB <= len(hostile_body), "an unauthenticated request cost more than its size"
    # Measured about 10 ms; the goal is 0.2 s.
    assert elapsed <= 0.2 + 0.3, f"refused after {elapsed:.2f} s"


def test_authenticated_hostile_body_is_refused_quickly_with_openbaos_message(server, hostile_body):
    idle = idle_rss(server)
    with RssSampler(server) as rss:
        status, body, elapsed = server.request("PUT", "/v1/secret/data/x", hostile_body, token=server.root)
    print(f"\nroot token, {len(hostile_body) / MB:.1f} MB: {status} in {elapsed * 1000:.0f} ms; "
          f"RSS idle {idle:.1f} MB, peak {rss.peak:.1f} MB")
    assert status == 400
    assert body == {"errors": ["refused JSON input due to high complexity: exceeded maximum number of strings"]}
    assert elapsed <= 0.2 + 0.3, f"refused after {elapsed:.2f} s"
    # Nothing was stored.
    status, _, _ = server.request("GET", "/v1/secret/data/x", token=server.root)
    assert status == 404


def test_four_concurrent_hostile_bodies_stay_under_150_mb_and_memory_comes_back(server, hostile_body):
    idle = idle_rss(server)
    results: list[tuple[int, float]] = []
    health: list[float] = []

    def hostile(token):
        status, _, elapsed = server.request("PUT", "/v1/secret/data/x", hostile_body, token=token)
        results.append((status, elapsed))

    with RssSampler(server) as rss:
        threads = [threading.Thread(target=hostile, args=(tok,))
                   for tok in (None, server.root, None, server.root)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            status, _, elapsed = server.request("GET", "/v1/sys/health", source="127.0.0.2")
            assert status == 200
            health.append(elapsed)
        for t in threads:
            t.join()
    after = settle_rss(server, idle, within=20)
    print(f"\n4 x {len(hostile_body) / MB:.0f} MB at once: {sorted(results)}; "
          f"RSS idle {idle:.1f} MB, peak {rss.peak:.1f} MB, after {after:.1f} MB; "
          f"slowest sys/health {max(health) * 1000:.0f} ms")
    assert sorted(s for s, _ in results) == [400, 400, 403, 403]
    assert rss.peak <= 150, f"peak RSS {rss.peak:.1f} MB"
    assert after <= idle + 20, f"RSS {after:.1f} MB, idle was {idle:.1f} MB"
    assert max(health) < 1.0, "sys/health slowed down by the hostile bodies"


def test_large_legitimate_body_is_served_and_memory_comes_back(server):
    """Within every limit (1000 strings, 1 MiB each) but large: 8 values of 1 MB,
    written, read back and destroyed (the in-memory storage would otherwise hold it)."""
    idle = idle_rss(server)
    data = {f"v{i}": chr(ord("a") + i) * (1000 * 1000) for i in range(8)}
    body = json.dumps({"data": data}).encode()
    with RssSampler(server) as rss:
        status, answer, elapsed = server.request("PUT", "/v1/secret/data/big", body, token=server.root)
        assert status == 200, answer
        status, read, _ = server.request("GET", "/v1/secret/data/big", token=server.root)
        assert status == 200 and read["data"]["data"]["v3"] == "d" * (1000 * 1000)
        del read
        status, _, _ = server.request("DELETE", "/v1/secret/metadata/big", token=server.root)
        assert status == 204
    after = settle_rss(server, idle, within=20)
    print(f"\nlegitimate {len(body) / MB:.0f} MB write, read, destroy: write {elapsed * 1000:.0f} ms; "
          f"RSS idle {idle:.1f} MB, peak {rss.peak:.1f} MB, after {after:.1f} MB")
    assert after <= idle + 20, f"RSS {after:.1f} MB, idle was {idle:.1f} MB"


# --------------------------------------------------------------------------- connections

def test_silent_partial_header_and_trickling_clients_are_cut_while_others_are_served(server):
    fds_before = server.open_fds()
    silent = [server.connect() for _ in range(4)]
    partial = server.connect(source="127.0.0.3")
    partial.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    trickle = server.connect(source="127.0.0.4")
    trickle.sendall(f"PUT /v1/secret/data/t HTTP/1.1\r\nHost: x\r\nX-Vault-Token: {server.root}\r\n"
                    "Content-Length: 1000\r\n\r\n{".encode())
    started = time.monotonic()
    outcome: dict[str, float | None] = {}

    def watch(name, sock, limit):
        outcome[name] = closed_after(sock, limit)

    def trickle_on():
        # One byte every 0.4 s: the connection is never quiet, the body never ends.
        try:
            while "trickle" not in outcome:
                time.sleep(0.4)
                trickle.send(b" ")
        except OSError:
            pass

    watchers = [threading.Thread(target=watch, args=(f"silent{i}", s, HEADER_TIMEOUT + SLACK + 3))
                for i, s in enumerate(silent)]
    watchers.append(threading.Thread(target=watch, args=("partial", partial, HEADER_TIMEOUT + SLACK + 3)))
    watchers.append(threading.Thread(target=watch, args=("trickle", trickle, READ_TIMEOUT + SLACK + 3)))
    for w in watchers + [threading.Thread(target=trickle_on, daemon=True)]:
        w.start()
    # Meanwhile other clients are served promptly.
    served = []
    while any(w.is_alive() for w in watchers):
        status, _, elapsed = server.request("GET", "/v1/sys/health", source="127.0.0.5")
        assert status == 200
        served.append(elapsed)
        time.sleep(0.1)
    total = time.monotonic() - started
    print(f"\nclosed after (s): { {k: round(v, 2) if v else v for k, v in outcome.items()} }; "
          f"{len(served)} health requests meanwhile, slowest {max(served) * 1000:.0f} ms; total {total:.1f} s")
    for i in range(4):
        t = outcome[f"silent{i}"]
        assert t is not None, "a silent connection was never closed"
        assert HEADER_TIMEOUT - 0.5 <= t <= HEADER_TIMEOUT + SLACK
    assert outcome["partial"] is not None, "a partial-header connection was never closed"
    assert HEADER_TIMEOUT - 0.5 <= outcome["partial"] <= HEADER_TIMEOUT + SLACK
    assert outcome["trickle"] is not None, "a trickling body was never cut"
    assert READ_TIMEOUT - 0.5 <= outcome["trickle"] <= READ_TIMEOUT + SLACK
    assert max(served) < 1.0
    for s in silent + [partial, trickle]:
        s.close()
    time.sleep(0.3)
    assert server.open_fds() <= fds_before + 2, "connections closed by the deadlines still hold descriptors"


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(server):
    s = server.connect()
    s.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _ = parse_answer(read_answer(s))
    assert status == 200
    t = closed_after(s, IDLE_TIMEOUT + SLACK + 3)
    s.close()
    print(f"\nidle keep-alive connection closed after {t} s")
    assert t is not None and IDLE_TIMEOUT - 0.5 <= t <= IDLE_TIMEOUT + SLACK


def test_connection_caps_per_client_and_overall_with_a_log_line(patient_server):
    server = patient_server
    held = []
    try:
        for _ in range(MAX_PER_CLIENT):
            held.append(server.connect(source="127.0.0.6"))
        # Accepted, counted, then closed at once: the client sees EOF, no answer.
        over = server.connect(source="127.0.0.6")
        over.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        t = closed_after(over, 3)
        over.close()
        assert t is not None and t < 1.0, "a connection over the per-client cap was kept"
        # Another address is still served.
        status, _, _ = server.request("GET", "/v1/sys/health", source="127.0.0.7")
        assert status == 200
        # That connection's place is given back when the server has closed it, a little
        # after the answer is read; filling the cap before then would refuse one of the
        # held connections instead and leave room for the one over the cap.
        time.sleep(0.5)
        # Fill the rest of the overall cap from other addresses.
        for i in range(MAX_CONNECTIONS - MAX_PER_CLIENT):
            held.append(server.connect(source=f"127.0.1.{i // MAX_PER_CLIENT + 1}"))
        time.sleep(0.2)
        over = server.connect(source="127.0.0.8")
        over.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        t = closed_after(over, 3)
        over.close()
        assert t is not None and t < 1.0, "a connection over max_connections was kept"
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    status, _, _ = server.request("GET", "/v1/sys/health", source="127.0.0.8")
    assert status == 200, "closed connections did not give their places back"
    log = server.log_text()
    assert log.count("connection refused: max_connections_per_client reached") == 1
    assert log.count("connection refused: max_connections reached") == 1
