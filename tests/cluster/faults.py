"""The fault suite's tools: a three-node etcd, runs counted in git, figures written for docs/RELIABILITY.md.

Runs are counted twice, independently of what maomao says about them: by
the commits on each tool's bare remote (their ``Maomao-Run`` trailers) and
by the execution ledger the tools append to (tests/daemon/checks.py).
"""

from __future__ import annotations

import json
import os
import statistics
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maomao.model import Run, parse_iso
from tests.support.daemons import Daemon, Daemons
from tests.support.etcd import EtcdCluster
from tests.support.git import git

#: where the suite writes its figures (one entry per scenario, the last run's)
FIGURES = Path(
    os.environ.get("MAOMAO_RELIABILITY_OUT", Path(__file__).parents[2] / "bench" / "results" / "reliability.json")
)


def record_figures(scenario: str, **figures: Any) -> None:
    """Keep ``figures`` of ``scenario`` (the file holds the last run of each scenario)."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    try:
        known: dict[str, Any] = json.loads(FIGURES.read_text())
    except (OSError, ValueError):
        known = {}
    known[scenario] = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **figures}
    FIGURES.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    print(f"\n{scenario}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))


def collector(ledger: Path, then: str = "") -> str:
    """A process tool: appends ``SLOT MEMBER RUN_ID`` to ``ledger/<tool>`` and writes ``out/<run-id>`` to commit."""
    tail = f"; {then}" if then else ""
    return (
        "sh -c 'echo \"$MAOMAO_SLOT $MAOMAO_MEMBER $MAOMAO_RUN_ID\" >> "
        f"{ledger}/$MAOMAO_TOOL; mkdir -p out; echo $MAOMAO_MEMBER > out/$MAOMAO_RUN_ID{tail}'"
    )


def commits(remote: str | Path, ref: str = "main") -> Counter[str]:
    """How many commits on ``ref`` of a bare remote carry each ``Maomao-Run``."""
    if not git("-C", remote, "rev-parse", "--verify", "--quiet", ref, check=False).strip():
        return Counter()
    out = git("-C", remote, "log", "--format=%(trailers:key=Maomao-Run,valueonly)", ref)
    return Counter(line.strip() for line in out.splitlines() if line.strip())


def branches(remote: str | Path, under: str = "maomao/") -> list[str]:
    """The branches of a repository whose names start with ``under``."""
    out = git("-C", remote, "for-each-ref", "--format=%(refname:short)", f"refs/heads/{under}")
    return out.split()


def leader(etcd: EtcdCluster) -> int | None:
    """The index of the running etcd node that leads the cluster now (None: no leader among them)."""
    for index, node in enumerate(etcd.nodes):
        if node.process is None or node.process.poll() is not None:
            continue
        request = urllib.request.Request(node.endpoint + "/v3/maintenance/status", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=3) as response:
                status = json.loads(response.read())
        except (OSError, ValueError):
            continue  # not answering (an election under way)
        if status.get("leader") and status["header"]["member_id"] == status["leader"]:
            return index
    return None


def lateness(runs: list[Run]) -> dict[str, float]:
    """How late scheduled runs started after their slot: p50, p99, max (seconds)."""
    late = sorted(
        (parse_iso(r.started) - parse_iso(r.slot)).total_seconds()
        for r in runs if r.trigger == "schedule" and r.started and r.state == "succeeded"
    )
    if not late:
        return {}
    p99 = late[min(len(late) - 1, round(0.99 * (len(late) - 1)))]
    return {"lateness_p50_s": round(statistics.median(late), 3), "lateness_p99_s": round(p99, 3),
            "lateness_max_s": round(late[-1], 3)}


def stop_all(cluster: Daemons, daemons: list[Daemon]) -> None:
    """Every daemon still running (none died), then each stopped with SIGTERM and exiting 0."""
    for daemon in daemons:
        assert daemon.running, daemon.exited()
    for daemon in daemons:
        assert daemon.stop(timeout=60) == 0, cluster.logs()
