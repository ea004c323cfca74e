"""The fault suite's figures: run tests/cluster and print what each scenario measured.

Runs ``pytest tests/cluster`` (a three-node etcd, three daemons, faults
injected: see docs/RELIABILITY.md), which writes each scenario's figures to
``bench/results/reliability.json`` (or ``--out``), then prints them, one
block per scenario.  ``--no-run`` prints the figures of the last run
without running the suite.  The suite passes or fails on what it checks
(exactly once, nothing lost, fencing); the timings printed here are
figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def show(figures: dict[str, dict[str, object]]) -> str:
    lines = []
    for scenario in sorted(figures):
        values = figures[scenario]
        lines.append(f"{scenario} (at {values.get('at', '?')}):")
        for key, value in sorted(values.items()):
            if key != "at":
                lines.append(f"  {key:<28} {value}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reliability.json")
    parser.add_argument("--no-run", action="store_true", help="print the last run's figures only")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (e.g. -k load)")
    args = parser.parse_args()
    code = 0
    if not args.no_run:
        started = time.monotonic()
        code = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/cluster", *args.pytest_args], cwd=ROOT,
            env={**os.environ, "MAOMAO_RELIABILITY_OUT": str(args.out)}, check=False,
        ).returncode
        print(f"\nfault suite: exit {code} in {time.monotonic() - started:.0f} s")
    try:
        figures = json.loads(args.out.read_text())
    except (OSError, ValueError) as exc:
        print(f"no figures in {args.out}: {exc}", file=sys.stderr)
        return code or 1
    print(show(figures))
    return code


if __name__ == "__main__":
    sys.exit(main())
