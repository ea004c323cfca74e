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

Access.  ``https://`` endpoints are verified against ``ca_cert`` (else the
system's CAs) and present the client certificate ``cert``/``key``.  With a
``user`` (etcd3gw has no authentication of its own) the store POSTs
``/v3/auth/authenticate`` to each endpoint it talks to (etcd's simple
tokens belong to the member that issued them) and sends the token in the
``Authorization`` header of every request, the watch stream's too.  When
etcd answers that a token is no longer good (simple tokens expire after
``--auth-token-ttl`` unused; a change to users or roles makes older tokens
stale), it authenticates again, once, and repeats the request.

A refusal of who this client is (a TLS handshake that fails, a wrong user
name or password, no credentials where etcd wants them, a permission
denied) is one line naming the endpoint, never retried in a loop: until
the store has answered a key-value request it is
:class:`~maomao.store.StoreAccessDenied` (a configuration error: ``ctl``
exits 1, the daemon stops with that line); afterwards the same refusal is
a :class:`~maomao.errors.StoreUnavailable`, which a running daemon rides
out like an outage.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
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
    StoreAccessDenied,
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
#: HTTP statuses of a gateway that cannot reach its etcd (etcd3gw's mapping)
_UNAVAILABLE_STATUS = (503, 408, 504)
#: etcd's words for a token that is no longer good: authenticate again, once
_STALE_TOKEN = ("invalid auth token", "revision of auth store is old", "user name is empty")
#: etcd's words for a request it refuses because of who asks
_REFUSALS = ("permission denied", "user name is empty", "invalid auth token", "revision of auth store is old")
#: what a request does, for a "permission denied" line
_ACTIONS = {
    "/kv/range": "read",
    "/kv/put": "write",
    "/kv/txn": "write",
    "/kv/deleterange": "delete",
    "/kv/compaction": "compact the store (etcd lets only root)",
    "/watch": "watch",
}


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


def _unreachable(exc: BaseException) -> str:
    """Why an endpoint did not answer: the exception's name, and the gateway's words when it said any."""
    detail = exc.detail_text if isinstance(exc, etcd_errors.Etcd3Exception) else None
    return f"{type(exc).__name__}: {detail[:160]}" if detail else type(exc).__name__


def _is_lease_not_found(exc: StoreError) -> bool:
    return "lease not found" in exc.detail


class _Refused(Exception):
    """An endpoint refused who this client is; ``why`` is the line's text after the endpoint."""

    def __init__(self, why: str, *, tls: bool = False) -> None:
        super().__init__(why)
        self.why = why
        #: a failed TLS handshake (the next endpoint may still take us), not an answer of etcd's
        self.tls = tls


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests wraps urllib3, which wraps the ssl module's error."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo.extend(e for e in nested if isinstance(e, BaseException))


def tls_reason(exc: BaseException) -> str:
    """What went wrong in a TLS handshake, in a few words, out of requests' nested errors."""
    import ssl

    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "certificate verify failed: " + str(cause.verify_message or cause.reason or "?")
    for cause in causes:
        if isinstance(cause, ssl.SSLEOFError):
            # Go's TLS server hangs up on a client certificate it does not accept (or none)
            return (
                "the server closed the connection during the handshake "
                "(no client certificate, or one it does not trust? see [store] cert and key)"
            )
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            text = cause.args[1] if len(cause.args) > 1 and isinstance(cause.args[1], str) else str(cause)
            text = re.sub(r"^\[[A-Z0-9_]+(: [A-Z0-9_]+)?\] | \(_ssl\.c:\d+\)$", "", text)
            if "alert" in text:
                return f"the server refused the client certificate ({text})"
            if text == "PEM lib":
                text = "a certificate or key file that is not PEM"
            return f"{text} (check [store] ca_cert, cert and key)"
    return " ".join(str(exc).split())[:200]


def _subject(path: str, payload: dict[str, Any]) -> str:
    """What a refused request tried to do, for its line: "write /maomao/tools/x"."""
    action = _ACTIONS.get(path, path.strip("/"))
    key = payload.get("key")
    if key is None and path == "/kv/txn":
        ops = [*payload.get("compare", []), *payload.get("success", []), *payload.get("failure", [])]
        for op in ops:
            inner = op if "key" in op else next(iter(op.values()), {})
            if isinstance(inner, dict) and "key" in inner:
                key = inner["key"]
                break
    if key is None and path == "/watch":
        key = payload.get("create_request", {}).get("key")
    if key is None:
        return action
    try:
        return f"{action} {_unb64(key).decode()}"
    except (ValueError, UnicodeDecodeError):
        return action


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
        user: str | None = None,
        password: str | None = None,
        offload: Offload | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        if user is not None and password is None:
            raise ValueError("EtcdStore: a user needs a password")
        self.endpoints = tuple(endpoints)
        self.location = "etcd at " + ", ".join(self.endpoints)
        self.timeout = timeout
        per_endpoint = max(timeout / len(self.endpoints), 0.5)
        self._clients = [
            self._client(url, per_endpoint, ca_cert, cert, key) for url in self.endpoints
        ]
        self._current = 0
        self._offload = offload or threaded(THREADS)
        self._user = user
        self._password = password
        #: each endpoint's token (None: etcd wants none); no entry until it authenticated there
        self._tokens: dict[int, str | None] = {}
        self._auth_lock = threading.Lock()
        #: whether etcd answered a key-value request: after that, a refusal is an outage, not a config error
        self._trusted = False

    @staticmethod
    def _client(
        url: str, timeout: float, ca_cert: str | None, cert: str | None, key: str | None
    ) -> Etcd3Client:
        parts = urlsplit(url)
        client = Etcd3Client(
            host=parts.hostname or "localhost",
            port=parts.port or 2379,
            protocol=parts.scheme or "http",
            ca_cert=ca_cert,
            cert_cert=cert,
            cert_key=key,
            timeout=timeout,
            api_path="/v3/",
        )
        # the endpoints are explicit: no proxy, netrc or CA bundle from the environment (requests
        # would look them up again on every request, a tenth of a request's time under load)
        client.session.trust_env = False
        return client

    # -- requests -----------------------------------------------------------

    def _send(
        self, index: int, path: str, payload: dict[str, Any], token: str | None
    ) -> requests.Response:
        client = self._clients[index]
        try:
            # verify and cert per request: requests lets $REQUESTS_CA_BUNDLE override the session's
            return client.session.post(
                client.get_url(path),
                json=payload,
                timeout=client.timeout,
                headers={"Authorization": token} if token else None,
                verify=client.session.verify,
                cert=client.session.cert,
            )
        except requests.exceptions.SSLError as exc:
            raise _Refused("TLS: " + tls_reason(exc), tls=True) from exc

    def _token(self, index: int) -> str | None:
        """The endpoint's token, authenticating there first if need be (None without a user)."""
        if self._user is None:
            return None
        if index in self._tokens:
            return self._tokens[index]
        return self._authenticate(index, None)

    def _authenticate(self, index: int, stale: str | None) -> str | None:
        """A fresh token from the endpoint (unless another thread got one since ``stale`` failed)."""
        assert self._user is not None and self._password is not None
        with self._auth_lock:
            if index in self._tokens and self._tokens[index] != stale:
                return self._tokens[index]
            payload = {"name": self._user, "password": self._password}
            response = self._send(index, "/auth/authenticate", payload, None)
            if response.status_code in _UNAVAILABLE_STATUS:
                raise etcd_errors.ConnectionFailedError(_error_message(response.text))
            token: str | None
            if response.status_code == 200:
                try:
                    token = str(response.json()["token"])
                except (ValueError, KeyError, TypeError) as exc:
                    where = self.endpoints[index]
                    raise StoreError(f"etcd at {where}: no token in its answer to authenticate") from exc
            else:
                detail = _error_message(response.text)
                if "authentication is not enabled" in detail:
                    token = None  # etcd without auth: requests go without a token (as etcdctl's do)
                elif "authentication failed" in detail:
                    raise _Refused(f"authentication failed: invalid user name or password (user {self._user!r})")
                else:
                    raise StoreError(f"etcd at {self.endpoints[index]} refused to authenticate: {detail}", detail)
            self._tokens[index] = token
            return token

    def _refusal(self, detail: str, path: str, payload: dict[str, Any]) -> str | None:
        """The line for an answer that refuses who we are, or None for any other refusal."""
        if "permission denied" in detail:
            user = f"user {self._user!r}" if self._user else "this client"
            return f"permission denied: {user} may not {_subject(path, payload)} (its roles' permissions)"
        if any(words in detail for words in _REFUSALS):
            if self._user is None:
                return "authentication required: etcd has authentication enabled; set [store] user and password"
            return f"authentication failed: {detail}"
        return None

    def _request_blocking(self, index: int, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One request to one endpoint, with its token; a stale token is renewed once."""
        token = self._token(index)
        response = self._send(index, path, payload, token)
        if (
            self._user is not None
            and response.status_code != 200
            and any(words in response.text for words in _STALE_TOKEN)
        ):
            token = self._authenticate(index, token)
            response = self._send(index, path, payload, token)
        if response.status_code in _UNAVAILABLE_STATUS:
            raise etcd_errors.ConnectionFailedError(_error_message(response.text))
        if response.status_code != 200:
            detail = _error_message(response.text)
            why = self._refusal(detail, path, payload)
            if why is not None:
                raise _Refused(why)
            raise StoreError(f"etcd at {self.endpoints[index]} refused {path}: {detail}", detail)
        try:
            result: dict[str, Any] = response.json()
        except ValueError as exc:
            raise StoreError(f"etcd at {self.endpoints[index]}: an answer to {path} that is not JSON") from exc
        if path.startswith("/kv/"):
            self._trusted = True
        return result

    def _denied(self, endpoint: str, why: str) -> StoreAccessDenied | StoreUnavailable:
        """The error for a refusal: a config error until etcd answered us once, an outage after."""
        message = f"etcd at {endpoint}: {why}"
        return StoreUnavailable(message) if self._trusted else StoreAccessDenied(message)

    def _post_blocking(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to the current endpoint, rotating through the others on failure."""
        errors: list[str] = []
        handshakes: list[tuple[str, str]] = []
        for attempt in range(len(self._clients)):
            index = (self._current + attempt) % len(self._clients)
            try:
                result = self._request_blocking(index, path, payload)
            except _UNREACHABLE as exc:
                errors.append(f"{self.endpoints[index]}: {_unreachable(exc)}")
                continue
            except _Refused as exc:
                if exc.tls:  # this endpoint's TLS; another endpoint may still take us
                    handshakes.append((self.endpoints[index], exc.why))
                    continue
                raise self._denied(self.endpoints[index], exc.why) from exc
            self._current = index
            return result
        if handshakes:
            endpoint, why = handshakes[0]
            others = f" (and {'; '.join(errors)})" if errors else ""
            raise self._denied(endpoint, why + others)
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
    ) -> tuple[requests.Response, Iterator[bytes], int, str | None]:
        """Open a watch stream on the first endpoint that answers: the response, its lines,
        the endpoint's index and the token it went with."""
        payload = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(range_end(prefix)),
                "start_revision": start,
            }
        }
        errors: list[str] = []
        handshakes: list[tuple[str, str]] = []
        for attempt in range(len(self._clients)):
            index = (self._current + attempt) % len(self._clients)
            client = self._clients[index]
            session = requests.Session()
            session.trust_env = False
            try:
                token = self._token(index)
                response = session.post(
                    client.get_url("/watch"),
                    json=payload,
                    stream=True,
                    timeout=(client.timeout, None),
                    headers={"Authorization": token} if token else None,
                    verify=client.session.verify,
                    cert=client.session.cert,
                )
                response.raise_for_status()
            except _Refused as exc:
                session.close()
                if exc.tls:
                    handshakes.append((self.endpoints[index], exc.why))
                    continue
                raise self._denied(self.endpoints[index], exc.why) from exc
            except requests.exceptions.SSLError as exc:
                session.close()
                handshakes.append((self.endpoints[index], "TLS: " + tls_reason(exc)))
                continue
            except (requests.exceptions.RequestException, OSError, *_UNREACHABLE) as exc:
                session.close()
                errors.append(f"{self.endpoints[index]}: {type(exc).__name__}")
                continue
            return response, response.iter_lines(chunk_size=None), index, token
        if handshakes:
            endpoint, why = handshakes[0]
            others = f" (and {'; '.join(errors)})" if errors else ""
            raise self._denied(endpoint, why + others)
        raise StoreUnavailable(f"{self.location} is unreachable ({'; '.join(errors)})")

    def _forget_token(self, index: int, token: str | None) -> None:
        """Drop the endpoint's token (if it is still ``token``): the next request authenticates."""
        with self._auth_lock:
            if self._tokens.get(index, token) == token:
                self._tokens.pop(index, None)

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        import trio

        start = from_revision
        backoff = WATCH_BACKOFF[0]
        refusals = 0
        while True:
            try:
                response, lines, index, token = await trio.to_thread.run_sync(
                    self._open_watch_blocking, prefix, start, abandon_on_cancel=True
                )
            except StoreUnavailable as exc:  # unreachable, or a handshake refused once we were trusted
                log.warning("watch on %s: %s; retrying in %.1fs", prefix, exc, backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, WATCH_BACKOFF[1])
                continue
            refused: str | None = None
            try:
                while True:
                    line = await trio.to_thread.run_sync(
                        _next_line, lines, abandon_on_cancel=True
                    )
                    if line is None:
                        break
                    try:
                        events = self._watch_events(line, start)
                    except _WatchRefused as exc:
                        refused = exc.reason
                        break
                    if events is None:
                        break
                    backoff = WATCH_BACKOFF[0]
                    refusals = 0
                    for event in events:
                        yield event
                    if events:
                        start = events[-1].revision + 1
            finally:
                _shutdown(response)
            if refused is not None:
                refusals += 1
                if refusals == 1 and self._user is not None:
                    self._forget_token(index, token)  # expired, most likely: authenticate again, once
                    continue
                why = self._refusal(refused, "/watch", {"key": _b64(prefix)}) or refused
                raise self._denied(self.endpoints[index], why)
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
            reason = str(result.get("cancel_reason", ""))
            if any(words in reason for words in _REFUSALS):
                raise _WatchRefused(reason)
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


class _WatchRefused(Exception):
    """etcd cancelled a watch because of who asked (a stale token, no permission)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token" -> its last part
        self.reason = reason.rsplit("desc = ", 1)[-1]


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
