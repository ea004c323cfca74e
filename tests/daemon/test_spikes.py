"""Spike detection after runs, end to end: a daemon, a real journald, the store, a webhook, maoctl."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from maomao.model import Spike
from maomao.spikes.alerts import MESSAGE_ID
from tests.support.daemons import Daemons, StoreSpec, embedded_spec
from tests.support.git import git
from tests.support.journald import Journald
from tests.support.webhook import Hook

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]
# the next value of the series: the line after as many as there are control files already
NEXT_VALUE = "sh -c 'n=$(ls control-*.csv | wc -l); sed -n \"$((n + 1))p\" {values} > control-$n.csv'"


def seed(remote: str, tmp: Path, values: list[float]) -> None:
    """The data remote already holds ``control-0..`` with ``values`` (what earlier runs collected)."""
    work = tmp / "seed"
    git("clone", "-q", remote, work)
    for n, value in enumerate(values):
        (work / f"control-{n}.csv").write_text(f"{value:g}\n")
    git("-C", work, "add", "-A")
    git("-C", work, "commit", "-q", "-m", "earlier runs")
    git("-C", work, "push", "-q", "origin", "HEAD:main")


@pytest.mark.timeout(120)
def test_a_spike_goes_to_the_run_the_journal_the_store_and_the_webhook(
    tmp_path: Path, make_daemons: MakeDaemons, journald: Journald
) -> None:
    hook = Hook()
    try:
        cluster = make_daemons(embedded_spec(tmp_path))
        cluster.start("alpha", env={"MAOMAO_SPIKES_WEBHOOK": hook.url})
        tool = f"spiky-{uuid.uuid4().hex[:6]}"
        remote = cluster.records.data_remote(tool)
        history = [100 + (7 * n) % 11 - 5 for n in range(40)]  # 95..105, no spike
        seed(remote, tmp_path, history)
        values = tmp_path / "values.txt"
        values.write_text("".join(f"{v:g}\n" for v in [*history, 101, 400]))
        cluster.records.add_tool(tool, NEXT_VALUE.format(values=values))

        calm = cluster.ctl("tool", "run", tool, "--claim-timeout", "20", timeout=90)
        assert calm.returncode == 0, calm
        assert re.search(r"spikes:\s+control: 101 against [\d.]+ \(.*\) no spike at control-40.csv", calm.stdout), calm

        spiky = cluster.ctl("tool", "run", tool, "--claim-timeout", "20", timeout=90)
        assert spiky.returncode == 0, spiky  # a spike is news, not a failure
        assert re.search(r"spikes:\s+control: 400 against [\d.]+ \(\+\d+\.\d%, score [\d.]+\) SPIKE", spiky.stdout)
        run_id = re.search(r"^run:\s+(\S+)", spiky.stdout, re.MULTILINE)[1]  # type: ignore[index]

        (run,) = [r for r in cluster.records.runs(tool) if r.id == run_id]
        (entry,) = run.detection
        assert entry["metric"] == "control" and entry["value"] == 400 and entry["spike"] is True
        assert entry["point"] == "control-41.csv" and entry["points"] == 42 and entry["new_points"] == 1

        stored = cluster.records.all(cluster.records.keys.spikes(tool), Spike)
        (spike,) = stored.values()
        assert (spike.run_id, spike.metric, spike.value, spike.member) == (run_id, "control", 400, "alpha")
        assert 0 < spike.score <= 1 and spike.deviation is not None and spike.deviation > 2

        (logged,) = journald.entries(f"MESSAGE_ID={MESSAGE_ID}", f"MAOMAO_TOOL={tool}")
        assert logged["MAOMAO_RUN_ID"] == run_id and logged["MAOMAO_VALUE"] == "400" and logged["PRIORITY"] == "4"

        listed = cluster.ctl("tool", "get", tool)  # still fine
        assert listed.returncode == 0
        spikes = cluster.ctl("spikes", "get", tool, "--json")
        assert spikes.returncode == 0, spikes
        (shown,) = json.loads(spikes.stdout)
        assert shown["run_id"] == run_id and shown["value"] == 400
        table = cluster.ctl("spikes", "get")
        assert tool in table.stdout and "400" in table.stdout

        deadline = time.monotonic() + 10
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.1)
        (posted,) = hook.received
        assert posted["tool"] == tool and posted["run_id"] == run_id and posted["type"] == "maomao.spike"
    finally:
        hook.close()
