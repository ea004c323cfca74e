"""The scheduler: which slots are due, who should take them, and claiming them.

Every member computes the same slots from the same schedules (DESIGN
section 5).  For each due slot it picks the preferred member by rendezvous
hashing over the live members eligible for the tool; the preferred member
claims at once, the others only after ``claim_grace``, which spreads the
load and still covers a member that is gone.  A claim is a transaction:
``claims/<tool>/<run-id>`` and ``runs/<tool>/<run-id>`` both absent -> put
the claim bound to this member's lease.  One member wins; its claim's
create_revision fences what it records.  A slot stays pending on every member
until its run is recorded or its deadline passes, so when a claimer dies
and its lease expires the claim disappears and another member takes the
slot over.

``--on all`` slots have one run per eligible member (run id
``<slot>.<member>``), claimed by that member alone.  Run-now requests
(``requests/<run-id>``) go the same way, with no deadline.

Missed slots (all members down, the daemon just started) follow the
schedule's ``catch_up``: ``latest`` runs the newest missed slot once,
``skip`` runs none, ``all`` runs each (at most 100).  Only slots at or after
the schedule's creation count.

Each pass of the loop returns a sentence saying what it did (for logs and
tests) and bumps ``progress``; ``progress`` and ``idle`` (waiting between
passes) drive the systemd watchdog.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import trio

from maomao.config import Config
from maomao.daemon.cache import StateCache
from maomao.daemon.executor import Executor, Job, wall_clock
from maomao.daemon.membership import Membership
from maomao.errors import LeaseExpired, StoreError, StoreUnavailable, ValidationError
from maomao.model import Claim, Schedule, parse_iso, utc_iso
from maomao.schedule import Expression, slot_id
from maomao.store import Compare, Delete, Get, Put, Store
from maomao.store.keys import Keys

log = logging.getLogger(__name__)

#: most missed slots one tool catches up with ``catch_up = all``
CATCH_UP_LIMIT = 100
#: claims in flight at once
CLAIMS_IN_FLIGHT = 16
#: the preferred member claims a scheduled slot this early, and starts its run on time
LEAD = timedelta(seconds=0.3)


def preferred_member(tool: str, run_id: str, members: list[str]) -> str:
    """Rendezvous hashing: every member computes the same choice."""
    return max(members, key=lambda m: hashlib.sha256(f"{tool}/{run_id}/{m}".encode()).digest())


@dataclass
class Pending:
    """A slot (or request) not yet recorded."""

    tool: str
    run_id: str
    slot: str
    due: datetime
    deadline: datetime | None
    trigger: str
    on: str
    request_key: str | None = None
    forbid_overlap: bool = False
    #: catch_up = all with concurrency = forbid: a backlog runs one slot at a time
    sequential: bool = False


@dataclass
class Tracked:
    """A scheduled tool and its next fire time."""

    schedule: Schedule
    expression: Expression
    next_fire: datetime


class Scheduler:
    """Turns schedules and requests into claimed jobs for the executor."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        config: Config,
        cache: StateCache,
        membership: Membership,
        executor: Executor,
        now: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.store = store
        self.keys = keys
        self.config = config
        self.cache = cache
        self.membership = membership
        self.executor = executor
        self.now = now
        self.tracked: dict[str, Tracked] = {}
        self.pending: dict[str, Pending] = {}
        self.progress = 0
        #: True while the loop waits between passes (healthy, however long the wait)
        self.idle = False
        self.stopped = False
        #: (next fire, tool), a heap; entries whose time is no longer the tool's are stale
        self._fires: list[tuple[datetime, str]] = []
        self._seen: dict[str, int] = {}
        self._claims = trio.CapacityLimiter(CLAIMS_IN_FLIGHT)

    @property
    def me(self) -> str:
        return self.membership.name

    def takeover_window(self) -> timedelta:
        """How long after its time a slot may still be taken over from a dead claimer."""
        daemon = self.config.daemon
        return timedelta(seconds=self.config.store.ttl * 1.5 + daemon.claim_grace * 2 + 5)

    # -- which slots ---------------------------------------------------------

    def _work(self, schedule: Schedule, expression: Expression, fire: datetime) -> Pending | None:
        tool = self.cache.tools.get(schedule.name)
        runtime = tool.runtime if tool else "container"
        # catch_up = all keeps a slot until it runs; the others give up on it
        # after a period, or after the time a takeover from a dead claimer needs
        deadline = None if schedule.catch_up == "all" else fire + max(expression.period, self.takeover_window())
        run_id = slot_id(fire)
        if schedule.on == "all":
            member = self.cache.members.get(self.me)
            if member is None or not member.eligible("all", runtime):
                return None
            run_id = f"{run_id}.{self.me}"
        forbid = schedule.concurrency == "forbid"
        sequential = forbid and schedule.catch_up == "all"
        return Pending(
            schedule.name, run_id, utc_iso(fire), fire, deadline, "schedule", schedule.on,
            forbid_overlap=forbid and not sequential, sequential=sequential,
        )

    def _add(self, work: Pending | None) -> None:
        if work is None:
            return
        key = f"{work.tool}/{work.run_id}"
        if key not in self.pending and not self.cache.is_recorded(self.keys.run(work.tool, work.run_id)):
            self.pending[key] = work

    def _fired(self, tracked: Tracked, fires: list[datetime], now: datetime, first: bool) -> None:
        """Queue the slots that fired, per the schedule's catch-up policy."""
        schedule = tracked.schedule
        created = parse_iso(schedule.created) if schedule.created else datetime.min.replace(tzinfo=UTC)
        fires = [f for f in fires if f >= created]
        if not fires:
            return
        if schedule.catch_up == "all":
            chosen = fires[-CATCH_UP_LIMIT:]
        elif schedule.catch_up == "skip" and first:
            window = timedelta(seconds=self.config.daemon.claim_grace + 10)
            chosen = [fires[-1]] if now - fires[-1] <= window else []
        else:
            chosen = fires[-1:]
        for fire in chosen:
            self._add(self._work(schedule, tracked.expression, fire))

    def _changed(self, collection: str) -> bool:
        version = self.cache.versions[collection]
        if self._seen.get(collection) == version:
            return False
        self._seen[collection] = version
        return True

    def _sync(self, now: datetime) -> None:
        """Follow changes to schedules and requests (work only when they changed)."""
        if self._changed("schedules"):
            self._sync_schedules(now)
        if self._changed("requests"):
            self._sync_requests(now)

    def _sync_schedules(self, now: datetime) -> None:
        for name, schedule in self.cache.schedules.items():
            tracked = self.tracked.get(name)
            if tracked is not None and tracked.schedule == schedule:
                continue
            try:
                expression = schedule.parsed()
            except ValidationError as exc:
                log.error("schedule of %s: %s", name, exc)
                continue
            tracked = Tracked(schedule, expression, expression.next_after(now))
            self.tracked[name] = tracked
            heapq.heappush(self._fires, (tracked.next_fire, name))
            if schedule.catch_up == "all":
                fires = expression.fires_between(now - expression.period * CATCH_UP_LIMIT, now, CATCH_UP_LIMIT)
            else:
                last = expression.last_at_or_before(now)
                fires = [last] if last else []
            self._fired(tracked, fires, now, first=True)
        for name in set(self.tracked) - set(self.cache.schedules):
            del self.tracked[name]
            for key, work in list(self.pending.items()):
                if work.tool == name and work.trigger == "schedule":
                    del self.pending[key]

    def _sync_requests(self, now: datetime) -> None:
        for run_id, request in self.cache.requests.items():
            key = f"{request.tool}/{run_id}"
            if key not in self.pending and not self.cache.is_recorded(self.keys.run(request.tool, run_id)):
                self.pending[key] = Pending(
                    request.tool, run_id, run_id, now, None, "request", request.on,
                    request_key=self.keys.request(run_id),
                )
        for key, work in list(self.pending.items()):
            if work.trigger == "request" and work.run_id not in self.cache.requests:
                del self.pending[key]

    # -- one pass ----------------------------------------------------------------

    async def tick(self) -> tuple[str, float]:
        """One pass: queue what fired, claim what is ours to claim.

        Returns what it did, as a sentence, and the seconds until it needs
        to look again.
        """
        now = self.now()
        self._sync(now)
        wake = now + timedelta(seconds=1)
        horizon = now + LEAD  # slots this close are queued (and claimed) ahead of their time
        while self._fires and self._fires[0][0] <= horizon:
            fire, name = heapq.heappop(self._fires)
            tracked = self.tracked.get(name)
            if tracked is None or tracked.next_fire != fire:
                continue  # unscheduled or rescheduled since
            fires = tracked.expression.fires_between(fire - timedelta(seconds=1), horizon, CATCH_UP_LIMIT)
            tracked.next_fire = tracked.expression.next_after(horizon)
            heapq.heappush(self._fires, (tracked.next_fire, name))
            self._fired(tracked, fires, now, first=False)
        if self._fires:
            wake = min(wake, self._fires[0][0] - LEAD)
        if self.stopped:
            return "stopped: claiming nothing", 1.0
        if not self.membership.store_ok:
            self._supersede_unclaimed()
            return "the store does not answer: claiming nothing", 1.0
        await self._release_orphans()
        to_claim: list[Pending] = []
        busy: set[str] = set()  # tools whose backlog waits for the run in progress
        for key, work in sorted(self.pending.items(), key=lambda item: item[1].due):
            if self.cache.is_recorded(self.keys.run(work.tool, work.run_id)):
                del self.pending[key]
                continue
            if work.deadline is not None and now > work.deadline:
                log.warning("slot %s of %s missed its deadline", work.slot, work.tool)
                del self.pending[key]
                continue
            if self.keys.claim(work.tool, work.run_id) in self.cache.claims:
                continue
            if work.sequential:
                if work.tool in busy or self.cache.claims_of(work.tool):
                    continue
                busy.add(work.tool)
            claim_at = self._claim_time(work)
            if claim_at is None:
                continue
            if claim_at > now:
                wake = min(wake, claim_at)
                continue
            to_claim.append(work)
        capacity = self.executor.capacity
        to_claim = to_claim[:capacity]
        won: list[str] = []
        if to_claim:
            async with trio.open_nursery() as nursery:
                for work in to_claim:
                    nursery.start_soon(self._claim, work, won)
        seconds = max(0.0, (wake - self.now()).total_seconds())
        if won:
            return f"claimed {len(won)}: {', '.join(won[:5])}", seconds
        return f"no action: {len(self.pending)} pending, {len(self.executor.active)} running", seconds

    async def _release_orphans(self) -> None:
        """Give back claims of this member that nothing here is running.

        A claim transaction can commit while its answer is lost (the store
        went away mid-call): the claim then lives on, bound to this member's
        live lease, and nothing would ever run its slot.  Such a claim (this
        member's, not running, not waiting in the outbox) is deleted if it is
        still at the revision seen, and the slot is claimed again as usual.
        """
        if self._seen.get("orphans") == self.cache.versions["claims"]:
            return
        self._seen["orphans"] = self.cache.versions["claims"]
        for key, (claim, revision) in list(self.cache.claims.items()):
            if claim.member != self.me or f"{claim.tool}/{claim.name}" in self.executor.active:
                continue
            if key in self.executor.outbox.held:
                continue
            try:
                result = await self.store.txn([Compare(key, "mod", "=", revision)], [Delete(key)])
            except (StoreUnavailable, StoreError) as exc:
                log.warning("releasing orphan claim %s: %s", key, exc)
                self._seen.pop("orphans", None)
                return
            if result.succeeded:
                log.warning("released claim %s: this member was not running it", key)

    def _supersede_unclaimed(self) -> None:
        """While nothing can be claimed, keep only each tool's newest unclaimed slot.

        Slots that fall due while the store is away are missed slots: once it
        is back, ``catch_up`` ``latest`` (or ``skip``) runs the newest of them
        once, not all of them at once (each would see the others' claims and
        be recorded skipped).  ``catch_up = all`` backlogs, and slots another
        member claimed (a takeover may still be due), stay.
        """
        newest: set[str] = set()
        for key, work in sorted(self.pending.items(), key=lambda item: item[1].due, reverse=True):
            tracked = self.tracked.get(work.tool)
            if work.trigger != "schedule" or tracked is None or tracked.schedule.catch_up == "all":
                continue
            if self.keys.claim(work.tool, work.run_id) in self.cache.claims:
                continue
            if work.tool in newest:
                del self.pending[key]
            else:
                newest.add(work.tool)

    def _claim_time(self, work: Pending) -> datetime | None:
        """When this member may claim ``work``; None when it is not eligible."""
        tool = self.cache.tools.get(work.tool)
        if tool is None:
            return work.due if work.trigger == "request" and self.me in self.cache.members else None
        eligible = sorted(m.name for m in self.cache.members.values() if m.eligible(work.on, tool.runtime))
        if self.me not in eligible:
            return None
        if work.on == "all" or preferred_member(work.tool, work.run_id, eligible) == self.me:
            return work.due - LEAD if work.trigger == "schedule" else work.due
        return work.due + timedelta(seconds=self.config.daemon.claim_grace)

    async def _claim(self, work: Pending, won: list[str]) -> None:
        claim_key = self.keys.claim(work.tool, work.run_id)
        run_key = self.keys.run(work.tool, work.run_id)
        claim = Claim(
            name=work.run_id, tool=work.tool, member=self.me, slot=work.slot, trigger=work.trigger,
            state="claimed", claimed=utc_iso(self.now()),
        )
        compares = [Compare(claim_key, "create", "=", 0), Compare(run_key, "create", "=", 0)]
        if work.request_key:
            compares.append(Compare(work.request_key, "create", ">", 0))
        lease = self.membership.lease
        try:
            async with self._claims:
                result = await self.store.txn(
                    compares, [Put(claim_key, claim.to_value(), lease)], [Get(claim_key), Get(run_key)]
                )
        except (StoreUnavailable, StoreError, LeaseExpired) as exc:
            log.warning("claiming %s of %s: %s", work.run_id, work.tool, exc)
            return
        key = f"{work.tool}/{work.run_id}"
        if result.succeeded:
            self.pending.pop(key, None)
            won.append(key)
            self.executor.start(
                Job(
                    work.tool, work.run_id, work.slot, work.trigger, claim, result.revision, lease,
                    work.request_key, work.forbid_overlap, per_member=work.on == "all",
                    not_before=work.due if work.trigger == "schedule" else None,
                )
            )
            return
        if result.results[1] is not None:
            self.cache.note_recorded(run_key)
            self.pending.pop(key, None)
        elif work.request_key and result.results[0] is None:
            self.pending.pop(key, None)  # the request was withdrawn

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The loop: a pass, then sleep until something is due or the cache changes."""
        task_status.started()
        last = ""
        while True:
            self.progress += 1
            try:
                said, seconds = await self.tick()
            except (StoreUnavailable, StoreError) as exc:
                said, seconds = f"the store failed mid-pass: {exc}", 1.0
            except Exception:
                log.exception("bug in a scheduler pass; going on")
                said, seconds = "error in pass", 1.0
            if said != last and not said.startswith("no action"):
                log.info("scheduler: %s", said)
            last = said
            self.idle = True
            try:
                with trio.move_on_after(min(seconds, 1.0)):
                    await self.cache.wait_changed()
            finally:
                self.idle = False
