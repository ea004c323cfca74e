"""The executor: runs the slots this member claimed, at most ``max_parallel`` at once.

For each claimed job: mark the claim ``running`` (fenced), run the tool
with its runtime's runner in a cancel scope of its own, and record the
outcome (see :mod:`maomao.daemon.recording`).  A slot that comes while the
tool's previous run is still going, with ``--concurrency forbid``, is
recorded as ``skipped``.  ``drain`` lets running jobs finish for a grace
period, then cancels them (their runner stops the process) and records
them ``cancelled``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import trio

from maomao.config import Config
from maomao.daemon.cache import StateCache
from maomao.daemon.datarepos import DataRepos, GitOutcome, RunFacts
from maomao.daemon.detection import Detection
from maomao.daemon.recording import Outbox, PendingRecord, slot_held
from maomao.errors import StoreError, StoreUnavailable
from maomao.gitdata import GitError
from maomao.metrics import Metrics
from maomao.model import Claim, Run, Tool, utc_iso
from maomao.runner import Confinement, Runner, RunnerUnavailable, RunOutcome, RunSpec, log_path
from maomao.store import Compare, Put, Store
from maomao.store.keys import Keys

log = logging.getLogger(__name__)


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    """A claimed run on its way through this member."""

    tool: str
    run_id: str
    slot: str
    trigger: str
    claim: Claim
    #: the claim's create_revision: what fences marking it running and recording the run
    fence: int
    lease: int
    request_key: str | None = None
    forbid_overlap: bool = False
    #: an ``--on all`` run: overlap counts on this member only
    per_member: bool = False
    #: a slot claimed ahead of its time starts at its time
    not_before: datetime | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: seconds each phase took (git, run, commit, record), for the log line a run ends with
    phases: dict[str, float] = field(default_factory=dict)

    def timed(self, phase: str, since: float) -> float:
        """Note that ``phase`` ran from ``since`` until now; return now (trio's clock)."""
        now = trio.current_time()
        self.phases[phase] = now - since
        return now


class Executor:
    """Runs claimed jobs and records them."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        config: Config,
        cache: StateCache,
        runners: dict[str, Runner],
        outbox: Outbox,
        now: Callable[[], datetime] | None = None,
        repos: DataRepos | None = None,
        detection: Detection | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.now = now or wall_clock
        self.metrics = metrics or Metrics()
        self.store = store
        self.keys = keys
        self.config = config
        self.cache = cache
        self.runners = runners
        self.outbox = outbox
        #: the tools' git data repositories (None: runs write into a plain directory)
        self.repos = repos
        #: spike detection after successful runs (None: none)
        self.detection = detection
        self.active: dict[str, Job] = {}
        self.finished = 0
        self._nursery: trio.Nursery | None = None
        self._idle = trio.Event()

    @property
    def capacity(self) -> int:
        return self.config.daemon.max_parallel - len(self.active)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def start(self, job: Job) -> None:
        assert self._nursery is not None, "executor not serving"
        self.active[f"{job.tool}/{job.run_id}"] = job
        self._nursery.start_soon(self._execute, job)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running jobs, then cancel the rest."""
        with trio.move_on_after(grace):
            while self.active:
                self._idle = trio.Event()
                await self._idle.wait()
        for job in list(self.active.values()):
            log.warning("cancelling run %s of %s (shutdown grace over)", job.run_id, job.tool)
            job.scope.cancel()
        with trio.move_on_after(self.config.daemon.kill_grace + 5):
            while self.active:
                self._idle = trio.Event()
                await self._idle.wait()

    # -- one job -----------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        try:
            if job.not_before is not None:
                await trio.sleep(max(0.0, (job.not_before - self.now()).total_seconds()))
                # a scheduled slot's run starts now: how late (a takeover, a backlog, a busy member)
                self.metrics.lateness.observe(max(0.0, (self.now() - job.not_before).total_seconds()))
            began = trio.current_time()
            run = await self._run(job)
            if run is not None:
                recording = trio.current_time()
                pending = PendingRecord(
                    run, self.keys.run(job.tool, job.run_id), self.keys.claim(job.tool, job.run_id), job.fence,
                    job.request_key,
                )
                with trio.CancelScope(shield=True):
                    outcome = await self.outbox.record(pending)
                if outcome == "recorded":
                    self.cache.note_recorded(pending.run_key)
                job.timed("record", recording)
                total = (trio.current_time() - began) * 1000
                self.metrics.runs.inc(tool=job.tool, state=run.state)
                self.metrics.run_duration.observe(total / 1000, tool=job.tool)
                phases = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in job.phases.items())
                log.info(
                    "run %s of %s: %s (%s) in %.0f ms (%s)", job.run_id, job.tool, run.state, outcome, total, phases
                )
        except Exception:
            log.exception("bug: run %s of %s failed inside the executor", job.run_id, job.tool)
        finally:
            self.finished += 1
            self.active.pop(f"{job.tool}/{job.run_id}", None)
            self._idle.set()

    def _run_record(
        self, job: Job, state: str, outcome: RunOutcome | None = None, detail: str = "", output_tail: str = "",
        git: GitOutcome | None = None, detection: tuple[dict[str, Any], ...] = (),
    ) -> Run:
        now = utc_iso(datetime.now(UTC))
        git = git or GitOutcome()
        notes = [n for n in (detail or (outcome.detail if outcome else ""), git.detail) if n]
        return Run(
            id=job.run_id,
            tool=job.tool,
            slot=job.slot,
            trigger=job.trigger,
            member=job.claim.member,
            state=state,
            started=utc_iso(outcome.started) if outcome else job.claim.started,
            finished=utc_iso(outcome.finished) if outcome else now,
            exit_code=outcome.exit_code if outcome else None,
            output_tail=outcome.output_tail if outcome else output_tail,
            detail="; ".join(notes),
            commit=git.commit,
            push=git.push,
            branch=git.branch,
            image=outcome.image if outcome else None,
            detection=detection,
        )

    async def _mark_running(self, job: Job) -> bool:
        running = Claim(**{**job.claim.to_dict(), "state": "running", "started": utc_iso(datetime.now(UTC))})
        key = self.keys.claim(job.tool, job.run_id)
        try:
            result = await self.store.txn(
                [Compare(key, "create", "=", job.fence)], [Put(key, running.to_value(), job.lease)]
            )
        except (StoreUnavailable, StoreError) as exc:
            log.warning("run %s of %s: could not mark it running (%s); running it anyway", job.run_id, job.tool, exc)
            job.claim = running
            return True
        if not result.succeeded:
            log.warning("run %s of %s: claim lost as it started; stopping it", job.run_id, job.tool)
            return False
        job.claim = running
        return True

    async def _run(self, job: Job) -> Run | None:
        tool = self.cache.tools.get(job.tool)
        if tool is None:
            key = self.keys.tool(job.tool)
            why = (
                f"tool {job.tool}'s record ({key}) is not readable; nothing ran"
                if self.cache.unreadable(key) else f"tool {job.tool} is no longer registered"
            )
            return self._run_record(job, "failed", detail=why)
        if job.forbid_overlap:
            # another slot's run still going (for --on all: on this member)
            # (a claim of this member's whose job is not active has finished; its record may wait
            # in the outbox, or its deletion may not have reached the cache yet)
            others = [
                c for c in self.cache.claims_of(job.tool)
                if c.slot != job.slot and (not job.per_member or c.member == job.claim.member)
                and (c.member != job.claim.member or f"{c.tool}/{c.name}" in self.active)
            ]
            if others:
                return self._run_record(job, "skipped", detail=f"run {others[0].name} was still going")
        runner = self.runners.get(tool.runtime)
        if runner is None:
            return self._run_record(job, "failed", detail=f"runtime {tool.runtime} is not available on this member")
        spec = self._spec(tool, job)
        outcome: RunOutcome | None = None
        lost = False

        async def mark_running() -> None:
            # off the start's critical path; the nursery waits for it, so a
            # claim lost as the run started is known before the run is recorded
            nonlocal lost
            if not await self._mark_running(job):
                lost = True
                job.scope.cancel()

        unavailable = ""
        note = ""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mark_running)
            try:
                with job.scope:
                    since = trio.current_time()
                    if self.repos is not None:
                        note = await self.repos.prepare(tool)
                        since = job.timed("git", since)
                    outcome = await runner.run(spec)
                    job.timed("run", since)
            except (RunnerUnavailable, GitError) as exc:
                unavailable = str(exc)
        if lost:
            return None
        if unavailable:
            return self._run_record(job, "failed", detail=unavailable)
        cancelled = outcome is None or job.scope.cancelled_caught
        state = "cancelled" if cancelled or outcome is None else outcome.state
        git = None
        if self.repos is not None:
            facts = RunFacts(tool.name, job.run_id, job.slot, job.claim.member, job.trigger, state)
            since = trio.current_time()
            owned = partial(
                slot_held, self.store, self.keys.claim(job.tool, job.run_id), self.keys.run(job.tool, job.run_id),
                job.fence,
            )
            with trio.CancelScope(shield=True):
                git = await self.repos.finish(tool, facts, note, owned)
            job.timed("commit", since)
            if git is not None and git.push == "lost":
                log.warning("run %s of %s: the slot went to another member while it ran; recording nothing",
                            job.run_id, job.tool)
                return None
        if cancelled or outcome is None:
            return self._cancelled(job, spec, git)
        detection: tuple[dict[str, Any], ...] = ()
        if self.detection is not None and outcome.state == "succeeded":
            since = trio.current_time()
            with trio.CancelScope(shield=True):
                detection = await self.detection.after_run(tool, job.run_id, job.claim.member, spec.workdir)
            job.timed("detect", since)
        return self._run_record(job, outcome.state, outcome, git=git, detection=detection)

    def _cancelled(self, job: Job, spec: RunSpec, git: GitOutcome | None = None) -> Run:
        from maomao.runner import read_tail

        return self._run_record(
            job, "cancelled", detail="stopped at shutdown", output_tail=read_tail(spec.log_path), git=git
        )

    def _spec(self, tool: Tool, job: Job) -> RunSpec:
        importdir: Path = self.config.importdir
        return RunSpec(
            tool=tool,
            run_id=job.run_id,
            slot=job.slot,
            member=job.claim.member,
            workdir=importdir / tool.name,
            log_path=log_path(importdir, tool.name, job.run_id),
            timeout=tool.timeout or self.config.daemon.run_timeout,
            kill_grace=self.config.daemon.kill_grace,
            confinement=Confinement.of(tool, self.config.runner),
        )
