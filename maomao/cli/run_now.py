"""``maomao ctl tool run``: run a tool now, through a live member or right here.

Through a member, ``ctl`` writes an intent and watches what the daemons do
with it (the store is the API):

1. ``requests/<run-id>``: a :class:`~maomao.model.RunRequest`, created only
   if absent.  The run id is ``<slot_id(now)>-<6 hex>`` and is the run's
   slot too.  Nothing is written when no live member is eligible.
2. A member claims it: ``claims/<tool>/<run-id>``, a
   :class:`~maomao.model.Claim` bound to its lease, state ``claimed`` and
   then ``running``.
3. At the end, in one transaction, the member puts
   ``runs/<tool>/<run-id>`` (a :class:`~maomao.model.Run`, trigger
   ``request``) and deletes the claim and the request.

``ctl`` watches those three keys from the revision after its request,
prints each change of state, and then the run's report.  When no member
claims the request within ``--claim-timeout`` it withdraws it (deletes the
request, only while neither a claim nor a run exists) and fails.  A claim
that disappears without a run (its member died) sends it back to waiting
for a claim: the request is still there for another member.

``--here`` runs the tool inside this process with the ``process`` runtime
and records the run itself.  Ctrl-C stops waiting (withdrawing a request no
member has taken yet) or stops the process run here.
"""

from __future__ import annotations

import getpass
import math
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import trio

from maomao.cli.output import warn
from maomao.cli.runs import emit_report, outcome_line
from maomao.config import Config
from maomao.errors import Compacted, MaomaoError
from maomao.model import Claim, Member, Run, RunRequest, Tool, utc_iso
from maomao.registry import Registry
from maomao.schedule import slot_id
from maomao.store import Compare, Delete, Event, Get, KeyValue, Store
from maomao.store.keys import Keys

T = TypeVar("T")

#: exit status after Ctrl-C, as a shell reports a SIGINT death
INTERRUPTED = 130


def new_run_id(now: datetime) -> str:
    """``20261130T030512Z-a1b2c3``: sorts by time, unique without coordination."""
    return f"{slot_id(now)}-{secrets.token_hex(3)}"


def requester() -> str:
    """``user@host`` of whoever runs ``ctl``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def say(line: str) -> None:
    print(line, flush=True)


def no_member(tool: Tool, on: str, members: Sequence[Member]) -> MaomaoError:
    """The one-line failure when no live member may take the run."""
    if not members:
        return MaomaoError(f"no members are running: no one can run tool {tool.name}")
    where = "" if on == "any" else f", on {on}"
    names = ", ".join(m.name for m in members)
    return MaomaoError(f"no live member can run tool {tool.name} (runtime {tool.runtime}{where}); members: {names}")


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


# -- through a member ---------------------------------------------------------------------------


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


async def request_run(
    registry: Registry, tool_name: str, on: str, wait: bool, claim_timeout: float
) -> int:
    """Ask the live members to run the tool; follow the run unless ``wait`` is false."""
    tool = await registry.tools.get(tool_name)
    members = await registry.members.list()
    for problem in members.unreadable:
        warn(problem)
    if not any(member.eligible(on, tool.runtime) for member in members.records):
        raise no_member(tool, on, members.records)
    now = datetime.now(UTC)
    run_id = new_run_id(now)
    request = RunRequest(name=run_id, tool=tool.name, on=on, created=utc_iso(now), by=requester())
    revision = await registry.store.put(registry.keys.request(run_id), request.to_value(), if_revision=0)
    if not wait:
        say(run_id)
        return 0
    say(f"requested run {run_id} of tool {tool.name}")
    follower = Follower(registry.store, registry.keys, tool.name, run_id, claim_timeout)
    run, interrupted = await until_interrupted(lambda: follower.follow(revision + 1))
    if run is None or interrupted:
        with trio.CancelScope(shield=True):
            if follower.holder is None and await follower.withdraw():
                sys.stderr.write(f"interrupted: request {run_id} withdrawn\n")
            else:
                sys.stderr.write(f"interrupted: run {run_id} goes on (see: maomao ctl tool runs {tool.name})\n")
        return INTERRUPTED
    say(outcome_line(run))
    emit_report(run)
    return 0 if run.state == "succeeded" else 1


# -- here ---------------------------------------------------------------------------------------


async def run_here(registry: Registry, config: Config, tool_name: str) -> int:
    """Run the tool in this process, its data repository and all, and record the run."""
    from maomao.daemon.datarepos import DataRepos, GitOutcome, RunFacts
    from maomao.gitdata import GitError
    from maomao.runner import Confinement, Runner, RunnerUnavailable, RunOutcome, RunSpec, log_path, read_tail

    tool = await registry.tools.get(tool_name)
    runner: Runner
    if tool.runtime == "container":
        from maomao.runner.container import ContainerRunner

        runner = ContainerRunner(config.runner)
        runner.remove_in_background = False  # this process ends with the run
    else:
        from maomao.runner.process import ProcessRunner

        runner = ProcessRunner()
    now = datetime.now(UTC)
    run_id = new_run_id(now)
    spec = RunSpec(
        tool=tool,
        run_id=run_id,
        slot=run_id,
        member=config.member,
        workdir=config.importdir / tool.name,
        log_path=log_path(config.importdir, tool.name, run_id),
        timeout=tool.timeout or config.daemon.run_timeout,
        kill_grace=config.daemon.kill_grace,
        confinement=Confinement.of(tool, config.runner),
    )
    repos = DataRepos(config)
    say(f"running {run_id} of tool {tool.name} here, as {config.member}")

    async def work() -> tuple[RunOutcome, str]:
        try:
            note = await repos.prepare(tool)
            return await runner.run(spec), note
        except (GitError, RunnerUnavailable) as exc:
            return RunOutcome("failed", None, now, datetime.now(UTC), read_tail(spec.log_path), str(exc)), "skip"

    result, interrupted = await until_interrupted(work)
    # interrupted: the runner stopped the tool before it returned an outcome
    outcome, note = result or (
        RunOutcome("cancelled", None, now, datetime.now(UTC), read_tail(spec.log_path), "interrupted"), ""
    )
    git = GitOutcome()
    if note != "skip":  # the tool ran (or was stopped): commit what it wrote
        with trio.CancelScope(shield=True):
            facts = RunFacts(tool.name, run_id, run_id, config.member, "request", outcome.state)
            git = await repos.finish(tool, facts, note)
    run = Run(
        id=run_id,
        tool=tool.name,
        slot=run_id,
        trigger="request",
        member=config.member,
        state=outcome.state,
        started=utc_iso(outcome.started),
        finished=utc_iso(outcome.finished),
        exit_code=outcome.exit_code,
        output_tail=outcome.output_tail,
        detail="; ".join(d for d in (outcome.detail, git.detail) if d),
        commit=git.commit,
        push=git.push,
        branch=git.branch,
        image=outcome.image,
    )
    say(outcome_line(run))
    emit_report(run)
    try:
        with trio.CancelScope(shield=True):
            await registry.store.put(registry.keys.run(tool.name, run_id), run.to_value(), if_revision=0)
    except MaomaoError as exc:
        raise MaomaoError(f"run {run_id} could not be recorded: {exc}") from exc
    if interrupted:
        return INTERRUPTED
    return 0 if run.state == "succeeded" else 1
