"""Prometheus metrics of the daemon, with no dependency: a tiny registry and an HTTP endpoint.

``[metrics] listen = HOST:PORT`` (off by default) makes the daemon answer
``GET /metrics`` there in the text exposition format 0.0.4.  The registry
holds counters and histograms with labels and gauges read from callbacks
at scrape time; :class:`Metrics` names the daemon's instruments, and
:class:`InstrumentedStore` times every store call.  The endpoint never
stops the daemon: an address that cannot be bound is logged and the
daemon goes on without metrics; a bad request gets an error answer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence

import trio

from maomao.errors import StoreError, StoreUnavailable
from maomao.store import Compare, Event, KeyValue, Operation, RangeResult, Store, TxnResult

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: seconds: store requests and lateness (a few ms to a minute)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: seconds: runs (a second to a day)
RUN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0, 43200.0, 86400.0)

LabelValues = tuple[str, ...]


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = [*zip(names, values, strict=True), *extra]
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{escape_label(value)}"' for name, value in pairs) + "}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, not {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A count that only goes up, per combination of label values."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name}: the name ends in _total")
        super().__init__(name, help, labelnames)
        self.values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labelnames, key)} {format_value(value)}"
            for key, value in sorted(self.values.items())
        ]


class Gauge(_Metric):
    """A value that goes up and down: set, or read from ``callback`` at each scrape."""

    kind = "gauge"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), callback: Callable[[], float] | None = None
    ) -> None:
        if callback is not None and labelnames:
            raise ValueError(f"gauge {name}: a callback gauge has no labels")
        super().__init__(name, help, labelnames)
        self.callback = callback
        self.values: dict[LabelValues, float] = {}

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = float(value)

    def samples(self) -> list[str]:
        if self.callback is not None:
            try:
                value = float(self.callback())
            except Exception:
                log.exception("metrics: gauge %s could not be read", self.name)
                return []
            return [f"{self.name} {format_value(value)}"]
        return [
            f"{self.name}{_labels(self.labelnames, key)} {format_value(value)}"
            for key, value in sorted(self.values.items())
        ]


class Histogram(_Metric):
    """Observations counted in fixed buckets (cumulative, ``le``), with their sum and count."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = FAST_BUCKETS
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"histogram {name}: le is reserved")
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name}: buckets must be distinct, and at least one")
        super().__init__(name, help, labelnames)
        self.bounds = (*bounds, math.inf)
        #: per label values: count per bucket (not cumulative), sum
        self.series: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        counts, total = self.series.setdefault(key, ([0] * len(self.bounds), [0.0]))
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                counts[index] += 1
                break
        total[0] += value

    def count(self, **labels: str) -> int:
        series = self.series.get(self._key(labels))
        return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        lines = []
        for key, (counts, total) in sorted(self.series.items()):
            cumulative = 0
            for bound, count in zip(self.bounds, counts, strict=True):
                cumulative += count
                le = _labels(self.labelnames, key, [("le", format_value(bound) if math.isinf(bound) else repr(bound))])
                lines.append(f"{self.name}_bucket{le} {cumulative}")
            plain = _labels(self.labelnames, key)
            lines.append(f"{self.name}_sum{plain} {format_value(total[0])}")
            lines.append(f"{self.name}_count{plain} {cumulative}")
        return lines


class Registry:
    """Metrics by name, rendered together."""

    def __init__(self) -> None:
        self.metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> None:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} is registered already")
        self.metrics[metric.name] = metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        counter = Counter(name, help, labelnames)
        self._add(counter)
        return counter

    def gauge(
        self, name: str, help: str, labelnames: Sequence[str] = (), callback: Callable[[], float] | None = None
    ) -> Gauge:
        gauge = Gauge(name, help, labelnames, callback)
        self._add(gauge)
        return gauge

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = FAST_BUCKETS
    ) -> Histogram:
        histogram = Histogram(name, help, labelnames, buckets)
        self._add(histogram)
        return histogram

    def render(self) -> str:
        """The text exposition format 0.0.4."""
        lines: list[str] = []
        for metric in self.metrics.values():
            lines += metric.header()
            lines += metric.samples()
        return "\n".join(lines) + "\n"


class Metrics:
    """The daemon's instruments, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = registry = Registry()
        self.runs = registry.counter("maomao_runs_total", "Runs this member finished, by tool and state.",
                                     ("tool", "state"))
        self.run_duration = registry.histogram(
            "maomao_run_duration_seconds", "Seconds from a run's start to its record (or the outbox).", ("tool",),
            RUN_BUCKETS,
        )
        self.lateness = registry.histogram(
            "maomao_schedule_lateness_seconds", "Seconds a scheduled run started after its slot's time.", (),
            FAST_BUCKETS,
        )
        self.spikes = registry.counter("maomao_spikes_total", "Spikes found in tools' series, by tool and metric.",
                                       ("tool", "metric"))
        self.store_seconds = registry.histogram(
            "maomao_store_request_seconds", "Seconds each store request took, by operation.", ("op",), FAST_BUCKETS
        )
        self.store_errors = registry.counter(
            "maomao_store_errors_total", "Store requests that failed (unreachable or refused), by operation.", ("op",)
        )

    def gauge(self, name: str, help: str, callback: Callable[[], float]) -> Gauge:
        """A gauge read from ``callback`` at each scrape."""
        return self.registry.gauge(name, help, callback=callback)

    def render(self) -> str:
        return self.registry.render()


class InstrumentedStore(Store):
    """A store whose every request is timed (``op``), and counted when it fails."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.inner = store
        self.metrics = metrics
        self.location = store.location

    @contextlib.contextmanager
    def _timed(self, op: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        except (StoreUnavailable, StoreError):
            self.metrics.store_errors.inc(op=op)
            raise
        finally:
            self.metrics.store_seconds.observe(time.monotonic() - started, op=op)

    async def get(self, key: str) -> KeyValue | None:
        with self._timed("get"):
            return await self.inner.get(key)

    async def range(self, prefix: str) -> RangeResult:
        with self._timed("range"):
            return await self.inner.range(prefix)

    async def put(self, key: str, value: bytes, *, lease: int = 0, if_revision: int | None = None) -> int:
        with self._timed("put"):
            return await self.inner.put(key, value, lease=lease, if_revision=if_revision)

    async def delete(self, key: str, *, if_revision: int | None = None) -> bool:
        with self._timed("delete"):
            return await self.inner.delete(key, if_revision=if_revision)

    async def txn(
        self, compares: Sequence[Compare], on_success: Sequence[Operation], on_failure: Sequence[Operation] = ()
    ) -> TxnResult:
        with self._timed("txn"):
            return await self.inner.txn(compares, on_success, on_failure)

    async def grant(self, ttl: int) -> int:
        with self._timed("grant"):
            return await self.inner.grant(ttl)

    async def keepalive(self, lease: int) -> int:
        with self._timed("keepalive"):
            return await self.inner.keepalive(lease)

    async def revoke(self, lease: int) -> None:
        with self._timed("revoke"):
            await self.inner.revoke(lease)

    async def compact(self, revision: int) -> None:
        with self._timed("compact"):
            await self.inner.compact(revision)

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """The inner watch; not timed (it is long-lived), its failures counted."""
        try:
            async for event in self.inner.watch(prefix, from_revision):
                yield event
        except (StoreUnavailable, StoreError):
            self.metrics.store_errors.inc(op="watch")
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- the endpoint ------------------------------------------------------------------------------

#: a request head longer than this, or slower than REQUEST_TIMEOUT, gets no answer
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8", head: bool = False) -> bytes:
    header = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return header if head else header + body


def answer(request: bytes, render: Callable[[], str]) -> bytes:
    """The response to one HTTP request head."""
    try:
        line = request.split(b"\r\n", 1)[0].decode("ascii")
        method, target, version = line.split(" ")
    except ValueError:  # UnicodeDecodeError is one
        return _response("400 Bad Request", b"bad request\n")
    if not version.startswith("HTTP/"):
        return _response("400 Bad Request", b"bad request\n")
    path = target.split("?", 1)[0]
    if path != "/metrics":
        return _response("404 Not Found", b"not found: try /metrics\n")
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"method not allowed\n")
    try:
        body = render().encode()
    except Exception:
        log.exception("metrics: rendering failed")
        return _response("500 Internal Server Error", b"metrics could not be rendered\n")
    return _response("200 OK", body, CONTENT_TYPE, head=method == "HEAD")


async def _handle(stream: trio.abc.Stream, render: Callable[[], str]) -> None:
    try:
        async with stream:
            request = b""
            with trio.move_on_after(REQUEST_TIMEOUT):
                while b"\r\n\r\n" not in request and b"\n\n" not in request and len(request) <= MAX_REQUEST:
                    data = await stream.receive_some(4096)
                    if not data:
                        break
                    request += data
            if not request:
                return
            if len(request) > MAX_REQUEST:
                response = _response("431 Request Header Fields Too Large", b"request too large\n")
            else:
                response = answer(request, render)
            with trio.move_on_after(REQUEST_TIMEOUT):
                await stream.send_all(response)
    except Exception as exc:  # a client that went away, or anything else: never the daemon's problem
        log.debug("metrics: connection failed: %s", exc)


async def serve_metrics(
    listen: tuple[str, int], render: Callable[[], str], *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``listen`` until cancelled; an address that cannot be bound is
    logged and the task ends (the daemon goes on without metrics)."""
    host, port = listen
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%d (%s); going on without metrics", host, port, exc)
        task_status.started()
        return
    log.info("metrics: serving http://%s:%d/metrics", host, port)
    task_status.started()

    async def handle(stream: trio.SocketStream) -> None:
        await _handle(stream, render)

    try:
        await trio.serve_listeners(handle, listeners)
    except Exception:
        log.exception("metrics: the endpoint failed; going on without metrics")
