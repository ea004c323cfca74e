"""EtcdStore: the store on an etcd v3 cluster, through etcd3gw.

etcd3gw speaks the JSON API of etcd's gRPC gateway (``/v3/``); its calls
block, so each one goes through the store's offload (in the daemon a worker
thread, at most ``THREADS`` at a time per store).  One :class:`etcd3gw.client.Etcd3Client` per endpoint carries
the HTTP session, TLS and the client certificate; requests go to the
endpoint that answered last and rotate to the next on a connection failure,
within one deadline per operation split across the endpoints (as Patroni
does).  When no endpoint answers, :class:`~maomao.errors.StoreUnavailable`
names them all.

Watches do not use etcd3gw's watch iterator: it drops the compaction
notice and never tells when its stream ends.  :meth:`EtcdStore.watch`
reads the gateway's watch stream itself, a line at a time in a thread,
reports compaction as :class:`~maomao.errors.Compacted` and reopens the
stream after the revision it last delivered when the connection breaks (an
etcd restart, a failover), so a consumer sees every change once, in order.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions as etcd_errors
from etcd3gw.client import Etcd3Client

from maomao.errors import Compacted, ConditionFailed, LeaseExpired, StoreError, StoreUnavailable
from maomao.store import (
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Offload,
    Operation,
    Put,
    RangeResult,
    Store,
    TxnResult,
    if_revision_compare,
    threaded,
)

log = logging.getLogger(__name__)

#: worker threads one store may use at once for plain requests
THREADS = 8
#: watch reconnection back-off, seconds
WATCH_BACKOFF = (0.1, 2.0)

_RESULT = {"=": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
_TARGET = {"mod": "MOD", "create": "CREATE", "version": "VERSION", "value": "VALUE"}
_TARGET_FIELD = {"mod": "mod_revision", "create": "create_revision", "version": "version"}
_UNREACHABLE = (
    etcd_errors.ConnectionFailedError,
    etcd_errors.ConnectionTimeoutError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def range_end(prefix: str) -> bytes:
    """etcd's range end for a prefix: its last byte that is not 0xff, plus one."""
    raw = bytearray(prefix.encode())
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\0"
    raw[-1] += 1
    return bytes(raw)


def _kv(data: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(data["key"]).decode(),
        value=_unb64(data.get("value")),
        create_revision=int(data.get("create_revision", 0)),
        mod_revision=int(data.get("mod_revision", 0)),
        version=int(data.get("version", 0)),
        lease=int(data.get("lease", 0)),
    )


def _compare(compare: Compare) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": _b64(compare.key),
        "result": _RESULT[compare.op],
        "target": _TARGET[compare.target],
    }
    if compare.target == "value":
        assert isinstance(compare.operand, bytes)
        body["value"] = _b64(compare.operand)
    else:
        body[_TARGET_FIELD[compare.target]] = compare.operand
    return body


def _request_op(op: Operation) -> dict[str, Any]:
    if isinstance(op, Put):
        put: dict[str, Any] = {"key": _b64(op.key), "value": _b64(op.value)}
        if op.lease:
            put["lease"] = op.lease
        return {"request_put": put}
    if isinstance(op, Delete):
        delete = {"key": _b64(op.key)}
        if op.prefix:
            delete["range_end"] = _b64(range_end(op.key))
        return {"request_delete_range": delete}
    return {"request_range": {"key": _b64(op.key)}}


def _response_op(op: Operation, response: dict[str, Any]) -> KeyValue | int | None:
    if isinstance(op, Get):
        kvs = response.get("response_range", {}).get("kvs", [])
        return _kv(kvs[0]) if kvs else None
    if isinstance(op, Delete):
        return int(response.get("response_delete_range", {}).get("deleted", 0))
    return None


def _error_message(body: str | None) -> str:
    """The gateway's error message out of its JSON error body."""
    try:
        data = json.loads(body or "")
    except ValueError:
        return " ".join((body or "no detail").split())[:200]
    message = data.get("message") or data.get("error") if isinstance(data, dict) else None
    return str(message or body)[:200]


def _is_lease_not_found(exc: StoreError) -> bool:
    return "lease not found" in exc.detail


class EtcdStore(Store):
    """The store on an etcd cluster.  See the module docstring."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 5.0,
        ca_cert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        offload: Offload | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        self.endpoints = tuple(endpoints)
        self.location = "etcd at " + ", ".join(self.endpoints)
        self.timeout = timeout
        per_endpoint = max(timeout / len(self.endpoints), 0.5)
        self._clients = [
            self._client(url, per_endpoint, ca_cert, cert, key) for url in self.endpoints
        ]
        self._current = 0
        self._offload = offload or threaded(THREADS)

    @staticmethod
    def _client(
        url: str, timeout: float, ca_cert: str | None, cert: str | None, key: str | None
    ) -> Etcd3Client:
        parts = urlsplit(url)
        return Etcd3Client(
            host=parts.hostname or "localhost",
            port=parts.port or 2379,
            protocol=parts.scheme or "http",
            ca_cert=ca_cert,
            cert_cert=cert,
            cert_key=key,
            timeout=timeout,
            api_path="/v3/",
        )

    # -- requests -----------------------------------------------------------

    def _post_blocking(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to the current endpoint, rotating through the others on failure."""
        errors: list[str] = []
        for attempt in range(len(self._clients)):
            index = (self._current + attempt) % len(self._clients)
            client = self._clients[index]
            try:
                result: dict[str, Any] = client.post(client.get_url(path), json=payload)
            except _UNREACHABLE as exc:
                errors.append(f"{self.endpoints[index]}: {type(exc).__name__}")
                continue
            except etcd_errors.Etcd3Exception as exc:
                detail = _error_message(exc.detail_text)
                raise StoreError(f"etcd at {self.endpoints[index]} refused {path}: {detail}", detail) from exc
            self._current = index
            return result
        raise StoreUnavailable(f"{self.location} is unreachable ({'; '.join(errors)})")

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._offload(lambda: self._post_blocking(path, payload))
        return result

    # -- reads --------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        result = await self._post("/kv/range", {"key": _b64(key)})
        kvs = result.get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    async def range(self, prefix: str) -> RangeResult:
        result = await self._post(
            "/kv/range", {"key": _b64(prefix), "range_end": _b64(range_end(prefix))}
        )
        return RangeResult(
            tuple(_kv(kv) for kv in result.get("kvs", [])),
            int(result["header"]["revision"]),
        )

    # -- writes -------------------------------------------------------------

    async def put(
        self, key: str, value: bytes, *, lease: int = 0, if_revision: int | None = None
    ) -> int:
        if if_revision is not None:
            result = await self.txn([if_revision_compare(key, if_revision)], [Put(key, value, lease)])
            if not result.succeeded:
                raise ConditionFailed(f"{key} is not at revision {if_revision}")
            return result.revision
        payload: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            payload["lease"] = lease
        try:
            response = await self._post("/kv/put", payload)
        except StoreError as exc:
            if _is_lease_not_found(exc):
                raise LeaseExpired(f"lease {lease:x} not found") from exc
            raise
        return int(response["header"]["revision"])

    async def delete(self, key: str, *, if_revision: int | None = None) -> bool:
        compares = [] if if_revision is None else [if_revision_compare(key, if_revision)]
        result = await self.txn(compares, [Delete(key)])
        if not result.succeeded:
            raise ConditionFailed(f"{key} is not at revision {if_revision}")
        return bool(result.results[0])

    async def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Operation],
        on_failure: Sequence[Operation] = (),
    ) -> TxnResult:
        payload = {
            "compare": [_compare(c) for c in compares],
            "success": [_request_op(op) for op in on_success],
            "failure": [_request_op(op) for op in on_failure],
        }
        try:
            result = await self._post("/kv/txn", payload)
        except StoreError as exc:
            if _is_lease_not_found(exc):
                raise LeaseExpired("a lease in the transaction was not found") from exc
            raise
        succeeded = bool(result.get("succeeded", False))
        ops = on_success if succeeded else on_failure
        responses = result.get("responses", [])
        return TxnResult(
            succeeded,
            int(result["header"]["revision"]),
            tuple(_response_op(op, r) for op, r in zip(ops, responses, strict=True)),
        )

    # -- leases -------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        result = await self._post("/lease/grant", {"TTL": ttl, "ID": 0})
        return int(result["ID"])

    async def keepalive(self, lease: int) -> int:
        result = await self._post("/lease/keepalive", {"ID": lease})
        ttl = int(result.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseExpired(f"lease {lease:x} has expired")
        return ttl

    async def revoke(self, lease: int) -> None:
        try:
            await self._post("/kv/lease/revoke", {"ID": lease})
        except StoreError as exc:
            if not _is_lease_not_found(exc):
                raise

    # -- history ------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        await self._post("/kv/compaction", {"revision": revision, "physical": True})

    def _open_watch_blocking(
        self, prefix: str, start: int
    ) -> tuple[requests.Response, Iterator[bytes]]:
        """Open a watch stream on the first endpoint that answers."""
        payload = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(range_end(prefix)),
                "start_revision": start,
            }
        }
        errors: list[str] = []
        for attempt in range(len(self._clients)):
            index = (self._current + attempt) % len(self._clients)
            client = self._clients[index]
            session = requests.Session()
            session.verify = client.session.verify
            session.cert = client.session.cert
            try:
                response = session.post(
                    client.get_url("/watch"),
                    json=payload,
                    stream=True,
                    timeout=(client.timeout, None),
                )
                response.raise_for_status()
            except (requests.exceptions.RequestException, OSError) as exc:
                session.close()
                errors.append(f"{self.endpoints[index]}: {type(exc).__name__}")
                continue
            return response, response.iter_lines(chunk_size=None)
        raise StoreUnavailable(f"{self.location} is unreachable ({'; '.join(errors)})")

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        import trio

        start = from_revision
        backoff = WATCH_BACKOFF[0]
        while True:
            try:
                response, lines = await trio.to_thread.run_sync(
                    self._open_watch_blocking, prefix, start, abandon_on_cancel=True
                )
            except StoreUnavailable as exc:
                log.warning("watch on %s: %s; retrying in %.1fs", prefix, exc, backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, WATCH_BACKOFF[1])
                continue
            try:
                while True:
                    line = await trio.to_thread.run_sync(
                        _next_line, lines, abandon_on_cancel=True
                    )
                    if line is None:
                        break
                    events = self._watch_events(line, start)
                    if events is None:
                        break
                    backoff = WATCH_BACKOFF[0]
                    for event in events:
                        yield event
                    if events:
                        start = events[-1].revision + 1
            finally:
                _shutdown(response)
            await trio.sleep(backoff)

    @staticmethod
    def _watch_events(line: bytes, start: int) -> list[Event] | None:
        """The events in one line of the watch stream; None when the stream ended."""
        if not line.strip():
            return []
        message = json.loads(line)
        if "error" in message:
            log.warning("watch stream error: %s", message["error"])
            return None
        result = message.get("result", {})
        compacted = int(result.get("compact_revision", 0))
        if compacted:
            raise Compacted(start, compacted)
        if result.get("canceled"):
            return None
        return [
            Event(
                "delete" if e.get("type") == "DELETE" else "put",
                _kv(e["kv"]),
            )
            for e in result.get("events", [])
        ]

    async def aclose(self) -> None:
        for client in self._clients:
            client.session.close()


def _next_line(lines: Iterator[bytes]) -> bytes | None:
    """The next line of a watch stream; None once the connection is gone."""
    try:
        return next(lines, None)
    except (requests.exceptions.RequestException, OSError, AttributeError, ValueError) as exc:
        # requests wraps urllib3's errors; a stream closed under the reader
        # surfaces as AttributeError/ValueError from the closed file object
        log.debug("watch stream ended: %r", exc)
        return None


def _shutdown(response: requests.Response) -> None:
    """Close a streaming response, waking the thread blocked reading it."""
    try:
        fp = response.raw._fp
        sock = socket.socket(fileno=fp.fileno()) if fp is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.detach()
    except (OSError, AttributeError, ValueError):
        pass
    response.close()
