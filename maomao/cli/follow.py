"""Following a requested run through the store until a member has recorded it (``tool run``).

``ctl`` watches the request, the claim and the run record from the
revision after its request, prints each change of state, and then the
run's report.  When no member claims the request within
``--claim-timeout`` it withdraws it (deletes the request, only while
neither a claim nor a run exists) and fails.  A claim that disappears
without a run (its member died) sends it back to waiting for a claim: the
request is still there for another member.  Ctrl-C stops waiting,
withdrawing a request no member has taken yet.
"""

from __future__ import annotations

import math
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from maomao.cli.output import warn
from maomao.cli.run_now import INTERRUPTED, Requested, say
from maomao.cli.runs import emit_report, outcome_line
from maomao.errors import Compacted, MaomaoError
from maomao.model import Claim, Run
from maomao.registry import Registry
from maomao.store import Compare, Delete, Event, Get, KeyValue, Store
from maomao.store.keys import Keys

T = TypeVar("T")
#: seconds between looks at an embedded store's file for the daemon's changes, while a person waits
FOLLOW_POLL = 0.01


async def until_interrupted(work: Callable[[], Awaitable[T]]) -> tuple[T | None, bool]:
    """Run ``work``; a SIGINT cancels it.  Returns its result and whether it was interrupted."""
    result: T | None = None
    error: MaomaoError | None = None
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def main() -> None:
                nonlocal result, error
                try:
                    result = await work()
                except MaomaoError as exc:
                    error = exc  # raised below, not wrapped in the nursery's exception group
                nursery.cancel_scope.cancel()

            async def listen() -> None:
                nonlocal interrupted
                async for _ in signals:
                    interrupted = True
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(main)
            nursery.start_soon(listen)
    if error is not None:
        raise error
    return result, interrupted


class Follower:
    """Follows one requested run through the store, printing each change of its state."""

    def __init__(self, store: Store, keys: Keys, tool: str, run_id: str, claim_timeout: float) -> None:
        self.store = store
        self.keys = keys
        self.tool = tool
        self.run_id = run_id
        self.claim_timeout = claim_timeout
        self.request_key = keys.request(run_id)
        self.claim_key = keys.claim(tool, run_id)
        self.run_key = keys.run(tool, run_id)
        #: the member holding the claim, None while the request waits for one
        self.holder: str | None = None
        self._said: str | None = None
        self._deadline = math.inf

    async def follow(self, from_revision: int) -> Run:
        """Wait for the run's record; fail when no member claims the request in time."""
        send, receive = trio.open_memory_channel[Event | MaomaoError](math.inf)
        self._deadline = trio.current_time() + self.claim_timeout
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, from_revision, send)
            try:
                outcome = await self._follow(receive)
            finally:
                nursery.cancel_scope.cancel()
        # raised out here, not inside the nursery, which would wrap it in an exception group
        if isinstance(outcome, MaomaoError):
            raise outcome
        return outcome

    async def _follow(self, receive: trio.MemoryReceiveChannel[Event | MaomaoError]) -> Run | MaomaoError:
        try:
            while True:
                item: Event | MaomaoError | None = None
                with trio.move_on_at(self._deadline if self.holder is None else math.inf):
                    item = await receive.receive()
                if item is None:
                    await self._claim_timed_out()
                    continue
                if isinstance(item, MaomaoError):
                    return item
                run = await self._on(item)
                if run is not None:
                    return run
        except MaomaoError as exc:
            return exc

    async def withdraw(self) -> bool:
        """Delete the request while no member has claimed or run it; whether that held."""
        absent = [Compare(self.claim_key, "create", "=", 0), Compare(self.run_key, "create", "=", 0)]
        result = await self.store.txn(absent, [Delete(self.request_key)])
        return result.succeeded

    async def _claim_timed_out(self) -> None:
        if await self.withdraw():
            raise MaomaoError(
                f"no member took run {self.run_id} of tool {self.tool} within {self.claim_timeout:g}s; "
                "request withdrawn"
            )
        # a claim or the run is there after all: its event is on its way
        self._deadline = trio.current_time() + self.claim_timeout

    def _say(self, line: str) -> None:
        if line != self._said:
            say(line)
            self._said = line

    async def _on(self, event: Event) -> Run | None:
        """Act on one change of the request, the claim or the run; the run once it is recorded."""
        key = event.kv.key
        if key == self.run_key:
            return Run.from_value(event.kv.value) if event.type == "put" else None
        if key == self.claim_key and event.type == "put":
            try:
                claim = Claim.from_value(event.kv.value)
            except MaomaoError as exc:
                warn(str(exc))
                return None
            self.holder = claim.member
            self._say(f"claimed by {claim.member}" if claim.state == "claimed" else f"{claim.state} on {claim.member}")
            return None
        # the claim or the request is gone: the run is recorded in the same transaction, or it is not coming
        found = await self.store.txn([], [Get(self.run_key), Get(self.claim_key), Get(self.request_key)])
        run_kv, claim_kv, request_kv = found.results
        if isinstance(run_kv, KeyValue):
            return Run.from_value(run_kv.value)
        if key == self.claim_key and not isinstance(claim_kv, KeyValue) and self.holder is not None:
            self._say(f"{self.holder} gave the run up (its lease ended); waiting for another member")
            self.holder = None
            self._deadline = trio.current_time() + self.claim_timeout
        if not isinstance(request_kv, KeyValue) and not isinstance(claim_kv, KeyValue):
            raise MaomaoError(f"the request for run {self.run_id} of tool {self.tool} was deleted before it ran")
        return None

    async def _watch(self, start: int, send: trio.MemorySendChannel[Event | MaomaoError]) -> None:
        """Send the changes of the three keys; on compaction, their current state, and watch on."""
        keys = (self.request_key, self.claim_key, self.run_key)
        try:
            while True:
                try:
                    # cancelled or failing, the watch ends inside its generator, which closes it
                    async for event in self.store.watch(self.keys.prefix, start):
                        if event.kv.key in keys:
                            await send.send(event)
                except Compacted:
                    now = await self.store.txn([], [Get(key) for key in keys])
                    for key, kv in zip(keys, now.results, strict=True):
                        if isinstance(kv, KeyValue):
                            await send.send(Event("put", kv))
                        elif key == self.request_key:
                            await send.send(Event("delete", KeyValue(key, b"", 0, now.revision, 0)))
                    start = now.revision + 1
        except MaomaoError as exc:
            await send.send(exc)


async def follow_request(registry: Registry, requested: Requested, claim_timeout: float) -> int:
    """Follow the run to its end and report it: 0 when it succeeded, 1 when not, 130 on Ctrl-C."""
    from maomao.store.embedded import EmbeddedStore

    if isinstance(registry.store, EmbeddedStore):
        registry.store.poll_interval = FOLLOW_POLL
    follower = Follower(registry.store, registry.keys, requested.tool, requested.run_id, claim_timeout)
    run, interrupted = await until_interrupted(lambda: follower.follow(requested.revision + 1))
    if run is None or interrupted:
        with trio.CancelScope(shield=True):
            if follower.holder is None and await follower.withdraw():
                sys.stderr.write(f"interrupted: request {requested.run_id} withdrawn\n")
            else:
                sys.stderr.write(
                    f"interrupted: run {requested.run_id} goes on (see: maomao ctl tool runs {requested.tool})\n"
                )
        return INTERRUPTED
    say(outcome_line(run))
    emit_report(run)
    return 0 if run.state == "succeeded" else 1
