"""Benchmark: what a container run costs through maomao against ``podman run --rm``.

In one run it starts its own Podman (``tests.support.podman``: storage and
service of its own), builds ``localhost/maomao-bench/noop:1`` from
busybox-static with ``CMD ["true"]`` (a tool that exits at once), makes a
bare git data remote, starts one ``maomao daemon`` on an embedded store with
``DOCKER_HOST`` at that Podman, registers the tool ``noop`` (container
runtime), and then, after one warm-up of each, alternates ``--runs`` times:

* ``maomao ctl tool run noop --wait``: wall time of the ctl process, and
  when each of its lines arrived (request written, claim seen, run record
  seen); the daemon's end-of-run log line for the same run id gives its
  total and its phases: git (clone or fetch + fast-forward), run (the
  container runner: image check, create, start, the exit, the output; the
  container's removal comes after the run, off its path),
  commit (commit + push) and record (the run record);
* ``podman run --rm`` of the same image on the same storage (the podman
  CLI, not the service: what a user would compare against);
* ``maomao ctl tool get noop --json``: the Python CLI's start-up plus one
  read, to show how much of the ctl side is just starting ctl.

"ctl + claim" is the ctl's wall time minus the daemon's total for the run:
ctl start-up, reading the tool and the members, writing the request, the
daemon seeing it and claiming it, and ctl seeing the record and exiting.

Prints medians (and p90) and writes every sample to
``bench/results/run_overhead.json`` (or ``--json``).  Targets (issue 4):
the container phase within 1.2x of ``podman run``, everything else (maomao
total minus the container phase) under 300 ms.  Timings are figures, not
pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.daemons import NotifySocket, daemon_env  # noqa: E402
from tests.support.podman import Podman  # noqa: E402

IMAGE = "localhost/maomao-bench/noop:1"
TOOL = "noop"
MEMBER = "bench"
BIN = Path(sys.executable).parent
MAOMAO = BIN / "maomao"
MAOCTL = BIN / "maoctl"
PHASES = ("git", "run", "commit", "record")
#: the daemon's end-of-run line (maomao.daemon.executor)
RUN_LINE = re.compile(
    r"run (?P<id>\S+) of (?P<tool>\S+): (?P<state>\S+) \((?P<outcome>[^)]*)\) "
    r"in (?P<total>\d+) ms \((?P<phases>[^)]*)\)"
)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bench:
    """The Podman, the daemon and the ctl of one benchmark run, all under ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.podman = Podman(work / "podman")
        self.podman.root.mkdir(parents=True)
        self.home = work / "home"
        self.home.mkdir()
        self.config = work / "config.ini"
        self.stderr_path = work / "daemon.log"
        self.notify: NotifySocket | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.env = daemon_env(self.home, {"DOCKER_HOST": self.podman.url})
        self.remote = work / "remotes" / f"{TOOL}.git"

    # -- set-up and tear-down

    def start(self) -> None:
        self.podman.start()
        self.podman.build_image(IMAGE, cmd=["true"])
        self.remote.parent.mkdir()
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.remote)], check=True)
        self.config.write_text(
            f"[maomao]\nimportdir = {self.work / 'import'}\nmember = {MEMBER}\n\n"
            f"[store]\nbackend = embedded\npath = {self.work / 'store' / 'store.db'}\n\n"
            f"[daemon]\nstate_dir = {self.work / 'state'}\nmax_parallel = 4\nshutdown_grace = 10\nkill_grace = 2\n"
        )
        self.notify = NotifySocket(self.work / "notify.sock")
        with self.stderr_path.open("ab") as stderr:
            self.daemon = subprocess.Popen(
                [str(MAOMAO), "daemon", "--config", str(self.config)],
                env={**self.env, "NOTIFY_SOCKET": str(self.notify.path)}, cwd=self.work,
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
            )
        self.notify.wait("READY", "1", timeout=60, alive=self.exited)
        added = self.ctl("tool", "add", TOOL, "Bench", IMAGE, str(self.remote), "https://git.example.org/c.git",
                         "bench")  # fmt: skip
        if added.returncode != 0:
            raise RuntimeError(f"tool add failed: {added.stderr.strip()}")

    def exited(self) -> str | None:
        if self.daemon is None or self.daemon.poll() is None:
            return None
        return f"daemon exited with {self.daemon.returncode}:\n{self.daemon_log()[-3000:]}"

    def daemon_log(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        try:
            if self.daemon is not None and self.daemon.poll() is None:
                self.daemon.send_signal(signal.SIGTERM)
                try:
                    self.daemon.wait(30)
                except subprocess.TimeoutExpired:
                    self.daemon.kill()
                    self.daemon.wait(10)
            if self.notify is not None:
                self.notify.close()
        finally:
            self.podman.stop()

    # -- the measured commands

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MAOCTL), *args, "--config", str(self.config)], env=self.env, cwd=self.home,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )

    def maomao_run(self) -> dict[str, object]:
        """``maoctl tool run noop --wait``: wall time, when its lines came, and the daemon's figures for it."""
        argv = [str(MAOCTL), "tool", "run", TOOL, "--wait", "--claim-timeout", "30", "--config", str(self.config)]
        began = time.perf_counter()
        process = subprocess.Popen(
            argv, env=self.env, cwd=self.home, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        assert process.stdout is not None
        lines: list[tuple[float, str]] = []
        for line in process.stdout:
            lines.append((time.perf_counter() - began, line.rstrip("\n")))
        stderr = process.stderr.read() if process.stderr else ""
        code = process.wait(120)
        wall = time.perf_counter() - began
        output = "\n".join(text for _, text in lines)
        if code != 0:
            raise RuntimeError(f"maoctl tool run exited {code}:\n{output}\n{stderr}")
        found = re.search(r"^run:\s+(\S+)", output, re.MULTILINE)
        if not found:
            raise RuntimeError(f"no run id in maoctl's report:\n{output}")
        run_id = found.group(1)

        def at(prefix: str) -> float | None:
            return next((round(t * 1000, 1) for t, text in lines if text.startswith(prefix)), None)

        daemon = self.daemon_figures(run_id)
        sample: dict[str, object] = {
            "run_id": run_id,
            "wall_ms": round(wall * 1000, 1),
            "requested_at_ms": at("requested run"),
            "claimed_at_ms": at("claimed by") or at("running on"),
            "recorded_at_ms": at("succeeded") or at("run:"),
            **daemon,
        }
        sample["ctl_and_claim_ms"] = round(wall * 1000 - float(daemon["daemon_total_ms"]), 1)  # type: ignore[arg-type]
        return sample

    def daemon_figures(self, run_id: str, timeout: float = 10.0) -> dict[str, object]:
        """The daemon's end-of-run line for ``run_id``: total and phases, in ms."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.daemon_log().splitlines():
                found = RUN_LINE.search(line)
                if found and found.group("id") == run_id:
                    phases = {}
                    for part in found.group("phases").split(","):
                        name, _, value = part.strip().partition(" ")
                        phases[name] = float(value)
                    return {
                        "daemon_state": found.group("state"),
                        "daemon_outcome": found.group("outcome"),
                        "daemon_total_ms": float(found.group("total")),
                        "phases_ms": phases,
                    }
            if time.monotonic() > deadline:
                raise RuntimeError(f"no end-of-run line for {run_id} in the daemon's log:\n{self.daemon_log()[-3000:]}")
            time.sleep(0.05)

    def podman_run(self) -> float:
        began = time.perf_counter()
        self.podman.podman("run", "--rm", IMAGE)
        return round((time.perf_counter() - began) * 1000, 1)

    def tool_get(self) -> float:
        began = time.perf_counter()
        done = self.ctl("tool", "get", TOOL, "--json")
        elapsed = round((time.perf_counter() - began) * 1000, 1)
        if done.returncode != 0:
            raise RuntimeError(f"maoctl tool get exited {done.returncode}: {done.stderr.strip()}")
        return elapsed


def summarise(maomao: list[dict[str, object]], podman: list[float], tool_get: list[float]) -> dict[str, object]:
    def value(sample: dict[str, object], key: str) -> float | None:
        found = sample.get(key)
        return float(found) if isinstance(found, int | float) else None

    def column(key: str) -> list[float]:
        return [v for s in maomao if (v := value(s, key)) is not None]

    def phases(sample: dict[str, object]) -> dict[str, float]:
        found = sample["phases_ms"]
        assert isinstance(found, dict)
        return {str(k): float(v) for k, v in found.items()}

    def between(later: str, earlier: str) -> list[float]:
        pairs = [(value(s, later), value(s, earlier)) for s in maomao]
        return [b - a for b, a in pairs if b is not None and a is not None]

    wall = column("wall_ms")
    container = [phases(s).get("run", 0.0) for s in maomao]
    rest = [w - c for w, c in zip(wall, container, strict=True)]
    daemon_total = column("daemon_total_ms")
    daemon_other = [t - sum(phases(s).values()) for t, s in zip(daemon_total, maomao, strict=True)]
    figures: dict[str, dict[str, float]] = {}

    def put(name: str, values: list[float]) -> None:
        figures[name] = {"median": round(median(values), 1), "p90": round(percentile(values, 0.9), 1)}

    put("maomao_total", wall)
    put("podman_run", podman)
    put("daemon_total", daemon_total)
    for name in PHASES:
        put(f"phase_{name}", [phases(s).get(name, 0.0) for s in maomao])
    put("daemon_other", daemon_other)
    put("ctl_and_claim", column("ctl_and_claim_ms"))
    put("ctl_tool_get", tool_get)
    put("ctl_request_written_at", column("requested_at_ms"))
    put("ctl_claim_seen_at", column("claimed_at_ms"))
    put("ctl_request_to_claim_seen", between("claimed_at_ms", "requested_at_ms"))
    put("ctl_record_seen_to_exit", between("wall_ms", "recorded_at_ms"))
    put("rest", rest)
    ratio = figures["maomao_total"]["median"] / figures["podman_run"]["median"]
    container_ratio = figures["phase_run"]["median"] / figures["podman_run"]["median"]
    return {
        "ms": figures,
        "ratio_maomao_vs_podman_run": round(ratio, 2),
        "ratio_container_phase_vs_podman_run": round(container_ratio, 2),
        "target_container_ratio": 1.2,
        "container_ratio_met": container_ratio <= 1.2,
        "target_rest_ms": 300,
        "rest_met": figures["rest"]["median"] < 300,
    }


def report(summary: dict[str, object], runs: int) -> None:
    ms: dict[str, dict[str, float]] = summary["ms"]  # type: ignore[assignment]

    def row(label: str, key: str, note: str = "") -> None:
        print(f"{label:44s} {ms[key]['median']:8.1f} ms  p90 {ms[key]['p90']:8.1f} ms{note}")

    def met(ok: object) -> str:
        return "met" if ok else "NOT met"

    print(f"medians of {runs} alternating runs (warm-up excluded)")
    row("maomao ctl tool run --wait (total)", "maomao_total")
    row("podman run --rm", "podman_run")
    print(f"{'ratio maomao total / podman run':44s} {summary['ratio_maomao_vs_podman_run']:8.2f}x")
    print("where maomao's time goes:")
    row("  ctl + claim (wall - daemon total)", "ctl_and_claim")
    row("    ctl start-up + request written", "ctl_request_written_at")
    row("    request written -> claim seen by ctl", "ctl_request_to_claim_seen")
    row("    run record seen -> ctl exit", "ctl_record_seen_to_exit")
    row("  daemon total", "daemon_total")
    row("    git (clone/fetch + fast-forward)", "phase_git")
    row("    container (runner)", "phase_run")
    row("    commit and push", "phase_commit")
    row("    record", "phase_record")
    row("    daemon, outside the phases", "daemon_other")
    row("maoctl tool get --json (start-up + a read)", "ctl_tool_get")
    print(
        f"{'container phase / podman run':44s} {summary['ratio_container_phase_vs_podman_run']:8.2f}x"
        f"  (target <= 1.2x: {met(summary['container_ratio_met'])})"
    )
    row("the rest (total - container phase)", "rest", f"  (target < 300 ms: {met(summary['rest_met'])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "run_overhead.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maomao-bench-run-", dir="/tmp"))
    bench = Bench(work)
    try:
        bench.start()
        # warm-up (not counted): the first run clones the data repository
        warm = {"maomao": bench.maomao_run(), "podman_ms": bench.podman_run(), "tool_get_ms": bench.tool_get()}
        maomao: list[dict[str, object]] = []
        podman: list[float] = []
        tool_get: list[float] = []
        for index in range(args.runs):
            # alternate which goes first, so neither always follows the other
            if index % 2 == 0:
                maomao.append(bench.maomao_run())
                podman.append(bench.podman_run())
            else:
                podman.append(bench.podman_run())
                maomao.append(bench.maomao_run())
            tool_get.append(bench.tool_get())
            failed = [s for s in maomao if s["daemon_state"] != "succeeded"]
            if failed:
                raise RuntimeError(f"a run did not succeed: {failed[0]}")
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(maomao, podman, tool_get)
    report(summary, args.runs)
    result = {
        "runs": args.runs,
        "image": IMAGE,
        "summary": summary,
        "samples": {"maomao": maomao, "podman_run_ms": podman, "ctl_tool_get_ms": tool_get},
        "warm_up": warm,
        "python": sys.version.split()[0],
        "podman": subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
