"""The data repository side of a run, for the daemon (DESIGN section 5).

Before a run, :meth:`DataRepos.prepare` clones the tool's data repository
into ``importdir/<tool>`` (first run) or fetches and fast-forwards it.  A
failed clone fails the run before the tool starts and is tried again on the
next run; a failed fetch of an existing clone lets the run go ahead on the
local clone.  After the run, :meth:`DataRepos.finish` commits what the tool
wrote: a successful run on the branch (pushed, rebased on rejection, sent to
``maomao/conflicts/<run-id>`` on a conflict, kept local as "pending" while
the remote is down), any other run on ``maomao/failed/<run-id>``.

:meth:`DataRepos.retry_loop` pushes what is pending every ``[git]
push_retry`` seconds and settles this member's run records that said
``push pending`` (their ``push``, ``commit`` and ``branch`` are brought up
to date).  Git work runs in worker threads, one operation at a time per
tool; network operations are bounded by ``[git] timeout``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

import trio

from maomao.config import Config
from maomao.errors import StoreError, StoreUnavailable
from maomao.gitdata import CONFLICTS, Auth, DataRepo, GitError, RemoteUnavailable, set_network_timeout
from maomao.model import Run, Tool
from maomao.store import Compare, Put, Store
from maomao.store.keys import Keys

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GitOutcome:
    """What became of a run's output in git (the run record's ``commit``, ``push``, ``branch``)."""

    commit: str | None = None
    push: str = ""
    branch: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What a commit message and its trailers say about a run."""

    tool: str
    run_id: str
    slot: str
    member: str
    trigger: str
    state: str

    def message(self) -> str:
        verb = "collected" if self.state == "succeeded" else f"output of a {self.state.replace('_', ' ')} run"
        return f"{self.tool}: {verb} by run {self.run_id} on {self.member}\n\nslot {self.slot}, trigger {self.trigger}"

    def trailers(self) -> dict[str, str]:
        return {
            "Maomao-Tool": self.tool,
            "Maomao-Run": self.run_id,
            "Maomao-Slot": self.slot,
            "Maomao-Member": self.member,
            "Maomao-State": self.state,
        }


class DataRepos:
    """The data repositories of the tools this member runs."""

    def __init__(self, config: Config, store: Store | None = None, keys: Keys | None = None) -> None:
        self.config = config
        self.store = store
        self.keys = keys
        self.auth = Auth(config.git.token, config.git.token_user, config.git.ssh_key)
        self._locks: dict[str, trio.Lock] = {}
        #: tools with runs recorded "push pending" by this member, to settle
        self.unsettled: set[str] = set()
        set_network_timeout(config.git.timeout)

    def path(self, tool: str) -> Path:
        return self.config.importdir / tool

    def repo(self, tool: Tool) -> DataRepo:
        return DataRepo(
            self.path(tool.name),
            tool.data_repo,
            author_name=self.config.git.author_name,
            author_email=self.config.git.author_email,
            push=self.config.git.push,
            auth=self.auth,
        )

    def _lock(self, tool: str) -> trio.Lock:
        return self._locks.setdefault(tool, trio.Lock())

    async def _git(self, tool: str, work: Callable[[], T]) -> T:
        async with self._lock(tool):
            return await trio.to_thread.run_sync(work)

    async def prepare(self, tool: Tool) -> str:
        """Clone or update the tool's data repository; a note when it ran on a stale clone.

        Raises GitError when there is no usable clone (the run must not start).
        """
        repo = self.repo(tool)
        try:
            await self._git(tool.name, repo.ensure)
        except RemoteUnavailable as exc:
            log.warning("%s: %s; running on the local clone", tool.name, exc)
            return f"fetch failed, ran on the local clone: {exc}"
        return ""

    async def finish(
        self, tool: Tool, facts: RunFacts, note: str = "", owned: Callable[[], Awaitable[bool | None]] | None = None
    ) -> GitOutcome:
        """Commit (and push) what the run wrote; never raises for git trouble.

        ``note`` (what :meth:`prepare` said) leads the outcome's detail.
        ``owned`` is asked between the commit and the push whether this member
        still holds the run's slot (fencing): False moves the commit to
        ``maomao/lost/<run-id>`` (push "lost": nothing reaches the remote),
        None (the store does not answer) keeps it local for the retry loop.
        """
        repo = self.repo(tool)
        try:
            if facts.state == "succeeded":
                commit = await self._git(tool.name, partial(repo.commit_run, facts.message(), facts.trailers()))
            else:
                commit = await self._git(
                    tool.name, partial(repo.commit_failed_run, facts.run_id, facts.message(), facts.trailers(),
                                       push=False)
                )
            verdict = await owned() if owned is not None and commit is not None else True
            if verdict is False:
                lost = await self._git(tool.name, partial(repo.withdraw_run, facts.run_id))
                log.warning("run %s of %s: its slot went to another member; its commit stays here on %s, unpushed",
                            facts.run_id, tool.name, lost)
                outcome = GitOutcome(commit, "lost", lost, "the slot went to another member: not pushed")
            elif verdict is None:
                branch = f"maomao/failed/{facts.run_id}" if facts.state != "succeeded" else None
                outcome = GitOutcome(commit, "pending", branch, "the store does not answer: pushed once recorded")
            elif facts.state == "succeeded":
                outcome = await self._git(tool.name, partial(self._push_success, repo, commit))
            else:
                outcome = await self._git(tool.name, partial(self._push_failure, repo, facts, commit))
        except GitError as exc:
            log.error("run %s of %s: its output stays uncommitted in %s: %s", facts.run_id, tool.name, repo.path, exc)
            outcome = GitOutcome(detail=f"not committed: {exc}")
        if outcome.push == "pending":
            self.unsettled.add(tool.name)
        if note:
            outcome = replace(outcome, detail="; ".join(d for d in (note, outcome.detail) if d))
        return outcome

    async def withdraw(self, tool: Tool, run_id: str) -> None:
        """A run recorded nowhere because its slot was lost: keep its commit off the remote."""
        repo = self.repo(tool)
        try:
            lost = await self._git(tool.name, partial(repo.withdraw_run, run_id))
        except GitError as exc:
            log.error("run %s of %s lost its slot; its commit could not be set aside: %s", run_id, tool.name, exc)
            return
        if lost is not None:
            log.warning("run %s of %s lost its slot; its commit stays here on %s, unpushed", run_id, tool.name, lost)

    @staticmethod
    def _push_success(repo: DataRepo, commit: str | None) -> GitOutcome:
        if DataRepos._unpushed(repo) == 0:
            return GitOutcome(commit, "pushed" if commit else "", None)
        result = repo.push()
        if commit is None:
            return GitOutcome(detail=result.detail if result.state == "pending" else "")
        if result.state == "conflict":
            return GitOutcome(commit, "conflict", result.branch, result.detail)
        if result.state in ("pushed", "rebased"):
            return GitOutcome(result.commit, result.state, None)
        return GitOutcome(commit, result.state, None, result.detail if result.state == "pending" else "")

    @staticmethod
    def _push_failure(repo: DataRepo, facts: RunFacts, commit: str | None) -> GitOutcome:
        if commit is None:
            return GitOutcome()
        branch = f"maomao/failed/{facts.run_id}"
        if repo.push_failed_run(facts.run_id):
            return GitOutcome(commit, "pushed", branch)
        return GitOutcome(commit, "pending" if repo.push_enabled else "disabled", branch)

    # -- pushes that could not happen at once --------------------------------

    async def retry_loop(
        self, tools: Callable[[], dict[str, Tool]], held: Callable[[str], bool],
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Push pending commits and settle run records, every ``push_retry`` seconds.

        ``tools`` gives the registered tools; ``held(tool)`` says whether the
        outbox still holds a record of that tool (not settled until it lands).
        """
        await self._seed(tools())
        task_status.started()
        while True:
            await trio.sleep(self.config.git.push_retry)
            await self.retry_once(tools(), held)

    async def _seed(self, tools: dict[str, Tool]) -> None:
        """After a restart: clones here with commits the remote lacks are unsettled."""
        for tool in tools.values():
            if not (self.path(tool.name) / ".git").exists():
                continue
            try:
                ahead = await self._git(tool.name, partial(self._unpushed, self.repo(tool)))
            except GitError:
                continue
            if ahead:
                self.unsettled.add(tool.name)

    @staticmethod
    def _unpushed(repo: DataRepo) -> int:
        return repo.ahead_of_remote() + len(repo.pending_failed_branches())

    async def retry_once(self, tools: dict[str, Tool], held: Callable[[str], bool]) -> None:
        for name in sorted(self.unsettled):
            tool = tools.get(name)
            if tool is None or not (self.path(name) / ".git").exists():
                self.unsettled.discard(name)
                continue
            if held(name):
                continue  # a record of it waits in the outbox: it may yet be fenced, so no push before it lands
            repo = self.repo(tool)
            try:
                state = await self._git(name, partial(self._push_pending, repo))
            except GitError as exc:
                log.warning("%s: pending push failed: %s", name, exc)
                continue
            if state == "pending":
                continue
            settled = await self._settle(tool, repo)
            if settled and not held(name):
                self.unsettled.discard(name)

    @staticmethod
    def _push_pending(repo: DataRepo) -> str:
        if DataRepos._unpushed(repo) == 0:
            return "pushed"
        result = repo.push()
        if result.state in ("pushed", "rebased") and repo.pending_failed_branches():
            return "pending"
        return result.state

    async def _settle(self, tool: Tool, repo: DataRepo) -> bool:
        """Bring this member's "push pending" run records of ``tool`` up to date; True when none is left."""
        if self.store is None or self.keys is None:
            return True
        try:
            found = await self.store.range(self.keys.runs(tool.name))
        except (StoreUnavailable, StoreError):
            return False
        left = 0
        for kv in found.kvs:
            try:
                run = Run.from_value(kv.value)
            except ValueError:
                continue
            if run.member != self.config.member or run.push != "pending":
                continue
            update = await self._git(tool.name, partial(self._settled_fields, repo, run))
            if update is None:
                left += 1
                continue
            settled = Run(**{**run.to_dict(), **update})
            try:
                await self.store.txn([Compare(kv.key, "mod", "=", kv.mod_revision)], [Put(kv.key, settled.to_value())])
            except (StoreUnavailable, StoreError):
                left += 1
        return left == 0

    @staticmethod
    def _settled_fields(repo: DataRepo, run: Run) -> dict[str, object] | None:
        """The new commit/push/branch of a pending run whose commit has reached the remote, else None."""
        if run.branch is not None and run.branch.startswith("maomao/failed/"):
            return None if run.branch in repo.pending_failed_branches() else {"push": "pushed"}
        commit = repo.run_commit(run.id)
        if commit is not None:
            if not repo.on_remote(commit):
                return None
            return {"push": "pushed" if commit == run.commit else "rebased", "commit": commit}
        # not on the branch any more: a rebase conflict sent it to maomao/conflicts/<run-id>
        return {"push": "conflict", "branch": CONFLICTS + run.id}
