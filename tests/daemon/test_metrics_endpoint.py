"""``[metrics] listen``: a real ``maomao daemon`` serves Prometheus metrics, read with prometheus_client's parser."""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.daemons import Daemons, StoreSpec, embedded_spec, wait_for
from tests.support.etcd import free_port

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]


def scrape(port: int) -> dict[str, list[Sample]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.timeout(90)
def test_metrics_of_a_run(tmp_path: Path, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    port = free_port()
    daemon = cluster.start("alpha", env={"MAOMAO_METRICS_LISTEN": f"127.0.0.1:{port}"})
    cluster.records.add_tool("quick", "true")
    cluster.records.request("r1", "quick")
    wait_for("the run's record", lambda: [r for r in cluster.records.runs("quick") if r.state == "succeeded"], 30)

    def counted() -> dict[str, list[Sample]] | None:
        families = scrape(port)
        runs = families.get("maomao_runs", [])
        return families if value(runs, "maomao_runs_total", tool="quick", state="succeeded") == 1 else None

    families = wait_for("maomao_runs_total of the run", counted, 10)
    duration = families["maomao_run_duration_seconds"]
    assert value(duration, "maomao_run_duration_seconds_count", tool="quick") == 1
    assert value(duration, "maomao_run_duration_seconds_bucket", tool="quick", le="+Inf") == 1
    assert value(families["maomao_members"], "maomao_members") == 1
    assert value(families["maomao_outbox_records"], "maomao_outbox_records") == 0
    assert value(families["maomao_runs_active"], "maomao_runs_active") == 0
    store = families["maomao_store_request_seconds"]
    for op in ("grant", "txn", "range"):
        count = value(store, "maomao_store_request_seconds_count", op=op)
        assert count is not None and count >= 1, (op, store)
    assert "maomao_store_errors" in families and "maomao_spikes" in families

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert raised.value.code == 404
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_an_address_in_use_does_not_stop_the_daemon(tmp_path: Path, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = cluster.start("alpha", env={"MAOMAO_METRICS_LISTEN": f"127.0.0.1:{port}"})  # READY=1 comes
        assert daemon.running
        cluster.records.add_tool("quick", "true")
        cluster.records.request("r1", "quick")
        wait_for("the run's record", lambda: [r for r in cluster.records.runs("quick") if r.state == "succeeded"], 30)
        assert daemon.running
        assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_no_endpoint_by_default(tmp_path: Path, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha")
    assert daemon.process is not None
    assert listening_ports(daemon.process.pid) == set()
    port = free_port()
    with_metrics = cluster.start("beta", env={"MAOMAO_METRICS_LISTEN": f"127.0.0.1:{port}"})
    assert with_metrics.process is not None
    assert listening_ports(with_metrics.process.pid) == {port}
    assert with_metrics.stop() == 0
    assert daemon.stop() == 0
