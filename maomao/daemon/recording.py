"""Recording a finished run: fenced by the claim, kept in a local outbox while the store is away.

A run is recorded in one transaction that puts ``runs/<tool>/<run-id>`` and
deletes the claim (and the run request), only while the claim is still the
one this member created: its create_revision is the fencing token.  (Only
its owner changes a claim, to mark it running; a claim that expired and was
taken again is a new key with a new create_revision.  A mod_revision would
not do: a write whose answer the store lost moves it without the member
knowing.)  If the claim
has gone because this member's lease expired while nobody else took the
slot over (a store outage longer than the ttl), the run is still recorded,
as long as neither a claim nor a run exists for it.  A member that lost its
claim to another member records nothing.

When the store does not answer, the pending record goes to the outbox, a
directory of one JSON file per run, written atomically, and is recorded
from there once the store is back.  Nothing a run produced is lost to an
outage or a restart of the daemon.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trio

from maomao.errors import StoreError, StoreUnavailable
from maomao.model import Run
from maomao.store import Compare, Delete, Get, KeyValue, Operation, Put, Store

log = logging.getLogger(__name__)

Outcome = Literal["recorded", "fenced", "pending"]


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """A run record and what fences it."""

    run: Run
    run_key: str
    claim_key: str
    fence: int
    request_key: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "run": self.run.to_dict(),
                "run_key": self.run_key,
                "claim_key": self.claim_key,
                "fence": self.fence,
                "request_key": self.request_key,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PendingRecord:
        data: dict[str, Any] = json.loads(text)
        return cls(
            Run.from_dict(data["run"]), data["run_key"], data["claim_key"], int(data["fence"]), data["request_key"]
        )


async def write_record(store: Store, pending: PendingRecord) -> Literal["recorded", "fenced"]:
    """Record the run if this member still holds (or nobody took) its claim."""
    ops: list[Operation] = [Put(pending.run_key, pending.run.to_value()), Delete(pending.claim_key)]
    if pending.request_key:
        ops.append(Delete(pending.request_key))
    result = await store.txn(
        [Compare(pending.claim_key, "create", "=", pending.fence)], ops, [Get(pending.claim_key), Get(pending.run_key)]
    )
    if result.succeeded:
        return "recorded"
    claim_now, run_now = result.results
    if claim_now is None and run_now is None:
        orphan = await store.txn(
            [Compare(pending.claim_key, "create", "=", 0), Compare(pending.run_key, "create", "=", 0)], ops
        )
        if orphan.succeeded:
            return "recorded"
    return "fenced"


async def slot_held(store: Store, claim_key: str, run_key: str, fence: int) -> bool | None:
    """Whether this member may still record (and push) the run: what :func:`write_record` would say.

    True while the claim is the one it created (or neither a claim nor a run
    exists), False once another member claimed the slot or recorded it, None
    when the store does not answer.
    """
    try:
        result = await store.txn([], [Get(claim_key), Get(run_key)])
    except (StoreUnavailable, StoreError):
        return None
    claim_now, run_now = result.results
    if claim_now is None:
        return run_now is None
    return isinstance(claim_now, KeyValue) and claim_now.create_revision == fence


#: what the outbox calls once a run's fate is settled: its tool, its run id, "recorded" or "fenced"
Settled = Callable[[str, str, Literal["recorded", "fenced"]], Awaitable[None]]


class Outbox:
    """Run records waiting for the store, one file each under ``directory``."""

    def __init__(self, store: Store, directory: Path, settled: Settled | None = None) -> None:
        self.store = store
        self.directory = directory
        #: told about every run recorded from the outbox and every run fenced (its commit must stay here)
        self.settled = settled
        self._wake = trio.Event()
        #: claim keys of the runs waiting here (their claims are not orphans)
        self.held: set[str] = set()
        for path in self._files():
            try:
                self.held.add(PendingRecord.from_json(path.read_text()).claim_key)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # flush moves it aside

    def __len__(self) -> int:
        return len(self.held)

    def _files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.json"))
        except OSError:
            return []

    def add(self, pending: PendingRecord) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{pending.run.tool}.{pending.run.id}.json"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(pending.to_json())
        os.replace(tmp, self.directory / name)
        self.held.add(pending.claim_key)
        self._wake.set()

    async def record(self, pending: PendingRecord) -> Outcome:
        """Record now, or keep it in the outbox when the store does not answer."""
        try:
            outcome = await write_record(self.store, pending)
        except (StoreUnavailable, StoreError) as exc:
            log.warning("run %s of %s kept in the outbox: %s", pending.run.id, pending.run.tool, exc)
            self.add(pending)
            return "pending"
        if outcome == "fenced":
            log.warning("run %s of %s lost its claim to another member: not recorded", pending.run.id, pending.run.tool)
            await self._settle(pending, outcome)
        return outcome

    async def _settle(self, pending: PendingRecord, outcome: Literal["recorded", "fenced"]) -> None:
        if self.settled is not None:
            await self.settled(pending.run.tool, pending.run.id, outcome)

    async def flush(self) -> int:
        """Record what the outbox holds; the number still waiting."""
        waiting = 0
        for path in self._files():
            try:
                pending = PendingRecord.from_json(path.read_text())
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("outbox file %s is unreadable (%s); moved aside", path, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            try:
                outcome = await write_record(self.store, pending)
            except (StoreUnavailable, StoreError):
                waiting += 1
                continue
            log.info("outbox: run %s of %s %s", pending.run.id, pending.run.tool, outcome)
            path.unlink(missing_ok=True)
            self.held.discard(pending.claim_key)
            await self._settle(pending, outcome)
        return waiting

    async def flush_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            waiting = await self.flush() if self._files() else 0
            self._wake = trio.Event()
            with trio.move_on_after(2.0 if waiting else 30.0):
                await self._wake.wait()
