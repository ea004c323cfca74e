"""Membership: this daemon's lease and its ``members/<name>`` record.

``register`` grants a lease and creates the member key bound to it, in one
transaction that fails when a live member already has the name (the
daemon then refuses to start).  ``keep_alive`` renews the lease every third
of its ttl; while the store does not answer it says so (``store_ok``) and
retries every second; when the lease has expired (the daemon was cut off or
frozen for longer than the ttl) it registers again under a new lease.
Everything the daemon claims is bound to ``lease``.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime

import trio

from maomao import __version__
from maomao.errors import LeaseExpired, MaomaoError, StoreError, StoreUnavailable
from maomao.model import Member, utc_iso
from maomao.store import Compare, Get, KeyValue, Put, Store
from maomao.store.keys import Keys

log = logging.getLogger(__name__)


class NameTaken(MaomaoError):
    """A live member already has this daemon's name."""


class Membership:
    """This daemon as a member of the collaboration."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        name: str,
        ttl: int,
        runtimes: tuple[str, ...],
        labels: dict[str, str],
    ) -> None:
        self.store = store
        self.keys = keys
        self.name = name
        self.ttl = ttl
        self.runtimes = runtimes
        self.labels = labels
        self.lease = 0
        self.store_ok = False
        self.started = utc_iso(datetime.now(UTC))

    def record(self) -> Member:
        return Member(
            name=self.name,
            host=socket.gethostname(),
            version=__version__,
            runtimes=self.runtimes,
            labels=self.labels,
            started=self.started,
            pid=os.getpid(),
        )

    async def register(self) -> None:
        """Grant a lease and create ``members/<name>``; NameTaken if it is live."""
        lease = await self.store.grant(self.ttl)
        key = self.keys.member(self.name)
        result = await self.store.txn(
            [Compare(key, "create", "=", 0)],
            [Put(key, self.record().to_value(), lease)],
            [Get(key)],
        )
        if not result.succeeded:
            await self.store.revoke(lease)
            raise NameTaken(f"a live member is already named {self.name!r}: {_describe(result.results[0])}")
        self.lease = lease
        self.store_ok = True
        log.info("registered as member %s (lease %x, ttl %ds)", self.name, lease, self.ttl)

    async def update(self) -> None:
        """Rewrite the member record (labels changed on reload)."""
        await self.store.put(self.keys.member(self.name), self.record().to_value(), lease=self.lease)

    async def keep_alive(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.ttl / 3 if self.store_ok else 1.0)
            try:
                await self.store.keepalive(self.lease)
                if not self.store_ok:
                    log.warning("the store answers again")
                self.store_ok = True
            except LeaseExpired:
                log.warning("lease %x expired; registering again", self.lease)
                await self._register_again()
            except (StoreUnavailable, StoreError) as exc:
                if self.store_ok:
                    log.error("the store does not answer: %s", exc)
                self.store_ok = False

    async def _register_again(self) -> None:
        try:
            await self.register()
        except NameTaken:
            raise
        except (StoreUnavailable, StoreError) as exc:
            log.error("registering again failed: %s", exc)
            self.store_ok = False

    async def leave(self) -> None:
        """Revoke the lease: the member key and every claim go at once."""
        if self.lease:
            try:
                await self.store.revoke(self.lease)
            except (StoreUnavailable, StoreError) as exc:
                log.warning("could not revoke lease %x: %s", self.lease, exc)
            self.lease = 0


def _describe(existing: object) -> str:
    if not isinstance(existing, KeyValue):
        return "it vanished meanwhile"
    try:
        member = Member.from_value(existing.value)
    except MaomaoError:
        return "its record is unreadable"
    return f"host {member.host}, pid {member.pid}, since {member.started}"
