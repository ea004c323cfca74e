"""The metrics registry's exposition format, read back with prometheus_client's parser; the
instrumented store; the HTTP answers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from maomao.errors import StoreUnavailable
from maomao.metrics import InstrumentedStore, Metrics, Registry, answer, serve_metrics
from maomao.store import Put
from maomao.store.embedded import EmbeddedStore


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def test_counter_with_labels_and_help_type_lines() -> None:
    registry = Registry()
    runs = registry.counter("maomao_runs_total", "Runs, by tool and state.", ("tool", "state"))
    runs.inc(tool="a", state="succeeded")
    runs.inc(tool="a", state="succeeded")
    runs.inc(2.5, tool="b", state="failed")
    text = registry.render()
    assert "# HELP maomao_runs_total Runs, by tool and state.\n# TYPE maomao_runs_total counter\n" in text
    assert text.endswith("\n")
    (family,) = text_string_to_metric_families(text)
    assert family.name == "maomao_runs" and family.type == "counter"
    got = {(s.labels["tool"], s.labels["state"]): s.value for s in family.samples}
    assert got == {("a", "succeeded"): 2.0, ("b", "failed"): 2.5}


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    counter = registry.counter("x_total", 'help with \\ backslash\nand "newline"', ("tool",))
    nasty = 'a"b\\c\nd'
    counter.inc(tool=nasty)
    text = registry.render()
    assert 'tool="a\\"b\\\\c\\nd"' in text
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == 'help with \\ backslash\nand "newline"'
    assert family.samples[0].labels == {"tool": nasty}


def test_histogram_buckets_are_cumulative_with_sum_count_and_inf() -> None:
    registry = Registry()
    histogram = registry.histogram("d_seconds", "Durations.", ("tool",), buckets=(0.1, 1.0, 10.0))
    for value in (0.05, 0.1, 0.5, 5.0, 50.0):
        histogram.observe(value, tool="t")
    text = registry.render()
    assert 'd_seconds_bucket{tool="t",le="+Inf"} 5' in text
    (family,) = text_string_to_metric_families(text)
    assert family.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name == "d_seconds_bucket"]
    assert buckets == [("0.1", 2.0), ("1.0", 3.0), ("10.0", 4.0), ("+Inf", 5.0)]
    by_name = {s.name: s.value for s in family.samples if s.name != "d_seconds_bucket"}
    assert by_name == {"d_seconds_sum": pytest.approx(55.65), "d_seconds_count": 5.0}
    assert histogram.count(tool="t") == 5


def test_gauges_set_and_callback() -> None:
    registry = Registry()
    level = [3]
    registry.gauge("members", "Members.", callback=lambda: level[0])
    plain = registry.gauge("temp", "Temperature.", ("where",))
    plain.set(-1.5, where="here")
    plain.set(math.inf, where="sun")
    registry.gauge("broken", "Raises.", callback=lambda: 1 / 0)
    level[0] = 7
    got = samples(registry.render())
    assert ("members", {}, 7.0) in got
    assert ("temp", {"where": "here"}, -1.5) in got
    assert ("temp", {"where": "sun"}, math.inf) in got
    assert not [s for s in got if s[0] == "broken"]  # a failing callback leaves its samples out


def test_misuse_is_refused() -> None:
    registry = Registry()
    counter = registry.counter("a_total", "A.", ("tool",))
    with pytest.raises(ValueError):
        counter.inc(other="x")
    with pytest.raises(ValueError):
        counter.inc(-1, tool="x")
    with pytest.raises(ValueError):
        registry.counter("a_total", "again")
    with pytest.raises(ValueError):
        registry.counter("not_a_counter", "no _total")
    with pytest.raises(ValueError):
        registry.histogram("h", "H.", ("le",))


def test_daemon_metrics_render_and_parse() -> None:
    metrics = Metrics()
    metrics.gauge("maomao_members", "Members.", lambda: 2)
    metrics.runs.inc(tool="t", state="succeeded")
    metrics.run_duration.observe(1.5, tool="t")
    metrics.lateness.observe(0.2)
    metrics.spikes.inc(tool="t", metric="m")
    metrics.store_seconds.observe(0.003, op="txn")
    metrics.store_errors.inc(op="get")
    names = set(families(metrics.render()))
    assert names == {
        "maomao_runs", "maomao_run_duration_seconds", "maomao_schedule_lateness_seconds", "maomao_spikes",
        "maomao_store_request_seconds", "maomao_store_errors", "maomao_members",
    }


async def test_instrumented_store_times_calls_and_counts_errors(tmp_path: Path) -> None:
    metrics = Metrics()
    store = InstrumentedStore(EmbeddedStore(tmp_path / "store.db"), metrics)
    try:
        await store.put("/k", b"v")
        assert (await store.get("/k")) is not None
        result = await store.txn([], [Put("/k2", b"w")])
        assert result.succeeded
        assert len((await store.range("/")).kvs) == 2
    finally:
        await store.aclose()
    assert metrics.store_seconds.count(op="put") == 1
    assert metrics.store_seconds.count(op="get") == 1
    assert metrics.store_seconds.count(op="txn") == 1
    assert metrics.store_errors.get(op="get") == 0

    class Down(EmbeddedStore):
        async def get(self, key: str) -> None:  # type: ignore[override]
            raise StoreUnavailable("store at nowhere did not answer")

    down = InstrumentedStore(Down(tmp_path / "other.db"), metrics)
    with pytest.raises(StoreUnavailable):
        await down.get("/k")
    await down.aclose()
    assert metrics.store_errors.get(op="get") == 1
    assert metrics.store_seconds.count(op="get") == 2


def test_http_answers() -> None:
    def render() -> str:
        return "x 1\n"

    ok = answer(b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n", render)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" in ok
    assert ok.endswith(b"\r\n\r\nx 1\n")
    assert answer(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", render).startswith(b"HTTP/1.1 200")
    head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", render)
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    assert answer(b"GET / HTTP/1.1\r\n\r\n", render).startswith(b"HTTP/1.1 404")
    assert answer(b"POST /metrics HTTP/1.1\r\n\r\n", render).startswith(b"HTTP/1.1 405")
    for bad in (b"garbage\r\n\r\n", b"\xff\xfe /metrics HTTP/1.1\r\n\r\n", b"GET /metrics FTP\r\n\r\n"):
        assert answer(bad, render).startswith(b"HTTP/1.1 400")

    def broken() -> str:
        raise RuntimeError("boom")

    assert answer(b"GET /metrics HTTP/1.1\r\n\r\n", broken).startswith(b"HTTP/1.1 500")


async def _fetch(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def test_server_answers_and_survives_bad_clients() -> None:
    from tests.support.etcd import free_port

    port = free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_metrics, ("127.0.0.1", port), lambda: "x 1\n")
        # a client that connects and goes away, one that sends garbage, then a good one
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.aclose()
        assert (await _fetch(port, b"\x00\x01\x02\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await _fetch(port, b"GET /other HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _fetch(port, b"GET /metrics HTTP/1.1\r\n\r\n")).endswith(b"x 1\n")
        nursery.cancel_scope.cancel()


async def test_server_on_an_address_in_use_logs_and_returns(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_metrics, ("127.0.0.1", port), lambda: "")
    assert "going on without metrics" in caplog.text


@pytest.mark.timeout(30)
async def test_executor_counts_runs_and_lateness_of_a_taken_over_slot(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    from datetime import timedelta

    from maomao.daemon.scheduler import preferred_member
    from tests.unit.test_scheduler import BASE, open_cluster, tick_until

    async with open_cluster(tmp_path) as cluster:
        await cluster.tool("g", "0 * * * *")
        a = await cluster.add_member("a", runner_seconds=0.5)
        b = await cluster.add_member("b", runner_seconds=0.5)
        await cluster.settle()
        next_hour = BASE.replace(minute=0, second=0) + timedelta(hours=1)
        slot = next_hour.strftime("%Y%m%dT%H%M%SZ")
        other = b if preferred_member("g", slot, ["a", "b"]) == "a" else a
        # only the member that is not preferred ticks: it claims after the grace (2s), so starts late
        await tick_until(other, next_hour + timedelta(seconds=4))
        metrics = other.executor.metrics
        assert metrics.runs.get(tool="g", state="succeeded") == 1
        assert metrics.run_duration.count(tool="g") == 1
        assert metrics.lateness.count() == 1
        (late,) = [s.value for s in families(metrics.render())["maomao_schedule_lateness_seconds"].samples  # type: ignore[attr-defined]
                   if s.name.endswith("_sum")]
        assert 2.0 <= late < 3.0
