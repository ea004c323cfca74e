"""Benchmark: start-up of the zipapp (dist/maomao) against the source install (.venv/bin/maomao).

Times, interleaved in one run so that machine noise hits both sides alike:

* ``maomao --version``;
* ``maomao ctl tool get --json`` on an embedded store (10 tools);
* ``maomao daemon`` on that store: from the start to its ``READY=1`` on
  ``NOTIFY_SOCKET`` (then SIGTERM);

each for the source install (the venv's console script), the zipapp warm
(its dependencies already extracted under ``SHIV_ROOT``) and the zipapp cold
(``SHIV_ROOT`` emptied before each run: the first run after an install or
upgrade; measured after the interleaved source and warm runs).  Python
writes the extracted dependencies' byte-code on the first runs (unless
PYTHONDONTWRITEBYTECODE is set: the runs here get a clean environment).
The zipapp runs as it does on a Debian machine: its shebang
``/usr/bin/env python3`` with the system PATH.  Prints the medians and the
ratios to the source install (target: warm within 1.3x) and writes them to
``bench/results/startup.json`` (or ``--out``).  Build the zipapp first:
``make zipapp``.  Timings are figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.daemons import NotifySocket  # noqa: E402

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Setup:
    def __init__(self, base: Path, zipapp: Path, source: Path) -> None:
        self.base = base
        self.zipapp = zipapp
        self.source = source
        self.home = base / "home"
        self.home.mkdir()
        self.shiv_root = base / "shiv"
        self.config = base / "config.ini"
        self.config.write_text(
            f"[maomao]\nimportdir = {base / 'data'}\nmember = bench\n"
            f"[store]\nbackend = embedded\npath = {base / 'store.db'}\n"
            f"[daemon]\nstate_dir = {base / 'state'}\nshutdown_grace = 5\n"
        )
        self.sockets = Path(tempfile.mkdtemp(prefix="mao-bench-nfy-", dir="/tmp"))

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": SYSTEM_PATH, "HOME": str(self.home), "LANG": "C.UTF-8",
                "SHIV_ROOT": str(self.shiv_root), **extra}  # fmt: skip

    def argv(self, side: str) -> list[str]:
        return [str(self.source)] if side == "source" else [str(self.zipapp)]

    def prepare(self, side: str) -> None:
        if side == "zipapp cold":
            shutil.rmtree(self.shiv_root, ignore_errors=True)

    def command(self, side: str, *args: str) -> float:
        self.prepare(side)
        start = time.perf_counter()
        result = subprocess.run([*self.argv(side), *args], env=self.env(), cwd=self.base,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"{side} {args}: exit {result.returncode}: {result.stderr}")
        return elapsed

    def daemon_ready(self, side: str) -> float:
        self.prepare(side)
        notify = NotifySocket(self.sockets / "notify.sock")
        try:
            start = time.perf_counter()
            process = subprocess.Popen([*self.argv(side), "daemon", "--config", str(self.config)],
                                       env=self.env(NOTIFY_SOCKET=str(notify.path)), cwd=self.base,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)  # fmt: skip
            try:
                ready = notify.wait("READY", "1", timeout=120,
                                    alive=lambda: None if process.poll() is None else "daemon exited")  # fmt: skip
                elapsed = ready.at - start
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            return elapsed
        finally:
            notify.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zipapp", type=Path, default=ROOT / "dist" / "maomao")
    parser.add_argument("--source", type=Path, default=ROOT / ".venv" / "bin" / "maomao")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    args = parser.parse_args()
    if not args.zipapp.is_file():
        raise SystemExit(f"{args.zipapp} not found: run 'make zipapp' first")

    base = Path(tempfile.mkdtemp(prefix="mao-bench-startup-"))
    setup = Setup(base, args.zipapp.resolve(), args.source.resolve())
    try:
        for number in range(10):
            setup.command("source", "ctl", "tool", "add", f"tool-{number}", "Ada", f"ghcr.io/lab/t{number}:1",
                          f"https://git.example.org/d{number}.git", "https://git.example.org/c.git", "pages",
                          "--config", str(setup.config))  # fmt: skip
        cases: dict[str, Callable[[str], float]] = {
            "--version": lambda side: setup.command(side, "--version"),
            "ctl tool get --json": lambda side: setup.command(side, "ctl", "tool", "get", "--json",
                                                              "--config", str(setup.config)),
            "daemon to READY=1": setup.daemon_ready,
        }
        sides = ["source", "zipapp warm", "zipapp cold"]
        # warm-up: byte-code caches of the source install, the zipapp's extraction
        for case in cases.values():
            case("source")
            case("zipapp warm")
        samples: dict[str, dict[str, list[float]]] = {name: {side: [] for side in sides} for name in cases}
        # source and warm zipapp interleaved; the cold runs after them (each re-extracts 27 MB and
        # writes its byte-code: disk traffic that would slow the warm runs next to it)
        for _ in range(args.repeat):
            for name, case in cases.items():
                for side in ("source", "zipapp warm"):
                    samples[name][side].append(case(side))
        for _ in range(args.repeat):
            for name, case in cases.items():
                samples[name]["zipapp cold"].append(case("zipapp cold"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(setup.sockets, ignore_errors=True)

    results = []
    print(f"start-up, median of {args.repeat} (seconds); zipapp {args.zipapp.stat().st_size / 1e6:.1f} MB\n")
    print(f"{'command':<22} {'source':>8} {'zip warm':>9} {'zip cold':>9} {'warm/src':>9} {'cold/src':>9}")
    for name in cases:
        med = {side: statistics.median(samples[name][side]) for side in sides}
        warm_ratio = med["zipapp warm"] / med["source"]
        cold_ratio = med["zipapp cold"] / med["source"]
        print(f"{name:<22} {med['source']:>8.3f} {med['zipapp warm']:>9.3f} {med['zipapp cold']:>9.3f}"
              f" {warm_ratio:>8.2f}x {cold_ratio:>8.2f}x")  # fmt: skip
        results.append({"command": name, "median_s": med, "warm_ratio": warm_ratio, "cold_ratio": cold_ratio,
                        "samples_s": samples[name]})  # fmt: skip
    worst = max(r["warm_ratio"] for r in results)
    print(f"\nwarm zipapp vs source install: worst {worst:.2f}x (target: within 1.3x)"
          f" -> {'met' if worst <= 1.3 else 'NOT met'}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "startup", "repeat": args.repeat, "zipapp": str(args.zipapp), "source": str(args.source),
        "zipapp_bytes": args.zipapp.stat().st_size, "python": platform.python_version(),
        "system_python": subprocess.run(["/usr/bin/env", "python3", "--version"], env={"PATH": SYSTEM_PATH},
                                        capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(), "results": results, "target_warm_ratio": 1.3, "worst_warm_ratio": worst,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
