"""Benchmark: one daemon scheduling 1,000 and 10,000 tools on ``@every 1m``.

For each store (embedded, etcd) and each tool count, in one run, it starts
a fresh store and one ``maomao daemon`` (max_parallel 64), registers the
tools (``--runtime process``, command ``date +%s.%N``: a no-op that says
when it started), schedules them, waits for the daemon's READY=1, and
measures over a window (default 300 s):

* start lateness: slot time -> the tool's process start (the first line of
  its run log), p50 and p99;
* store writes per run: store revisions spent in the window / runs recorded
  (every write, claim, claim update and run record, bumps the revision);
* daemon CPU seconds and peak RSS (``/proc/<pid>``) over the window;
* the same daemon idle: the tools registered but unscheduled, CPU over
  ``--idle`` seconds, as a percentage of one core.

Prints the figures and writes them to ``bench/results/scheduler.json``.
Targets (DESIGN, issue 3): p99 lateness under 100 ms at 1,000 tools on etcd,
at most 5 store writes per run, idle CPU under 1 %.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maomao.model import Schedule, Tool, utc_iso  # noqa: E402
from maomao.schedule import parse_slot_id  # noqa: E402
from maomao.store import Delete, Put, Store, inline, run_inline  # noqa: E402
from maomao.store.embedded import EmbeddedStore  # noqa: E402
from maomao.store.etcd import EtcdStore  # noqa: E402
from maomao.store.keys import Keys  # noqa: E402
from tests.support.etcd import EtcdCluster  # noqa: E402

KEYS = Keys("/bench/")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def batched_put(store: Store, items: list[tuple[str, bytes]]) -> None:
    for start in range(0, len(items), 100):
        run_inline(store.txn([], [Put(k, v) for k, v in items[start : start + 100]]))


def register(store: Store, count: int) -> None:
    tools = [
        Tool(f"t{i:05d}", "bench", "busybox", "/d", "/c", "bench", command="date +%s.%N", runtime="process")
        for i in range(count)
    ]
    batched_put(store, [(KEYS.tool(t.name), t.to_value()) for t in tools])


def schedule_all(store: Store, count: int) -> None:
    created = utc_iso(datetime.now(UTC))
    batched_put(
        store,
        [
            (KEYS.schedule(f"t{i:05d}"), Schedule(name=f"t{i:05d}", expression="@every 1m", created=created).to_value())
            for i in range(count)
        ],
    )


def unschedule_all(store: Store, count: int) -> None:
    for start in range(0, count, 100):
        run_inline(store.txn([], [Delete(KEYS.schedule(f"t{i:05d}")) for i in range(start, min(count, start + 100))]))


def wait_ready(sock: socket.socket, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if b"READY=1" in sock.recv(65536):
                return
        except TimeoutError:
            break
    raise RuntimeError("daemon not READY")


def lateness(importdir: Path, since: datetime) -> list[float]:
    """Seconds from slot to process start, for every run log of slots since ``since``."""
    values = []
    for log in (importdir / ".maomao" / "logs").glob("*/*.log"):
        slot = parse_slot_id(log.stem)
        if slot < since:
            continue
        first = log.read_text().split("\n", 1)[0].strip()
        try:
            values.append(float(first) - slot.timestamp())
        except ValueError:
            continue
    return values


def measure(backend: str, count: int, window: float, idle: float, work: Path) -> dict[str, object]:
    work.mkdir(parents=True)
    cluster = None
    if backend == "etcd":
        cluster = EtcdCluster(1)
        cluster.start()
        store: Store = EtcdStore(cluster.endpoints, offload=inline)
        store_lines = f"backend = etcd\nendpoints = {cluster.endpoints[0]}\n"
    else:
        store = EmbeddedStore(work / "store.db", offload=inline)
        store_lines = f"backend = embedded\npath = {work / 'store.db'}\n"
    config = work / "config.ini"
    config.write_text(
        f"[maomao]\nimportdir = {work / 'data'}\nmember = bench\n[store]\n{store_lines}prefix = /bench/\n"
        f"[daemon]\nstate_dir = {work / 'state'}\nmax_parallel = 64\nkeep_runs = 1000\n"
    )
    register(store, count)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(work / "notify.sock"))
    env = {**os.environ, "NOTIFY_SOCKET": str(work / "notify.sock"), "HOME": str(work), "MAOMAO_LOG_LEVEL": "WARNING"}
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "maomao"), "daemon", "--config", str(config)],
        env=env, stderr=open(work / "daemon.log", "wb"),  # noqa: SIM115
    )
    try:
        wait_ready(notify)
        # idle: tools registered, nothing scheduled
        cpu0 = cpu_seconds(daemon.pid)
        time.sleep(idle)
        idle_cpu = (cpu_seconds(daemon.pid) - cpu0) / idle * 100
        schedule_all(store, count)
        # start the window at the next minute so every slot in it is whole
        start = (int(time.time()) // 60 + 1) * 60
        time.sleep(max(0.0, start - time.time()))
        rev0 = run_inline(store.range(KEYS.members)).revision
        runs0 = len(run_inline(store.range(KEYS.all_runs)).kvs)
        cpu0 = cpu_seconds(daemon.pid)
        time.sleep(window)
        cpu = cpu_seconds(daemon.pid) - cpu0
        rev1 = run_inline(store.range(KEYS.members)).revision
        runs = len(run_inline(store.range(KEYS.all_runs)).kvs) - runs0
        rss = peak_rss_mib(daemon.pid)
        late = lateness(work / "data", datetime.fromtimestamp(start, UTC))
        unschedule_all(store, count)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        notify.close()
        run_inline(store.aclose())
        if cluster:
            cluster.destroy()
    expected = count * int(window // 60)
    return {
        "backend": backend,
        "tools": count,
        "window_seconds": window,
        "runs_recorded": runs,
        "slots_expected": expected,
        "lateness_p50_ms": round(percentile(late, 0.5) * 1000, 1),
        "lateness_p99_ms": round(percentile(late, 0.99) * 1000, 1),
        "lateness_samples": len(late),
        "store_writes_per_run": round((rev1 - rev0) / runs, 2) if runs else None,
        "daemon_cpu_seconds": round(cpu, 2),
        "daemon_cpu_percent": round(cpu / window * 100, 1),
        "daemon_peak_rss_mib": round(rss, 1),
        "idle_cpu_percent": round(idle_cpu, 2),
        "lateness_mean_ms": round(statistics.fmean(late) * 1000, 1) if late else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--backends", nargs="+", default=["embedded", "etcd"])
    parser.add_argument("--window", type=float, default=300.0)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scheduler.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="maomao-bench-scheduler-"))
    results = []
    for backend in args.backends:
        for count in args.tools:
            figures = measure(backend, count, args.window, args.idle, root / f"{backend}-{count}")
            results.append(figures)
            print(
                f"{backend:8s} {count:6d} tools: runs {figures['runs_recorded']}/{figures['slots_expected']}, "
                f"lateness p50 {figures['lateness_p50_ms']} ms p99 {figures['lateness_p99_ms']} ms, "
                f"writes/run {figures['store_writes_per_run']}, daemon CPU {figures['daemon_cpu_seconds']} s "
                f"({figures['daemon_cpu_percent']} %), peak RSS {figures['daemon_peak_rss_mib']} MiB, "
                f"idle CPU {figures['idle_cpu_percent']} %",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "cpus": os.cpu_count()}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
