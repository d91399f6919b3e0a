#!/usr/bin/env python3
"""The rolling-stop proof behind a real load balancer (what `make zero-downtime` runs).

For each row: HAProxy on 127.0.0.1 in front of two instances of a small HTTP
app (zdt.c), each under an init as PID 1 of its own PID namespace
(`unshare --pid --fork --mount-proc --kill-child INIT ... -- zdt app ...`). A
closed-loop client (zdt load) keeps a steady load through HAProxy; after a
warm-up and a random fraction of the health-check interval, the harness sends
SIGTERM to the first instance's init (its host pid: unshare does not forward
signals), keeps the load for a window, and counts every answer that is not 2xx
and every connection error.

Usage: zdt.py --drainit BIN --zdt ZDT --work DIR [--quick] [--report FILE] [--meta K=V ...]

Knobs (environment): ZDT_RATE (requests/s, 400), ZDT_CONNS (client
connections, 8), ZDT_WARMUP (s, 2; 1 with --quick), ZDT_DRAIN_DELAY (s, 3),
ZDT_WINDOW (s after the SIGTERM, drain delay + 2), ZDT_WORK_MS (each request's
work in the app, 5), ZDT_SEED (the random SIGTERM offsets), ZDT_ONLY (a regex
on the row ids).

Exit status: 0 when every drainit row that ran had 0 failed requests out of at
least 1000 in the window, the instance's init exited 0 within the window, and
the row was valid (both instances served during the warm-up without a
failure); 1 otherwise; 2 when the harness itself could not run.
"""
import argparse
import ctypes
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

INTER_MS = 500      # HAProxy check interval
FALL = 2            # failed checks to mark a server down
CHECK_TIMEOUT_MS = 500
K8S_REMOVE_AFTER = 1.0  # the Kubernetes shape: endpoints removed 1 s after the SIGTERM
MIN_REQUESTS = 1000
MAX_WINDOW = 30.0   # s: the window grows past ZDT_WINDOW until MIN_REQUESTS, up to this

# The adaptive drain's rows: --drain-delay is the maximum, --drain-quiet ends it early.
ADAPTIVE_MAX = "30s"
DIES_WORK_MS = 2000  # row (b): an app that dies at once on SIGTERM, serving 2 s requests
DIES_CONNS = 64
DIES_RATE = 24  # 64 connections, one request each every 2.67 s, spread evenly (no bursts)
DIES_MIN_REQUESTS = 100
DIES_WARMUP = 5.0  # two rounds of 2 s requests reach both instances

SHAPES = {
    "checks": "HAProxy checks the app's `/healthz`",
    "listener": "HAProxy checks drainit's listener `/ready`",
    "k8s": "no checks; removed via the runtime API at +1 s",
}

libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """In the child, before exec: SIGKILL when the harness dies, however it dies."""
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


def log(msg):
    print(f"[zero-downtime {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def now():
    return time.monotonic()


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def connectable(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(what, cond, timeout):
    deadline = now() + timeout
    while now() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def haproxy_cmd(sock_path, cmd):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(sock_path)
        s.sendall(cmd.encode() + b"\n")
        out = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
    return out.decode(errors="replace")


def server_states(sock_path):
    text = haproxy_cmd(sock_path, "show stat")
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines or not lines[0].startswith("# "):
        return {}
    head = lines[0][2:].split(",")
    out = {}
    for l in lines[1:]:
        row = dict(zip(head, l.split(",")))
        if row.get("pxname") == "be" and row.get("svname") in ("s1", "s2"):
            out[row["svname"]] = row
    return out


def ns_members(ns):
    """Host pids (and names) of the processes in pid namespace `ns`."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/pid") == ns:
                with open(f"/proc/{d}/comm") as f:
                    found.append(f"{d} {f.read().strip()}")
        except OSError:
            pass
    return found


class Lines:
    """Non-blocking line reader over a child's pipe; fd becomes None at EOF."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""

    def read(self):
        if self.fd is None:
            return []
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                self.fd = None
                break
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [l.decode(errors="replace") for l in lines]


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Harness:
    def __init__(self, a):
        self.a = a
        self.procs = []  # every Popen this harness started, killed in cleanup
        self.files = []
        env = os.environ
        self.quick = a.quick
        self.rate = int(env.get("ZDT_RATE", "400"))
        self.conns = int(env.get("ZDT_CONNS", "8"))
        self.warmup = float(env.get("ZDT_WARMUP", "1" if a.quick else "2"))
        self.drain_delay = float(env.get("ZDT_DRAIN_DELAY", "3"))
        self.window = float(env.get("ZDT_WINDOW", str(self.drain_delay + 2)))
        self.work_ms = int(env.get("ZDT_WORK_MS", "5"))
        self.seed = int(env.get("ZDT_SEED", str(random.SystemRandom().randrange(1, 1 << 31))))
        self.only = env.get("ZDT_ONLY", "")
        self.rng = random.Random(self.seed)
        help_text = subprocess.run([a.drainit, "--help"], capture_output=True, text=True, timeout=10).stdout
        self.has_listener = "--health-listen" in help_text
        self.peers = {
            "tini": (self.find("/usr/bin/tini-static", "/usr/bin/tini"), ["-g", "--"], "tini -g"),
            "dumb-init": (self.find("/usr/bin/dumb-init"), ["--"], "dumb-init"),
            "catatonit": (self.find("/usr/bin/catatonit", "/usr/libexec/podman/catatonit"), ["-g", "--"], "catatonit -g"),
        }

    @staticmethod
    def find(*paths):
        for p in paths:
            if os.access(p, os.X_OK):
                return os.path.realpath(p)
        raise RuntimeError(f"missing: {' or '.join(paths)} (bash scripts/deps.sh zero-downtime)")

    def rows(self):
        d = self.drain_delay
        rows = [
            dict(id="drainit-drain-file", init="drainit", app="cooperative", shape="checks",
                 note=f"--drain-file, --drain-delay {d:g}s"),
            dict(id="drainit-listener", init="drainit", app="unmodified", shape="listener",
                 note=f"--health-listen, --drain-delay {d:g}s"),
            dict(id="drainit-k8s", init="drainit", app="unmodified", shape="k8s",
                 note=f"--drain-delay {d:g}s"),
            # The adaptive drain (--drain-quiet): the same shapes with a 30 s maximum.
            dict(id="drainit-k8s-adaptive", init="drainit", app="unmodified", shape="k8s",
                 opts=["--drain-delay", ADAPTIVE_MAX, "--drain-quiet", "1s"]),
        ]
        if not self.quick:
            rows += [
                dict(id="drainit-k8s-fixed30", init="drainit", app="unmodified", shape="k8s",
                     opts=["--drain-delay", ADAPTIVE_MAX], window=33.0),
                dict(id="drainit-listener-adaptive", init="drainit", app="unmodified", shape="listener",
                     opts=["--drain-delay", ADAPTIVE_MAX, "--drain-quiet", "1s"]),
                # HAProxy checks the app's port every 500 ms, from the address the traffic comes
                # from: a quiet period shorter than the check interval lets the checks pass.
                dict(id="drainit-drain-file-adaptive", init="drainit", app="cooperative", shape="checks",
                     opts=["--drain-delay", ADAPTIVE_MAX, "--drain-quiet", "0.3s"]),
                # (b): the app dies at once on SIGTERM (no handler) and each request takes 2 s.
                dict(id="drainit-dies-adaptive", init="drainit", app="dies", shape="k8s",
                     opts=["--drain-delay", ADAPTIVE_MAX, "--drain-quiet", "1s", "--success-exit", "143"],
                     work_ms=DIES_WORK_MS, conns=DIES_CONNS, rate=DIES_RATE, min_requests=DIES_MIN_REQUESTS, warmup=DIES_WARMUP),
                dict(id="drainit-dies-fixed", init="drainit", app="dies", shape="k8s",
                     opts=["--drain-delay", "1.5s", "--success-exit", "143"], gated=False,
                     work_ms=DIES_WORK_MS, conns=DIES_CONNS, rate=DIES_RATE, min_requests=DIES_MIN_REQUESTS, warmup=DIES_WARMUP),
                dict(id="tini-dies", init="tini", app="dies", shape="k8s", note="",
                     work_ms=DIES_WORK_MS, conns=DIES_CONNS, rate=DIES_RATE, min_requests=DIES_MIN_REQUESTS, warmup=DIES_WARMUP),
            ]
        for r in rows:
            if "opts" in r:
                r["note"] = " ".join(o for o in r["opts"] if not o.startswith("/"))
        peers = ["tini"] if self.quick else ["tini", "dumb-init", "catatonit"]
        for shape in ("checks", "k8s"):
            for p in peers:
                rows.append(dict(id=f"{p}-{shape}", init=p, shape=shape, note="",
                                 app="cooperative" if shape == "checks" else "unmodified"))
        if self.only:
            rows = [r for r in rows if re.search(self.only, r["id"])]
        return rows

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, **kw)
        self.procs.append(p)
        return p

    def init_argv(self, row, name, port, lport, drain_file, check_log):
        work_ms = row.get("work_ms", self.work_ms)
        app = [self.a.zdt, "app", str(port), name, row["app"], drain_file, str(work_ms), check_log]
        d = f"{self.drain_delay:g}s"
        if row["init"] == "drainit":
            opts = {"checks": ["--drain-file", drain_file],
                    "listener": ["--health-listen", f"127.0.0.1:{lport}"],
                    "k8s": []}[row["shape"]]
            opts = opts + row.get("opts", ["--drain-delay", d])
            return self.a.drainit, [self.a.drainit, *opts, "--", *app]
        path, args, _ = self.peers[row["init"]]
        return path, [path, *args, *app]

    def start_instance(self, row, d, name, port, lport):
        drain_file = os.path.join(d, f"{name}.draining")
        check_log = os.path.join(d, f"{name}.checks")
        _, argv = self.init_argv(row, name, port, lport, drain_file, check_log)
        logf = open(os.path.join(d, f"{name}.log"), "wb")
        self.files.append(logf)
        u = self.spawn(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv],
                       stdout=logf, stderr=logf)

        unshare_exe = os.readlink(f"/proc/{u.pid}/exe")

        def init_pid():  # unshare's child, once it has exec'd the init
            for c in children(u.pid):
                try:
                    if os.readlink(f"/proc/{c}/exe") != unshare_exe:
                        return c
                except OSError:
                    pass
            if u.poll() is not None:
                raise RuntimeError(f"{name}: unshare exited {u.returncode} (see {logf.name})")
            return None

        h = wait_until(f"{name}'s init", init_pid, 10)
        ns = os.readlink(f"/proc/{h}/ns/pid")
        return dict(name=name, unshare=u, init=h, ns=ns, port=port, lport=lport, log=logf.name,
                    argv=argv, check_log=check_log)

    def haproxy_cfg(self, row, d, fe, s1, s2):
        sock = os.path.join(d, "haproxy.sock")
        lines = [
            "global",
            f"    stats socket {sock} mode 600 level admin",
            "    maxconn 2000",
            "defaults",
            "    mode http",
            "    timeout connect 1s",
            "    timeout client 10s",
            "    timeout server 5s",
            f"    timeout check {CHECK_TIMEOUT_MS}ms",
            "    retries 0",
            "    no option redispatch",
            "frontend fe",
            f"    bind 127.0.0.1:{fe}",
            "    default_backend be",
            "backend be",
            "    balance roundrobin",
        ]
        shape = row["shape"]
        if shape == "checks":
            lines += ["    option httpchk GET /healthz", f"    default-server inter {INTER_MS}ms fall {FALL} rise 2"]
            srv = lambda i: f"server {i['name']} 127.0.0.1:{i['port']} check"
        elif shape == "listener":
            lines += ["    option httpchk GET /ready", f"    default-server inter {INTER_MS}ms fall {FALL} rise 2"]
            srv = lambda i: f"server {i['name']} 127.0.0.1:{i['port']} check port {i['lport']}"
        else:
            srv = lambda i: f"server {i['name']} 127.0.0.1:{i['port']}"
        lines += [f"    {srv(s1)}", f"    {srv(s2)}"]
        path = os.path.join(d, "haproxy.cfg")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path, sock

    def run_row(self, row):
        d = os.path.join(self.a.work, row["id"])
        os.makedirs(d)
        res = dict(row)
        res.update(ran=True, valid=False, why="", signalled=False)
        fe, p1, p2, l1, l2 = free_ports(5)
        try:
            s1 = self.start_instance(row, d, "s1", p1, l1)
            s2 = self.start_instance(row, d, "s2", p2, l2)
            for inst in (s1, s2):
                wait_until(f"{inst['name']}'s app on port {inst['port']}", lambda: connectable(inst["port"]), 10)
                if row["shape"] == "listener":
                    wait_until(f"{inst['name']}'s health listener", lambda: connectable(inst["lport"]), 10)
            cfg, sock = self.haproxy_cfg(row, d, fe, s1, s2)
            hlog = open(os.path.join(d, "haproxy.log"), "w")
            self.files.append(hlog)
            hp = self.spawn(["haproxy", "-db", "-f", cfg], stdout=hlog, stderr=subprocess.PIPE)
            checked = row["shape"] != "k8s"

            def both_up():
                if hp.poll() is not None:
                    raise RuntimeError(f"haproxy exited {hp.returncode}: {hp.stderr.read().decode(errors='replace')}")
                try:
                    st = server_states(sock)
                except OSError:
                    return False
                return len(st) == 2 and all(
                    s["status"] == "UP" and (not checked or s["check_status"].startswith("L7OK"))
                    or (not checked and s["status"] == "no check") for s in st.values())

            wait_until("both servers UP in HAProxy", both_up, 10)
            out = os.path.join(d, "load.txt")
            window = row.get("window", self.window)
            max_window = max(MAX_WINDOW, window)
            min_requests = row.get("min_requests", MIN_REQUESTS)
            warmup = row.get("warmup", self.warmup)
            max_secs = int(warmup + 1 + max_window + 10)
            conns = row.get("conns", self.conns)
            rate = row.get("rate", self.rate)
            load = self.spawn([self.a.zdt, "load", str(fe), str(conns), str(rate), str(max_secs), out],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            progress = Lines(load.stdout)  # "now_ns completed" every 100 ms
            hlines = Lines(hp.stderr)
            time.sleep(warmup)
            time.sleep(self.rng.uniform(0, INTER_MS / 1000))  # lands anywhere in the check cycle
            before = [l for l in progress.read() if l]  # completed requests so far
            for line in hlines.read():  # anything HAProxy said during the warm-up
                hlog.write(f"(warm-up) {line}\n")
            pidfd = os.pidfd_open(s1["init"])  # before the signal: a fast init is gone at once

            t0 = now()
            os.kill(s1["init"], signal.SIGTERM)
            res["signalled"] = True
            c0 = int(before[-1].split()[1]) if before else 0
            done = c0
            events, exit_at, maint_at = [], None, None
            while True:
                t = now()
                # The window: at least self.window, and until the client has had enough answers
                # since the SIGTERM (counted from its last progress line before it, so a few
                # more than needed), bounded by MAX_WINDOW.
                if t >= t0 + max_window or (t >= t0 + window and done - c0 >= min_requests + 100):
                    break
                if row["shape"] == "k8s" and maint_at is None and t >= t0 + K8S_REMOVE_AFTER:
                    haproxy_cmd(sock, "set server be/s1 state maint")
                    maint_at = now() - t0
                    continue
                wake = [t0 + max_window]
                if row["shape"] == "k8s" and maint_at is None:
                    wake.append(t0 + K8S_REMOVE_AFTER)
                if t < t0 + window:
                    wake.append(t0 + window)
                fds = [f for f in (hlines.fd, progress.fd) if f is not None] + ([pidfd] if exit_at is None else [])
                r, _, _ = select.select(fds, [], [], max(0.0, min(wake) - t))
                stamp = now() - t0
                if pidfd in r:
                    exit_at = stamp
                if hlines.fd in r:
                    for line in hlines.read():
                        events.append((stamp, line))
                        hlog.write(f"+{stamp:.3f} {line}\n")
                if progress.fd in r:
                    for line in progress.read():
                        done = int(line.split()[1])
            os.close(pidfd)
            left = ns_members(s1["ns"])
            load.send_signal(signal.SIGTERM)
            try:
                load.wait(timeout=15)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait()
                raise RuntimeError("the load client did not stop")
            if load.returncode != 0:
                raise RuntimeError(f"the load client exited {load.returncode}: {load.stderr.read().decode(errors='replace')}")
            code = None
            if exit_at is not None:
                try:
                    s1["unshare"].wait(timeout=5)
                    rc = s1["unshare"].returncode
                    code = str(rc) if rc >= 0 else f"signal {-rc}"
                except subprocess.TimeoutExpired:
                    code = "?"
            down_at, down_why = None, ""
            for stamp, line in events:
                m = re.search(r"Server be/s1 is (DOWN|going DOWN for maintenance)(.*)", line)
                if m and down_at is None:
                    down_at = stamp
                    if "maintenance" in m.group(1):
                        down_why = "runtime API"
                    else:
                        c = re.search(r"code: (\d+)", m.group(2))
                        i = re.search(r'info: "([^"]*)"', m.group(2))
                        down_why = "checks: " + (c.group(1) if c else (i.group(1).lower() if i else "failed"))
            res["phase_ms"] = self.phase(s1["check_log"], t0)
            res.update(self.measure(out, t0), down_at=down_at, down_why=down_why, maint_at=maint_at,
                       exit_at=exit_at, exit_code=code, left=left,
                       haproxy_events=[f"+{s:.3f} {l}" for s, l in events])
            return res
        except Interrupted:
            raise
        except Exception as e:  # the row could not be measured: say why, go on
            res["why"] = f"error: {e}"
            res["valid"] = False
            return res
        finally:
            self.stop_all()
            res["dir"] = d

    @staticmethod
    def phase(check_log, t0):
        """How long before the SIGTERM the app last answered a health check (ms), or None."""
        try:
            with open(check_log) as f:
                before = [int(x) for x in f.read().split() if int(x) <= int(t0 * 1e9)]
        except (OSError, ValueError):
            return None
        return round((t0 * 1e9 - max(before)) / 1e6) if before else None

    def measure(self, out, t0):
        t0ns = int(t0 * 1e9)
        warm = []
        win = []
        with open(out) as f:
            for line in f:
                s, e, st, who = line.split()
                rec = (int(s), int(e), int(st), who)
                (win if rec[1] >= t0ns else warm).append(rec)
        ok = lambda st: 200 <= st < 300
        warm_fail = sum(1 for r in warm if not ok(r[2]))
        by = {w: sum(1 for r in warm if r[3] == w) for w in ("s1", "s2")}
        fails = [r for r in win if not ok(r[2])]
        kinds = {}
        for r in fails:
            k = {-1: "connect error", -2: "send error", -3: "reset/closed", -4: "timeout", -5: "bad answer"}.get(r[2], str(r[2]))
            kinds[k] = kinds.get(k, 0) + 1
        span = (max(r[1] for r in win) - t0ns) / 1e9 if win else 0
        why = ""
        if warm_fail:
            why = f"{warm_fail} failure(s) during the warm-up"
        elif not by["s1"] or not by["s2"]:
            why = f"the warm-up did not reach both instances (s1 {by['s1']}, s2 {by['s2']})"
        return dict(
            valid=not why, why=why, warm=len(warm), warm_by=by, requests=len(win), failed=len(fails),
            first_fail=(min(r[0] for r in fails) - t0ns) / 1e9 if fails else None,
            last_fail=(max(r[0] for r in fails) - t0ns) / 1e9 if fails else None,
            kinds=kinds, rate=len(win) / span if span > 0 else 0,
            s1_after_t0=sum(1 for r in win if r[3] == "s1" and r[0] >= t0ns),
            max_gap_ms=max_gap_ms([t0ns] + sorted(r[0] for r in win if r[0] >= t0ns)),
        )

    def stop_all(self):
        """Every process this harness started: SIGKILL (unshare --kill-child takes its init and
        namespace with it), then reap. Bounded."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"warning: pid {p.pid} did not die after SIGKILL")
            for s in (p.stdout, p.stderr):
                if s:
                    s.close()
        self.procs = []
        for f in self.files:
            f.close()
        self.files = []

    def gate(self, r):
        """A drainit row passes when nothing failed out of enough requests and the drain ended."""
        if r["init"] != "drainit" or not r["ran"] or not r.get("gated", True):
            return None
        if not r.get("valid"):
            return False
        return (r["requests"] >= r.get("min_requests", MIN_REQUESTS) and r["failed"] == 0 and r.get("exit_at") is not None
                and r.get("exit_code") == "0")


def max_gap_ms(starts):
    """The longest time (ms) in which the client sent nothing: a stalled client would hide failures."""
    return round(max((b - a for a, b in zip(starts, starts[1:])), default=0) / 1e6)


def fmt_t(x):
    return "—" if x is None else f"+{x:.2f} s"


def table(h, results):
    out = ["| init | app | shape | requests in window | failed | failed % | first / last failure | marked down | init exited (code) | seconds from SIGTERM to exit | left in namespace | verdict |",
           "|---|---|---|---:|---:|---:|---|---|---|---:|---|---|"]
    for r in results:
        name = "drainit" if r["init"] == "drainit" else h.peers[r["init"]][2]
        if r["init"] == "drainit":
            name = f"**drainit** ({r['note']})"
        shape = SHAPES[r["shape"]]
        if not r["ran"]:
            out.append(f"| {name} | {r['app']} | {shape} | — | — | — | — | — | — | — | — | not available in this build |")
            continue
        if "requests" not in r:
            out.append(f"| {name} | {r['app']} | {shape} | — | — | — | — | — | — | — | — | {r['why']} |")
            continue
        pct = 100.0 * r["failed"] / r["requests"] if r["requests"] else 0.0
        ff = "—" if r["first_fail"] is None else f"{fmt_t(r['first_fail'])} / {fmt_t(r['last_fail'])}"
        down = "—" if r["down_at"] is None else f"{fmt_t(r['down_at'])} ({r['down_why']})"
        ex = "still running" if r["exit_at"] is None else f"{fmt_t(r['exit_at'])} ({r['exit_code']})"
        left = "none" if not r["left"] else ", ".join(r["left"])
        g = h.gate(r)
        verdict = "PASS" if g else ("FAIL" + (f": {r['why']}" if r["why"] else "")) if g is False else (
            ("comparison" if r["init"] == "drainit" else "baseline") if r["valid"] else f"invalid: {r['why']}")
        secs = "—" if r["exit_at"] is None else f"{r['exit_at']:.2f}"
        failed = f"**{r['failed']}**" if r["init"] == "drainit" else str(r["failed"])
        out.append(f"| {name} | {r['app']} | {shape} | {r['requests']:,} | {failed} | {pct:.1f} % | {ff} | {down} | {ex} | {secs} | {left} | {verdict} |")
    return "\n".join(out)


def details(results):
    out = []
    for r in results:
        if not r["ran"] or "requests" not in r:
            continue
        kinds = ", ".join(f"{k} ×{v}" for k, v in sorted(r["kinds"].items())) or "none"
        extra = f"; removed (maint) at {fmt_t(r['maint_at'])}" if r.get("maint_at") is not None else ""
        phase = ("" if r.get("phase_ms") is None
                 else f"SIGTERM {r['phase_ms']} ms after s1's last health check; ")
        out.append(f"- `{r['id']}`: {phase}warm-up {r['warm']:,} requests (s1 {r['warm_by']['s1']:,}, s2 {r['warm_by']['s2']:,}); "
                   f"{r['rate']:.0f} requests/s in the window (longest pause {r['max_gap_ms']} ms); failures: {kinds}; "
                   f"s1 answered {r['s1_after_t0']:,} requests sent after the SIGTERM{extra}.")
    return "\n".join(out)


METHOD = """## Method

- Each row starts afresh: HAProxy 2.6 (Debian) on 127.0.0.1 in front of two instances `s1` and
  `s2`, each `unshare --pid --fork --mount-proc --kill-child INIT ... -- zdt app ...`: the init
  is PID 1 of its own pid namespace. The app (`zdt.c`) is a threaded HTTP server answering one
  request per connection after 5 ms of work; on SIGTERM it does what a typical app does: closes
  its listening socket at once, finishes the requests it has accepted, exits 0. *cooperative*:
  its `/healthz` answers 503 while the drain file exists; *unmodified*: 200 as long as it runs.
  With an init that writes no drain file the two are the same app.
- HAProxy: `option httpchk`, `inter 500ms fall 2 rise 2`, `timeout check 500ms`, `retries 0`,
  `no option redispatch`, round robin: nothing that would hide a failure. The Kubernetes shape
  has no checks; the harness sends `set server be/s1 state maint` on the runtime API 1 s after
  the SIGTERM (endpoints catching up), and drainit's `--drain-delay` stands in for the
  `preStop` sleep.
- The client (`zdt load`): 8 keep-alive connections to HAProxy, closed loop, paced to 400
  requests/s in all. After the warm-up and a random 0-500 ms (so the SIGTERM lands anywhere
  in the check cycle; the details give where it landed), the harness sends SIGTERM to s1's init
  by its host pid and keeps the load for the window: at least 5 s (drain delay + 2 s), longer
  if fewer than 1000 requests have been answered since the SIGTERM.
- Counted in the window: every request answered after the SIGTERM (those in flight at the
  SIGTERM included). Failed: any answer that is not 2xx and any connection error, reset or
  timeout (5 s). First/last failure: when those requests were sent, from the SIGTERM. Marked
  down: when HAProxy logged s1 DOWN (the reason in brackets: what the failing check got).
  Init exited: from a pidfd on the init; the code is unshare's, which passes the init's on.
  Left in namespace: the processes still in s1's pid namespace at the end of the window.
- The adaptive rows (`--drain-quiet`): the same shapes with `--drain-delay 30s` as the maximum;
  the column *seconds from SIGTERM to exit* shows how soon the drain let go once the traffic had
  gone (the fixed 30 s row beside it, for comparison). The drain-file row's checks reach the
  app's own port every 500 ms from HAProxy's address, as its traffic does: a quiet period
  (0.3 s) shorter than the check interval lets them pass. The *dies* app has no SIGTERM handler
  (killed at once, with what it has in flight) and takes 2 s a request; these rows run 64 client
  connections paced to 24 requests/s in all (each connection's requests spread over the period,
  so about 48 are in flight at any moment), a 5 s warm-up, and need 100 requests in the window. Its
  fixed short delay (1.5 s) is a comparison, not gated: it shows the requests in flight lost.
- The gate: every drainit row that ran lost 0 requests out of at least 1000 (100 for the
  *dies* rows), its init exited 0 within the window, and the row was valid (both instances
  served during the warm-up, with no failure). The peers' rows are the baseline and the
  comparison rows: measured, not gated.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drainit", required=True)
    ap.add_argument("--zdt", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report")
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        h = Harness(a)
    except Exception as e:
        log(f"error: {e}")
        return 2
    start = now()
    results = []
    try:
        rows = h.rows()
        log(f"{len(rows)} rows; {h.rate} requests/s over {h.conns} connections; warm-up {h.warmup:g} s, "
            f"window {h.window:g} s after the SIGTERM; drain delay {h.drain_delay:g} s; seed {h.seed}")
        for row in rows:
            if row["shape"] == "listener" and not h.has_listener:
                log(f"{row['id']}: not available in this build (no --health-listen in drainit --help)")
                results.append(dict(row, ran=False))
                continue
            r = h.run_row(row)
            if not r["signalled"]:  # could not even start (a port taken meanwhile, say): once more
                log(f"{row['id']}: {r['why']}; trying the row once more")
                shutil.rmtree(r["dir"], ignore_errors=True)
                r = h.run_row(row)
            results.append(r)
            if "requests" in r:
                log(f"{row['id']}: {r['failed']} failed of {r['requests']} "
                    f"(down {fmt_t(r['down_at'])}, init exited {fmt_t(r['exit_at'])} code {r['exit_code']})"
                    + ("" if r["valid"] else f"; invalid: {r['why']}"))
            else:
                log(f"{row['id']}: {r['why']}")
    except Interrupted as e:
        log(f"interrupted ({e}): cleaning up")
        h.stop_all()
        return 130
    finally:
        h.stop_all()
    elapsed = now() - start
    gates = [h.gate(r) for r in results]
    passed = sum(1 for g in gates if g is True)
    failed = sum(1 for g in gates if g is False)
    skipped = sum(1 for r in results if not r["ran"])
    meta = dict(m.split("=", 1) for m in a.meta)
    text = [table(h, results), "", details(results), ""]
    note = (f"Rate {h.rate} requests/s over {h.conns} keep-alive connections (closed loop); warm-up {h.warmup:g} s; "
            f"window {h.window:g} s after the SIGTERM; drain delay {h.drain_delay:g} s; HAProxy checks every "
            f"{INTER_MS} ms, fall {FALL}, check timeout {CHECK_TIMEOUT_MS} ms, retries 0, no redispatch; "
            f"each request {h.work_ms} ms of work in the app; seed {h.seed}; {elapsed:.0f} s.")
    text.append(note)
    report = "\n".join(text)
    print(report)
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(dict(meta=meta, results=results, seed=h.seed, elapsed=elapsed), f, indent=1, default=str)
    if a.report:
        with open(a.report, "w") as f:
            f.write(f"# make zero-downtime: results\n\n")
            for k, v in meta.items():
                f.write(f"- {k}: {v}\n")
            f.write("\n" + report + "\n\n" + METHOD)
    print()
    if skipped:
        print(f"note: {skipped} drainit row(s) not available in this build (drainit --help has no --health-listen)")
    print(f"zero-downtime: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    if not results:
        log("error: no row selected (ZDT_ONLY)")
        return 2
    return 0 if failed == 0 and (passed > 0 or h.only) else 1


if __name__ == "__main__":
    sys.exit(main())
