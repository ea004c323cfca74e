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

What a tool wrote is not trusted.  Files over ``[git] max_file_size``, a
nested repository's ``.git`` and names git refuses are left out of the
commit and named in the run's detail (:mod:`maomao.gitdata`).  The clone's
own ``.git`` is checked before each run and after it (a host process may
delete or rewrite it; a container never sees it): one that is damaged
before a run is set aside with its work tree under
``importdir/.maomao/damaged/<tool>/<stamp>/`` and cloned again; one the run
damaged is set aside there, a fresh clone's ``.git`` is put in its place
and the run's output goes to ``maomao/failed/<run-id>``, never to the
branch; when the remote cannot be cloned, the output is kept there too.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
        self._wake = trio.Event()
        #: per tool: the digest of its clone's .git taken before its run (DataRepo.snapshot)
        self._snapshots: dict[str, str] = {}
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
            max_file_size=self.config.git.max_file_size,
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
        note = await self._git(tool.name, partial(self._set_aside_if_damaged, repo, tool.name))
        try:
            await self._git(tool.name, repo.ensure)
        except RemoteUnavailable as exc:
            log.warning("%s: %s; running on the local clone", tool.name, exc)
            note = "; ".join(n for n in (note, f"fetch failed, ran on the local clone: {exc}") if n)
        self._snapshots[tool.name] = await self._git(tool.name, repo.snapshot)
        return note

    def aside(self, tool: str) -> Path:
        """A new directory name for what a damaged clone of ``tool`` leaves behind."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return self.config.importdir / ".maomao" / "damaged" / tool / f"{stamp}-{secrets.token_hex(3)}"

    def _set_aside_if_damaged(self, repo: DataRepo, tool: str) -> str:
        """Before a run: a clone whose .git is not maomao's any more moves aside whole (to be cloned again)."""
        problems = repo.problems()
        if not problems:
            return ""
        aside = self.aside(tool)
        what = _summary(problems)
        log.warning("%s: the data repository's clone is damaged (%s); moving it to %s and cloning again",
                    tool, what, aside)
        try:
            aside.mkdir(parents=True, exist_ok=True)
            os.rename(repo.path, aside / "work")
        except OSError as exc:
            raise GitError(f"the clone at {repo.path} is damaged ({what}) and cannot be moved aside: {exc}") from None
        return f"the clone was damaged ({what}): moved to {aside}/work, cloned again"

    def _check_after_run(self, repo: DataRepo, tool: str, before: str | None) -> tuple[str, bool]:
        """After a run: (a note, whether its output goes to the failed branch) when it damaged the clone.

        A damaged ``.git`` is set aside and the remote's put in its place;
        raises GitError (saying where the output is kept) when nothing can be committed.
        """
        problems = repo.problems()
        git_dir = repo.path / ".git"
        if not problems and before is not None and os.path.lexists(git_dir) and repo.snapshot() != before:
            problems = ["its config, HEAD, hooks or info changed"]
        if not problems:
            return "", False
        aside = self.aside(tool)
        what = _summary(problems)
        log.warning("%s: the run damaged the data repository's .git (%s); setting it aside at %s", tool, what, aside)
        try:
            if not stat.S_ISDIR(os.lstat(repo.path).st_mode):
                aside.mkdir(parents=True, exist_ok=True)
                os.rename(repo.path, aside / "work")
                raise GitError(f"the run replaced its data directory ({what}); it is kept at {aside}/work")
            try:
                repo.restore(aside)
            except GitError as exc:
                os.rename(repo.path, aside / "work")
                raise GitError(
                    f"the run damaged the data repository's .git ({what}) and it cannot be restored ({exc});"
                    f" the run's output is kept at {aside}/work"
                ) from None
        except OSError as exc:
            raise GitError(f"the run damaged the data repository's .git ({what}): {exc}") from None
        return (
            f"the run damaged the data repository's .git ({what}): set aside at {aside}/git and restored from the"
            " remote; the run's output went to its failed-run branch",
            True,
        )

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
        before = self._snapshots.pop(tool.name, None)
        damage = ""
        try:
            damage, to_failed = await self._git(tool.name, partial(self._check_after_run, repo, tool.name, before))
            succeeded = facts.state == "succeeded" and not to_failed
            if succeeded:
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
                branch = f"maomao/failed/{facts.run_id}" if not succeeded else None
                outcome = GitOutcome(commit, "pending", branch, "the store does not answer: pushed once recorded")
            elif succeeded:
                outcome = await self._git(tool.name, partial(self._push_success, repo, commit))
            else:
                outcome = await self._git(tool.name, partial(self._push_failure, repo, facts, commit))
        except GitError as exc:
            log.error("run %s of %s: its output stays uncommitted in %s: %s", facts.run_id, tool.name, repo.path, exc)
            outcome = GitOutcome(detail=f"not committed: {exc}")
        if outcome.push == "pending":
            self.unsettled.add(tool.name)
        if repo.left_out:
            log.warning("run %s of %s: %s", facts.run_id, tool.name, "; ".join(repo.left_out))
        details = (note, damage, outcome.detail, *repo.left_out)
        if any(details):
            outcome = replace(outcome, detail="; ".join(d for d in details if d))
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
        tool's pushes must wait: a run of it is going (a rebase would reset
        its work tree under it) or the outbox still holds a record of it (it
        may yet be fenced; not settled until it lands).
        """
        await self._seed(tools())
        task_status.started()
        delay = self.config.git.push_retry
        while True:
            with trio.move_on_after(delay):
                await self._wake.wait()
            woken = self._wake.is_set()
            self._wake = trio.Event()
            try:
                stuck = await self.retry_once(tools(), held)
            except Exception:
                log.exception("bug in the pending-push loop; going on")
                stuck = True
            # after a wake-up, a push that did not go (the remote busy with other members' pushes, a
            # lock) is tried again soon, backing off to push_retry; otherwise every push_retry
            retry = self.config.git.push_retry
            delay = min(retry, 1.0 if woken else delay * 2) if stuck else retry

    def wake(self) -> None:
        """Try the pending pushes now (a record they waited for has landed)."""
        self._wake.set()

    async def _seed(self, tools: dict[str, Tool]) -> None:
        """After a restart: clones here with commits the remote lacks are unsettled."""
        for tool in tools.values():
            if not (self.path(tool.name) / ".git").exists():
                continue
            repo = self.repo(tool)
            try:
                if await self._git(tool.name, repo.problems):
                    continue
                ahead = await self._git(tool.name, partial(self._unpushed, repo))
            except GitError:
                continue
            if ahead:
                self.unsettled.add(tool.name)

    @staticmethod
    def _unpushed(repo: DataRepo) -> int:
        return repo.ahead_of_remote() + len(repo.pending_failed_branches())

    async def retry_once(self, tools: dict[str, Tool], held: Callable[[str], bool]) -> bool:
        """One round of pending pushes; whether a push that could go did not."""
        stuck = False
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
                stuck = True
                continue
            settled = await self._settle(tool, repo)
            if settled and not held(name):
                self.unsettled.discard(name)
        return stuck

    @staticmethod
    def _push_pending(repo: DataRepo) -> str:
        problems = repo.problems()
        if problems:  # a run on it will set it aside and say so; nothing is pushed from it
            raise GitError(f"the clone at {repo.path} is damaged ({_summary(problems)})")
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


def _summary(problems: list[str], shown: int = 3) -> str:
    more = f" and {len(problems) - shown} more" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more
