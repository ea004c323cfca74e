"""The store interface: etcd's data model, implemented by two backends.

Every member and every ``ctl`` command reads and writes state through this
interface only.  Both backends (:mod:`maomao.store.etcd` for a real etcd
cluster, :mod:`maomao.store.embedded` for one machine on SQLite) keep the
same semantics and pass the same contract tests:

Revisions
    One global revision counts every change; each key carries the revision
    that created it (``create_revision``), the one that last changed it
    (``mod_revision``) and how often it changed since it was created
    (``version``).  A write that changes several keys in one transaction
    gives them all the same revision.

Atomic operations
    ``put`` and ``delete`` take ``if_revision``: ``0`` means the key must not
    exist, ``N`` means its ``mod_revision`` must be ``N``; a mismatch raises
    :class:`~maomao.errors.ConditionFailed` and writes nothing.  ``txn``
    evaluates several comparisons and applies one of two lists of
    operations, all at once.

Leases
    ``grant(ttl)`` returns a lease id; keys put with that lease disappear
    (with a delete event) when it expires or is revoked.  ``keepalive``
    renews it and raises :class:`~maomao.errors.LeaseExpired` once it is
    gone.

Watches
    ``watch(prefix, from_revision)`` yields every change to keys under
    ``prefix`` with a revision >= ``from_revision``, in revision order, none
    twice, across reconnects; it raises :class:`~maomao.errors.Compacted`
    when ``from_revision`` is older than what the store keeps.

Every operation raises :class:`~maomao.errors.StoreUnavailable`, naming the
endpoint(s), when the store cannot be reached within its deadline, and
:class:`StoreAccessDenied` when it refuses this client before it ever
answered it (TLS certificates, user and password, permissions: fix the
configuration; retrying does not help).

Blocking work (SQLite, HTTP) goes through the store's *offload* function.
The daemon uses :func:`threaded`: a Trio worker thread, a
``CapacityLimiter`` per store.  A one-shot ``ctl`` command uses
:func:`inline` and drives the coroutine with :func:`run_inline`: the call
blocks the only thing there is to block, and ``ctl`` starts without
importing Trio (a third of its start-up time).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from maomao.errors import MaomaoError

if TYPE_CHECKING:
    from maomao.config import StoreConfig


T = TypeVar("T")

#: runs a blocking function somewhere and awaits its result
Offload = Callable[[Callable[[], Any]], Awaitable[Any]]


async def inline(fn: Callable[[], T]) -> T:
    """Offload that runs the blocking call right here (for one-shot ``ctl``)."""
    return fn()


def threaded(limit: int) -> Offload:
    """Offload to Trio worker threads, at most ``limit`` at a time."""
    import trio

    limiter = trio.CapacityLimiter(limit)

    async def offload(fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=limiter)

    return offload


def run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a store using :func:`inline`)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("run_inline: the coroutine waited on an event loop")


class StoreAccessDenied(MaomaoError):
    """The store refuses this client: its certificates, its credentials, its permissions.

    One line naming the endpoint.  Deliberately neither a StoreError nor a
    StoreUnavailable, which callers retry: ``ctl`` exits 1 with the line, and
    the daemon stops with it (a configuration error, for the operator to see).
    """

    exit_code = 1


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as the store holds it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch.

    For a delete, ``kv.value`` is empty and ``kv.mod_revision`` is the
    revision of the deletion.
    """

    type: Literal["put", "delete"]
    kv: KeyValue

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Compare:
    """A comparison of one key's field, as in an etcd transaction.

    ``target`` is ``mod`` (mod_revision), ``create`` (create_revision),
    ``version`` or ``value``; a key that does not exist has 0 for each
    revision field and never compares equal on ``value``.
    """

    key: str
    target: Literal["mod", "create", "version", "value"]
    op: Literal["=", "!=", "<", ">"]
    operand: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    """Put a key in a transaction."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete a key (or every key under it when ``prefix``) in a transaction."""

    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    """Read a key inside a transaction, at the transaction's revision."""

    key: str


Operation = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class TxnResult:
    """What a transaction did: which branch ran, at what revision.

    ``results`` holds one entry per operation of the branch that ran: the
    :class:`KeyValue` (or ``None``) for a :class:`Get`, the number of keys
    deleted for a :class:`Delete`, ``None`` for a :class:`Put`.
    """

    succeeded: bool
    revision: int
    results: tuple[KeyValue | int | None, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RangeResult:
    """The keys under a prefix and the store revision they were read at."""

    kvs: tuple[KeyValue, ...]
    revision: int


def compare_holds(compare: Compare, kv: KeyValue | None) -> bool:
    """Evaluate ``compare`` against ``kv`` (``None``: the key is absent)."""
    actual: int | bytes | None
    if compare.target == "value":
        actual = kv.value if kv is not None else None
        if actual is None:
            return False
    elif kv is None:
        actual = 0
    else:
        actual = {
            "mod": kv.mod_revision,
            "create": kv.create_revision,
            "version": kv.version,
        }[compare.target]
    operand = compare.operand
    if compare.op == "=":
        return actual == operand
    if compare.op == "!=":
        return actual != operand
    if type(actual) is not type(operand):
        return False
    if compare.op == "<":
        return actual < operand  # type: ignore[operator]
    return actual > operand  # type: ignore[operator]


def if_revision_compare(key: str, if_revision: int) -> Compare:
    """The comparison behind ``put``/``delete``'s ``if_revision`` argument."""
    return Compare(key, "mod", "=", if_revision)


class Store(abc.ABC):
    """The store every part of maomao talks to.  See the module docstring."""

    #: a short description of where the store is, for messages
    location: str

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """The key, or ``None`` when it does not exist."""

    @abc.abstractmethod
    async def range(self, prefix: str) -> RangeResult:
        """Every key starting with ``prefix``, in key order."""

    @abc.abstractmethod
    async def put(
        self, key: str, value: bytes, *, lease: int = 0, if_revision: int | None = None
    ) -> int:
        """Write ``key``; return the new store revision."""

    @abc.abstractmethod
    async def delete(self, key: str, *, if_revision: int | None = None) -> bool:
        """Delete ``key``; return whether it existed."""

    @abc.abstractmethod
    async def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Operation],
        on_failure: Sequence[Operation] = (),
    ) -> TxnResult:
        """Apply ``on_success`` if every comparison holds, else ``on_failure``."""

    @abc.abstractmethod
    async def grant(self, ttl: int) -> int:
        """Create a lease of ``ttl`` seconds; return its id."""

    @abc.abstractmethod
    async def keepalive(self, lease: int) -> int:
        """Renew the lease; return its ttl; raise LeaseExpired when gone."""

    @abc.abstractmethod
    async def revoke(self, lease: int) -> None:
        """End the lease now, deleting its keys (a lease already gone is fine)."""

    @abc.abstractmethod
    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Every change under ``prefix`` from ``from_revision`` on, in order."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget the history of changes before ``revision``."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections and threads."""


def open_store(config: StoreConfig, offload: Offload | None = None) -> Store:
    """The backend the configuration names; connects lazily."""
    if config.backend == "etcd":
        from maomao.store.etcd import EtcdStore

        return EtcdStore(
            config.endpoints,
            timeout=config.timeout,
            ca_cert=config.ca_cert,
            cert=config.cert,
            key=config.key,
            user=config.user,
            password=config.password,
            offload=offload,
        )
    from maomao.store.embedded import EmbeddedStore

    return EmbeddedStore(config.path, offload=offload)
