"""The retention sweeper: keeps each tool's last ``keep_runs`` runs, none older than ``max_run_age``.

Members split the work without talking: each sweeps the tools whose
preferred member (rendezvous hash over the live members) it is, every
``INTERVAL`` seconds.  Run ids sort by time, so the newest runs are the
last keys of ``runs/<tool>/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import trio

from maomao.config import Config
from maomao.daemon.cache import StateCache
from maomao.daemon.executor import wall_clock
from maomao.daemon.membership import Membership
from maomao.daemon.scheduler import preferred_member
from maomao.errors import MaomaoError, StoreError, StoreUnavailable
from maomao.model import Run, parse_iso
from maomao.store import Store
from maomao.store.keys import Keys

log = logging.getLogger(__name__)

INTERVAL = 300.0


def expired_runs(runs: list[tuple[str, Run | None]], keep: int, oldest: datetime) -> list[str]:
    """The keys to delete: beyond the newest ``keep``, or finished before ``oldest``.

    ``runs`` is in key order (oldest first); an unreadable run (None) counts
    as old once it is beyond ``keep``.
    """
    doomed = [key for key, _ in runs[: max(0, len(runs) - keep)]]
    for key, run in runs[max(0, len(runs) - keep) :]:
        if run is not None and run.finished and parse_iso(run.finished) < oldest:
            doomed.append(key)
    return doomed


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
        """One pass over this member's tools; the number of runs deleted."""
        oldest = self.now().astimezone(UTC) - timedelta(seconds=self.config.daemon.max_run_age)
        deleted = 0
        for tool in self.mine():
            result = await self.store.range(self.keys.runs(tool))
            runs: list[tuple[str, Run | None]] = []
            for kv in result.kvs:
                try:
                    runs.append((kv.key, Run.from_value(kv.value)))
                except MaomaoError:
                    runs.append((kv.key, None))
            for key in expired_runs(runs, self.config.daemon.keep_runs, oldest):
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
                    log.info("retention: deleted %d old run records", deleted)
            except (StoreUnavailable, StoreError) as exc:
                log.warning("retention: %s", exc)
            await trio.sleep(INTERVAL)
