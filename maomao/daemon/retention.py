"""The retention sweeper: keeps each tool's last ``keep_runs`` runs, none older than ``max_run_age``,
and its last ``[spikes] keep`` spikes, none older than ``[spikes] max_age``.

Members split the work without talking: each sweeps the tools whose
preferred member (rendezvous hash over the live members) it is, every
``INTERVAL`` seconds.  Run ids sort by time, so the newest runs are the
last keys of ``runs/<tool>/`` (and of ``spikes/<tool>/``, named
``<run-id>.<metric>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import trio

from maomao.config import Config
from maomao.daemon.cache import StateCache
from maomao.daemon.executor import wall_clock
from maomao.daemon.membership import Membership
from maomao.daemon.scheduler import preferred_member
from maomao.errors import MaomaoError, StoreError, StoreUnavailable
from maomao.model import Run, Spike, parse_iso
from maomao.store import KeyValue, Store
from maomao.store.keys import Keys

log = logging.getLogger(__name__)

INTERVAL = 300.0


def expired(records: list[tuple[str, str | None]], keep: int, oldest: datetime) -> list[str]:
    """The keys to delete: beyond the newest ``keep``, or dated before ``oldest``.

    ``records`` is ``(key, ISO time or None)`` in key order (oldest first);
    an unreadable or undated record (None) counts as old once it is beyond ``keep``.
    """
    doomed = [key for key, _ in records[: max(0, len(records) - keep)]]
    for key, when in records[max(0, len(records) - keep) :]:
        if when and parse_iso(when) < oldest:
            doomed.append(key)
    return doomed


def _dated(kvs: Sequence[KeyValue], kind: type[Run] | type[Spike]) -> list[tuple[str, str | None]]:
    dated: list[tuple[str, str | None]] = []
    for kv in kvs:
        try:
            record = kind.from_value(kv.value)
        except MaomaoError:
            dated.append((kv.key, None))
            continue
        dated.append((kv.key, record.finished if isinstance(record, Run) else record.detected))
    return dated


class RetentionSweeper:
    """Deletes old run records of the tools this member looks after."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        config: Config,
        cache: StateCache,
        membership: Membership,
        now: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.store = store
        self.keys = keys
        self.config = config
        self.cache = cache
        self.membership = membership
        self.now = now
        self.deleted = 0

    def mine(self) -> list[str]:
        members = sorted(self.cache.members) or [self.membership.name]
        me = self.membership.name
        return [tool for tool in sorted(self.cache.tools) if preferred_member(tool, "retention", members) == me]

    async def sweep(self) -> int:
        """One pass over this member's tools; the number of run and spike records deleted."""
        now = self.now().astimezone(UTC)
        runs_before = now - timedelta(seconds=self.config.daemon.max_run_age)
        spikes_before = now - timedelta(seconds=self.config.spikes.max_age)
        deleted = 0
        for tool in self.mine():
            runs = await self.store.range(self.keys.runs(tool))
            spikes = await self.store.range(self.keys.spikes(tool))
            doomed = [
                *expired(_dated(runs.kvs, Run), self.config.daemon.keep_runs, runs_before),
                *expired(_dated(spikes.kvs, Spike), self.config.spikes.keep, spikes_before),
            ]
            for key in doomed:
                await self.store.delete(key)
                deleted += 1
        self.deleted += deleted
        return deleted

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(30)
        while True:
            try:
                deleted = await self.sweep()
                if deleted:
                    log.info("retention: deleted %d old run and spike records", deleted)
            except (StoreUnavailable, StoreError) as exc:
                log.warning("retention: %s", exc)
            await trio.sleep(INTERVAL)
