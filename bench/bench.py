#!/usr/bin/env python3
"""Lockana vs OpenBao, side by side: the driver behind bench/run.sh.

Starts each server pair (dev mode, then durable), pre-populates 1,000 secrets of
about 200 bytes through the KV v2 API, runs wrk against both in alternation (so
machine noise hits both alike), samples server CPU and RSS from /proc, and prints a
Markdown table with the Lockana/OpenBao ratio per row. Everything listens on
127.0.0.1 and every server started here is stopped before exit, even on failure.

Environment: BENCH_DURATION (seconds per run, default 3), BENCH_CONNS (default
"1,16,64"), BENCH_ONLY (comma list of modes: dev,durable,hyper,transit,ha), BENCH_OUT (results
directory), BENCH_PG_URL (PostgreSQL for the `ha` section, default
postgres://postgres@127.0.0.1:5432/test). Paths to the binaries come from run.sh
(LOCKANA_BIN, BAO_BIN, HYPER_BIN).
"""

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "lua", "vault.lua")
DURATION = int(os.environ.get("BENCH_DURATION", "3"))
CONNS = [int(c) for c in os.environ.get("BENCH_CONNS", "1,16,64").split(",")]
# `ha` needs PostgreSQL, so it runs only when asked for.
ONLY = set(os.environ.get("BENCH_ONLY", "dev,durable,hyper,transit").split(","))
LOCKANA = os.environ["LOCKANA_BIN"]
BAO = os.environ["BAO_BIN"]
HYPER = os.environ.get("HYPER_BIN", "")
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/test")
OUT = os.environ.get("BENCH_OUT") or tempfile.mkdtemp(prefix="lockana-bench-")
os.makedirs(OUT, exist_ok=True)
KEYS = 1000
VALUE = "v" * 190  # {"value": "..."} is about 200 bytes of JSON
TICK = os.sysconf("SC_CLK_TCK")

PORTS = {"bao-dev": 18200, "lockana-dev": 18300, "bao-raft": 18210,
         "lockana-redb": 18310, "hyper": 18400,
         "lockana-pg": 18320, "lockana-ha-a": 18321, "lockana-ha-b": 18322}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- HTTP ---------------------------------------------------------------------

def call(port, method, path, body=None, token=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Vault-Token"] = token
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, data
    finally:
        conn.close()


def wait_health(port, proc, want=(200,), deadline_s=60):
    """Polls sys/health every millisecond; returns seconds until an answer in `want`."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < deadline_s:
        if proc.poll() is not None:
            raise RuntimeError(f"server on :{port} exited with {proc.returncode}")
        try:
            status, _ = call(port, "GET", "/v1/sys/health", timeout=1)
            if status in want:
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"server on :{port} never answered sys/health with {want}")


def populate(port, token):
    """1,000 secrets at secret/bench/k0..k999, over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "X-Vault-Token": token}
    for i in range(KEYS):
        for attempt in range(100):
            conn.request("PUT", f"/v1/secret/data/bench/k{i}",
                         body=json.dumps({"data": {"value": VALUE}}), headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                break
            # A fresh kv-v2 mount on OpenBao answers 400 "upgrading" for a moment.
            time.sleep(0.05)
        else:
            raise RuntimeError(f"populate failed on :{port}: {r.status}")
    conn.close()


# ---- processes ----------------------------------------------------------------

class Proc:
    """A server process, with /proc sampling of CPU ticks and RSS."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        self.port = PORTS[name]
        self.logf = open(os.path.join(OUT, f"{name}.log"), "wb")
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                  env=env, cwd=cwd, start_new_session=True)
        self.peak_rss_kb = 0

    def cpu_seconds(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime

    def rss_kb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def hwm_kb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        self.logf.close()


RUNNING = []


def start(name, argv, **kw):
    p = Proc(name, argv, **kw)
    RUNNING.append(p)
    return p


def stop_all():
    while RUNNING:
        RUNNING.pop().stop()


# ---- servers ------------------------------------------------------------------

def start_bao_dev():
    p = start("bao-dev", [BAO, "server", "-dev", "-dev-root-token-id=root",
                          f"-dev-listen-address=127.0.0.1:{PORTS['bao-dev']}"])
    p.startup = wait_health(p.port, p.p)
    p.token = "root"
    return p


def start_lockana_dev():
    p = start("lockana-dev", [LOCKANA, "server", "--dev", "--dev-root-token-id", "root",
                              "--dev-listen-address", f"127.0.0.1:{PORTS['lockana-dev']}"])
    p.startup = wait_health(p.port, p.p)
    p.token = "root"
    return p


def init_unseal_mount(p):
    status, body = call(p.port, "PUT", "/v1/sys/init",
                        {"secret_shares": 1, "secret_threshold": 1})
    assert status == 200, (p.name, status, body)
    init = json.loads(body)
    status, body = call(p.port, "PUT", "/v1/sys/unseal", {"key": init["keys_base64"][0]})
    assert status == 200, (p.name, status, body)
    p.token = init["root_token"]
    wait_health(p.port, p.p)  # raft: until a leader is elected and active
    for _ in range(200):
        status, body = call(p.port, "POST", "/v1/sys/mounts/secret", {"type": "kv-v2"},
                            token=p.token)
        if status in (200, 204):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{p.name}: enabling kv-v2 failed: {status} {body!r}")


def start_bao_raft(tmp):
    data = os.path.join(tmp, "bao-raft")
    os.makedirs(data)
    cfg = os.path.join(tmp, "bao.hcl")
    port = PORTS["bao-raft"]
    with open(cfg, "w") as f:
        f.write(f'''
storage "raft" {{
  path    = "{data}"
  node_id = "bench1"
}}
listener "tcp" {{
  address     = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{port + 1}"
  tls_disable = true
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "http://127.0.0.1:{port + 1}"
disable_mlock = true
''')
    p = start("bao-raft", [BAO, "server", f"-config={cfg}"])
    # Uninitialized OpenBao answers sys/health with 501.
    p.startup = wait_health(p.port, p.p, want=(200, 429, 472, 473, 501, 503))
    init_unseal_mount(p)
    return p


def start_lockana_redb(tmp):
    cfg = os.path.join(tmp, "lockana.hcl")
    with open(cfg, "w") as f:
        f.write(f'''
storage "redb" {{ path = "{tmp}/lockana/lockana.redb" }}
listener "tcp" {{
  address     = "127.0.0.1:{PORTS['lockana-redb']}"
  tls_disable = true
}}
''')
    p = start("lockana-redb", [LOCKANA, "server", "--config", cfg])
    p.startup = wait_health(p.port, p.p, want=(200, 429, 472, 473, 501, 503))
    init_unseal_mount(p)
    return p


def psql(sql):
    out = subprocess.run(["psql", PG_URL, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")


def start_lockana_pg(tmp, name, table, ha_table=None):
    """A config-file node on PostgreSQL; with `ha_table`, an HA node on that lock table."""
    port = PORTS[name]
    ha = (f'  ha_enabled = "true"\n  ha_table = "{ha_table}"\n' if ha_table else "")
    cfg = os.path.join(tmp, f"{name}.hcl")
    with open(cfg, "w") as f:
        f.write(f'''
storage "postgresql" {{
  connection_url = "{PG_URL}"
  table = "{table}"
{ha}}}
listener "tcp" {{
  address     = "127.0.0.1:{port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
''')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    p = start(name, [LOCKANA, "server", "--config", cfg], env=env)
    p.startup = wait_health(p.port, p.p, want=(200, 429, 472, 473, 501, 503))
    return p


def unseal(p, key):
    status, body = call(p.port, "PUT", "/v1/sys/unseal", {"key": key})
    assert status == 200 and not json.loads(body)["sealed"], (p.name, status, body)


def start_ha_pair(tmp, table, ha_table):
    """Two HA nodes on one table pair: `a` is unsealed first and waited for as the
    active node, then `b` is unsealed and waited for as its standby (429 from
    sys/health). kv-v2 is enabled at secret/ through the active node."""
    a = start_lockana_pg(tmp, "lockana-ha-a", table, ha_table)
    b = start_lockana_pg(tmp, "lockana-ha-b", table, ha_table)
    status, body = call(a.port, "PUT", "/v1/sys/init", {"secret_shares": 1, "secret_threshold": 1},
                        timeout=30)
    assert status == 200, (a.name, status, body)
    init = json.loads(body)
    unseal(a, init["keys_base64"][0])
    wait_health(a.port, a.p, want=(200,))
    unseal(b, init["keys_base64"][0])
    wait_health(b.port, b.p, want=(429,))
    a.token = b.token = init["root_token"]
    status, body = call(a.port, "POST", "/v1/sys/mounts/secret", {"type": "kv-v2"}, token=a.token)
    assert status in (200, 204), (a.name, status, body)
    return a, b


def start_hyper(read_body, health_body):
    rf = os.path.join(OUT, "read-body.json")
    hf = os.path.join(OUT, "health-body.json")
    with open(rf, "wb") as f:
        f.write(read_body)
    with open(hf, "wb") as f:
        f.write(health_body)
    p = start("hyper", [HYPER, str(PORTS["hyper"]), rf, hf])
    p.startup = wait_health(p.port, p.p)
    p.token = "none"
    return p


def setup_project(port, token):
    """Creates project `bench` with 10 variables, logs in with a TOTP code and times
    one code-authenticated env fetch. Returns (project token, that fetch in ms)."""
    import pyotp
    import urllib.parse
    st, body = call(port, "POST", "/v1/lockana/projects/bench", {}, token=token)
    assert st == 200, (st, body)
    url = json.loads(body)["data"]["otpauth_url"]
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["secret"][0]
    totp = pyotp.TOTP(secret)
    variables = {f"VAR_{i}": "v" * 20 for i in range(10)}
    st, _ = call(port, "POST", "/v1/secret/data/projects/bench", {"data": variables}, token=token)
    assert st == 200, st

    def fresh_code():
        # A code works once per 30 s step; wait for the next step if this one is spent.
        step = int(time.time()) // 30
        while int(time.time()) // 30 == step:
            time.sleep(0.2)
        return totp.now()

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    code = totp.now()
    t0 = time.perf_counter()
    conn.request("GET", "/v1/lockana/projects/bench/env", headers={"X-Lockana-TOTP": code})
    r = conn.getresponse()
    r.read()
    coded_ms = (time.perf_counter() - t0) * 1000
    conn.close()
    assert r.status == 200, r.status
    st, body = call(port, "POST", "/v1/auth/totp/login", {"project": "bench", "code": fresh_code()})
    assert st == 200, (st, body)
    return json.loads(body)["auth"]["client_token"], coded_ms


# ---- load ---------------------------------------------------------------------

def wrk(p, mode, conns):
    """One wrk run against `p`; returns rps, p50, p99 (ms), CPU (cores), peak RSS (MB).

    A mode `post:<name>` sends `p.posts[<name>]` (path, JSON body) every time."""
    env = dict(os.environ, BENCH_MODE=mode, BENCH_TOKEN=p.token, BENCH_KEYS=str(KEYS))
    if mode.startswith("post:"):
        path, body = p.posts[mode[5:]]
        env.update(BENCH_MODE="post", BENCH_PATH=path, BENCH_BODY=body)
    threads = 1 if conns == 1 else 2
    argv = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{DURATION}s",
            "--timeout", "5s", "-s", LUA, f"http://127.0.0.1:{p.port}"]
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], p.rss_kb())
            except OSError:
                return
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    cpu0, t0 = p.cpu_seconds(), time.perf_counter()
    sampler.start()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=DURATION + 30)
    stop.set()
    sampler.join()
    cpu = (p.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
    p.peak_rss_kb = max(p.peak_rss_kb, peak[0])
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed against {p.name}: {out.stdout} {out.stderr}")
    f = dict(kv.split("=") for kv in line.split()[1:])
    return {
        "rps": float(f["rps"]), "p50": int(f["p50_us"]) / 1000, "p99": int(f["p99_us"]) / 1000,
        "non2xx": int(f["non2xx"]), "sockerr": int(f["sockerr"]),
        "cpu": cpu, "rss_mb": peak[0] / 1024,
    }


CASES = [
    ("read_hot", "KV v2 read, one hot key"),
    ("read_spread", "KV v2 read, 1,000 keys"),
    ("health", "sys/health"),
    ("write_one", "KV v2 write, one key"),
    ("write_spread", "KV v2 write, 1,000 keys"),
]

TRANSIT_CASES = [
    ("post:encrypt", "transit encrypt, 1 KiB"),
    ("post:decrypt", "transit decrypt, 1 KiB"),
]
PLAINTEXT_1K = base64.b64encode(os.urandom(1024)).decode()

ROWS = []


def setup_transit(p):
    """Enables transit at transit/, creates key `bench` (aes256-gcm96) and records the
    encrypt and decrypt requests of 1 KiB (the decrypt one with this server's own
    ciphertext)."""
    st, body = call(p.port, "POST", "/v1/sys/mounts/transit", {"type": "transit"}, token=p.token)
    assert st in (200, 204), (p.name, st, body)
    st, body = call(p.port, "POST", "/v1/transit/keys/bench", {}, token=p.token)
    assert st in (200, 204), (p.name, st, body)
    st, body = call(p.port, "POST", "/v1/transit/encrypt/bench",
                    {"plaintext": PLAINTEXT_1K}, token=p.token)
    assert st == 200, (p.name, st, body)
    ct = json.loads(body)["data"]["ciphertext"]
    st, body = call(p.port, "POST", "/v1/transit/decrypt/bench", {"ciphertext": ct}, token=p.token)
    assert st == 200 and json.loads(body)["data"]["plaintext"] == PLAINTEXT_1K, (p.name, st)
    p.posts = {
        "encrypt": ("/v1/transit/encrypt/bench", json.dumps({"plaintext": PLAINTEXT_1K})),
        "decrypt": ("/v1/transit/decrypt/bench", json.dumps({"ciphertext": ct})),
    }


def measure_pair(mode_name, bao, lockana, cases):
    for case, label in cases:
        for c in CONNS:
            row = {"mode": mode_name, "case": case, "label": label, "conns": c}
            for side, p in (("bao", bao), ("lockana", lockana)):
                r = wrk(p, case, c)
                row[side] = r
                log_result(mode_name, label, c, p, r)
            ROWS.append(row)


def log_result(mode_name, label, c, p, r):
    log(f"  {mode_name:8} {label:26} c={c:<3} {p.name:13} "
        f"{r['rps']:9.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:7.2f} ms  "
        f"cpu {r['cpu']:.2f}  rss {r['rss_mb']:.1f} MB"
        + (f"  non2xx={r['non2xx']}" if r["non2xx"] else "")
        + (f"  sockerr={r['sockerr']}" if r["sockerr"] else ""))


def measure_ha(single, active, standby, cases):
    """Each case through the single node, the active node and the standby, row by row."""
    for case, label in cases:
        for c in CONNS:
            row = {"mode": "ha", "case": case, "label": label, "conns": c}
            for side, p in (("single", single), ("active", active), ("standby", standby)):
                # Through the standby the active node does the work too: its CPU is
                # sampled over the same run.
                cpu0, t0 = active.cpu_seconds(), time.perf_counter()
                r = wrk(p, case, c)
                r["active_cpu"] = (active.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
                row[side] = r
                log_result("ha", label, c, p, r)
            ROWS.append(row)


def rss_mb(p):
    return p.rss_kb() / 1024


def main():
    log(f"results and server logs: {OUT}")
    facts = {}
    tmp = tempfile.mkdtemp(prefix="lockana-bench-data-")
    read_body = health_body = None
    try:
        if "dev" in ONLY or "hyper" in ONLY:
            log("== dev mode: OpenBao -dev vs lockana --dev (in-memory)")
            bao = start_bao_dev()
            lk = start_lockana_dev()
            time.sleep(1.0)
            facts["startup_ms"] = {"bao": bao.startup * 1000, "lockana": lk.startup * 1000}
            facts["idle_rss_mb"] = {"bao": rss_mb(bao), "lockana": rss_mb(lk)}
            populate(bao.port, bao.token)
            populate(lk.port, lk.token)
            read_body = call(lk.port, "GET", "/v1/secret/data/bench/k0", token="root")[1]
            health_body = call(lk.port, "GET", "/v1/sys/health")[1]
            if "dev" in ONLY:
                measure_pair("dev", bao, lk, [c for c in CASES if c[0].startswith("read")])
                facts["read_rss_mb"] = {"bao": bao.peak_rss_kb / 1024,
                                        "lockana": lk.peak_rss_kb / 1024}
                measure_pair("dev", bao, lk, [c for c in CASES if not c[0].startswith("read")])
                facts["peak_rss_mb"] = {"bao": bao.hwm_kb() / 1024, "lockana": lk.hwm_kb() / 1024}
                project_token, coded_ms = setup_project(lk.port, lk.token)
                facts["env_coded_ms"] = coded_ms
                lk.token, root = project_token, lk.token
                for c in CONNS:
                    r = wrk(lk, "env", c)
                    ROWS.append({"mode": "dev", "case": "env", "conns": c, "lockana_only": r})
                    log(f"  dev      project env (project token) c={c:<3} {r['rps']:9.0f} req/s  "
                        f"p99 {r['p99']:7.2f} ms  cpu {r['cpu']:.2f}")
                lk.token = root
            stop_all()
        if "hyper" in ONLY and HYPER:
            log("== bare hyper baseline (same bytes as Lockana's KV v2 read and sys/health)")
            h = start_hyper(read_body, health_body)
            for case in ("read_hot", "health"):
                for c in CONNS:
                    r = wrk(h, case, c)
                    ROWS.append({"mode": "hyper", "case": case, "conns": c, "hyper": r})
                    log(f"  hyper    {case:26} c={c:<3} {r['rps']:9.0f} req/s  "
                        f"p99 {r['p99']:7.2f} ms  cpu {r['cpu']:.2f}  rss {r['rss_mb']:.1f} MB")
            facts["hyper_idle_rss_mb"] = h.hwm_kb() / 1024
            stop_all()
        if "transit" in ONLY:
            log("== transit: encrypt and decrypt of 1 KiB (dev servers, key aes256-gcm96)")
            bao = start_bao_dev()
            lk = start_lockana_dev()
            setup_transit(bao)
            setup_transit(lk)
            measure_pair("transit", bao, lk, TRANSIT_CASES)
            stop_all()
        if "durable" in ONLY:
            log("== durable: OpenBao raft vs lockana redb (every write fsync'd)")
            bao = start_bao_raft(tmp)
            lk = start_lockana_redb(tmp)
            populate(bao.port, bao.token)
            populate(lk.port, lk.token)
            measure_pair("durable", bao, lk, CASES)
            stop_all()
        if "ha" in ONLY:
            log("== ha: one node on PostgreSQL vs an HA pair (active + standby relaying)")
            tag = uuid.uuid4().hex[:10]
            tables = [f"lockana_bench_single_{tag}", f"lockana_bench_ha_{tag}",
                      f"lockana_bench_ha_locks_{tag}"]
            try:
                single = start_lockana_pg(tmp, "lockana-pg", tables[0])
                init_unseal_mount(single)
                active, standby = start_ha_pair(tmp, tables[1], tables[2])
                populate(single.port, single.token)
                populate(active.port, active.token)
                cases = [c for c in CASES if c[0] in ("read_spread", "write_spread")]
                measure_ha(single, active, standby, cases)
                st, body = call(standby.port, "GET", "/v1/sys/health")
                assert st == 429, ("the standby is no longer a standby", st, body)
            finally:
                stop_all()
                psql("; ".join(f"DROP TABLE IF EXISTS {t}" for t in tables))
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    facts["binary_mb"] = {"lockana": os.path.getsize(LOCKANA) / 1e6,
                          "bao": os.path.getsize(BAO) / 1e6}
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"rows": ROWS, "facts": facts, "duration_s": DURATION}, f, indent=1)
    report(ROWS, facts)


def report(rows, facts):
    hyper = {(r["case"], r["conns"]): r["hyper"] for r in rows if r["mode"] == "hyper"}
    out = []
    w = out.append
    pairs = [r for r in rows if "bao" in r or "lockana_only" in r]
    if pairs or hyper:
        report_pairs(w, pairs, hyper, facts)
    ha = [r for r in rows if r["mode"] == "ha"]
    if ha:
        report_ha(w, ha)
    text = "\n".join(out)
    print(text)
    with open(os.path.join(OUT, "table.md"), "w") as f:
        f.write(text + "\n")


def report_ha(w, rows):
    w(f"\nHA on PostgreSQL, wrk, {DURATION} s per run, loopback: one node without HA (its own "
      "table) vs an HA pair on one table, through the active node and through the standby, "
      "which relays every request to the active node. CPU in cores; through the standby "
      "both nodes' CPU is shown (standby + active).\n")
    w("| case | conns | single req/s | active req/s | standby req/s | standby / active "
      "| active / single | single p50/p99 ms | active p50/p99 ms | standby p50/p99 ms "
      "| CPU single | CPU active | CPU standby + active |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    flag = lambda x: f" ({x['non2xx']} non-2xx!)" if x["non2xx"] or x["sockerr"] else ""
    for r in rows:
        s, a, sb = r["single"], r["active"], r["standby"]
        w(f"| {r['label']} | {r['conns']} | {s['rps']:.0f}{flag(s)} | {a['rps']:.0f}{flag(a)} | "
          f"{sb['rps']:.0f}{flag(sb)} | **{sb['rps'] / max(a['rps'], 1e-9):.2f}** | "
          f"{a['rps'] / max(s['rps'], 1e-9):.2f} | {s['p50']:.2f} / {s['p99']:.2f} | "
          f"{a['p50']:.2f} / {a['p99']:.2f} | {sb['p50']:.2f} / {sb['p99']:.2f} | "
          f"{s['cpu']:.2f} | {a['cpu']:.2f} | {sb['cpu']:.2f} + {sb['active_cpu']:.2f} |")


def report_pairs(w, rows, hyper, facts):
    w(f"wrk, {DURATION} s per run, loopback; ratio = Lockana / OpenBao "
      "(req/s: higher is better; p99: lower is better)\n")
    w("| mode | case | conns | OpenBao req/s | Lockana req/s | ratio | OpenBao p50/p99 ms "
      "| Lockana p50/p99 ms | p99 ratio | OpenBao CPU | Lockana CPU | OpenBao RSS MB "
      "| Lockana RSS MB | Lockana / bare hyper |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["mode"] == "hyper" or "lockana_only" in r:
            continue
        b, l = r["bao"], r["lockana"]
        hy = hyper.get(("health" if r["case"] == "health" else "read_hot", r["conns"]))
        vs_hyper = (f"{l['rps'] / hy['rps']:.2f}"
                    if hy and r["mode"] == "dev" and r["case"] in ("read_hot", "read_spread", "health")
                    else "")
        flag = lambda x: f" ({x['non2xx']} non-2xx!)" if x["non2xx"] or x["sockerr"] else ""
        w(f"| {r['mode']} | {r['label']} | {r['conns']} | {b['rps']:.0f}{flag(b)} | "
          f"{l['rps']:.0f}{flag(l)} | **{l['rps'] / max(b['rps'], 1e-9):.2f}** | "
          f"{b['p50']:.2f} / {b['p99']:.2f} | {l['p50']:.2f} / {l['p99']:.2f} | "
          f"{l['p99'] / max(b['p99'], 1e-9):.2f} | {b['cpu']:.2f} | {l['cpu']:.2f} | "
          f"{b['rss_mb']:.0f} | {l['rss_mb']:.1f} | {vs_hyper} |")
    for r in rows:
        if "lockana_only" in r:
            l = r["lockana_only"]
            w(f"| dev | project env fetch (token from a TOTP login; Lockana only) | {r['conns']} "
              f"| n/a | {l['rps']:.0f} | | | {l['p50']:.2f} / {l['p99']:.2f} | | | "
              f"{l['cpu']:.2f} | | {l['rss_mb']:.1f} | |")
    if facts.get("env_coded_ms") is not None:
        w(f"\nOne env fetch authenticated by the TOTP code itself (codes are single-use, so "
          f"this is a latency, not a rate): {facts['env_coded_ms']:.2f} ms.")
    if hyper:
        w("\nBare hyper (same bytes): " + ", ".join(
            f"{case} c={c}: {r['rps']:.0f} req/s p99 {r['p99']:.2f} ms"
            for (case, c), r in sorted(hyper.items())))
    w("\n| fact | OpenBao | Lockana | goal |")
    w("|---|---|---|---|")
    g = facts.get
    if g("startup_ms"):
        w(f"| start to first healthy answer (dev) | {g('startup_ms')['bao']:.0f} ms | "
          f"{g('startup_ms')['lockana']:.1f} ms | < 50 ms |")
        w(f"| idle RSS after start (dev) | {g('idle_rss_mb')['bao']:.1f} MB | "
          f"{g('idle_rss_mb')['lockana']:.1f} MB | < 12 MB |")
    if g("read_rss_mb"):
        w(f"| peak RSS under read load (dev) | {g('read_rss_mb')['bao']:.1f} MB | "
          f"{g('read_rss_mb')['lockana']:.1f} MB | < 40 MB |")
        w(f"| peak RSS, whole dev run (VmHWM) | {g('peak_rss_mb')['bao']:.1f} MB | "
          f"{g('peak_rss_mb')['lockana']:.1f} MB | |")
    if g("hyper_idle_rss_mb"):
        w(f"| bare hyper peak RSS | | {g('hyper_idle_rss_mb'):.1f} MB | |")
    w(f"| release binary size | {g('binary_mb')['bao']:.1f} MB | "
      f"{g('binary_mb')['lockana']:.1f} MB | |")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
