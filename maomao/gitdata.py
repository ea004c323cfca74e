"""A tool's git data repository (pygit2): clone, fetch, commit, push, rebase.

Every function here blocks; the daemon calls them through
``trio.to_thread.run_sync``. Nothing a tool collected is ever thrown away:

- ``ensure()`` clones on first use (into a temporary directory beside the
  target, renamed into place, so a failed clone leaves nothing behind and is
  retried next time), else fetches and fast-forwards the local branch.
  Local commits not pushed yet are kept.
- ``commit_run()`` commits what the tool wrote, with ``Key: value`` trailers.
- ``push()`` pushes; a rejected push is fetched, rebased (each local commit
  replayed with a 3-way tree merge) and pushed again; a conflict sends the
  commit to ``maomao/conflicts/<run-id>``; an unreachable remote leaves the
  commit local ("pending") for a later ``push()``.
- ``commit_failed_run()`` commits a failed run's output to
  ``maomao/failed/<run-id>`` and restores the work tree to the branch head.
- ``withdraw_run()`` moves an unpushed run's commit to the local branch
  ``maomao/lost/<run-id>`` (its slot went to another member: fencing).

What a tool wrote is untrusted (see ``_stage``): a file bigger than
``max_file_size``, a nested repository's ``.git``, a fifo or a name git
refuses is left out of the commit and named in ``left_out``; a symlink is
committed as a link and never followed; before any checkout or reset,
symlinks that would make libgit2 write through them (out of the data
directory) are removed (``_defuse``).  ``problems()`` says whether the
clone's own ``.git`` is still what maomao made (a tool may have deleted or
rewritten it: hooks, ``core.fsmonitor``, ``remote.*.pushurl``, alternates);
``restore()`` sets a damaged one aside and clones the remote's again.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pygit2
from pygit2.enums import CheckoutStrategy, CredentialType, FileMode, FileStatus, Option, RepositoryOpenFlag, ResetMode

from maomao.errors import MaomaoError
from maomao.gitguard import REMOTE, config_problems, layout_problems, show_name, snapshot
from maomao.model import check_repo_url

__all__ = [
    "Auth",
    "DataRepo",
    "GitError",
    "PushResult",
    "PushState",
    "RemoteUnavailable",
]

PushState = Literal["pushed", "rebased", "conflict", "pending", "disabled"]

CONFLICTS = "maomao/conflicts/"
FAILED = "maomao/failed/"
#: runs whose slot this member lost (fencing): kept here, never pushed
LOST = "maomao/lost/"
_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_PUSH_ATTEMPTS = 10
#: files bigger than this are left out of a commit (``[git] max_file_size``)
DEFAULT_MAX_FILE_SIZE = 50 << 20
#: names listed in a note about files left out of a commit (the rest are counted)
_NOTE_NAMES = 10
Credential = pygit2.Username | pygit2.UserPass | pygit2.Keypair | pygit2.KeypairFromAgent
#: what a fetch or clone reports as it goes (objects, bytes)
Progress = Callable[[pygit2.remotes.TransferProgress], None]


class GitError(MaomaoError):
    """A data repository operation failed; the message names the repository."""


class RemoteUnavailable(GitError):
    """The remote did not answer (down, unreachable, refused); local work is intact."""


@dataclass(frozen=True)
class PushResult:
    """What ``DataRepo.push`` did.

    ``state``: "pushed" (fast-forward), "rebased" (rejected, rebased, pushed),
    "conflict" (the local commits went to ``branch`` = maomao/conflicts/<run-id>,
    the local branch was reset to the remote's), "pending" (remote unreachable,
    commits kept locally), "disabled" (``push=False``).
    """

    state: PushState
    commit: str | None
    branch: str | None
    detail: str = ""


@dataclass(frozen=True)
class Auth:
    """How to authenticate to remotes: an https token, an ssh key file, else the ssh agent."""

    token: str | None = None
    token_user: str = "x-access-token"
    ssh_key: Path | None = None

    def credential(self, username_from_url: str | None, allowed: CredentialType) -> Credential | None:
        """The credential to offer for ``allowed`` types, or None to give up."""
        user = username_from_url or "git"
        if allowed & CredentialType.USERPASS_PLAINTEXT and self.token:
            return pygit2.UserPass(self.token_user, self.token)
        if allowed & CredentialType.SSH_KEY:
            if self.ssh_key is not None:
                public = Path(f"{self.ssh_key}.pub")
                return pygit2.Keypair(user, str(public) if public.exists() else None, str(self.ssh_key), "")
            if os.environ.get("SSH_AUTH_SOCK"):
                return pygit2.KeypairFromAgent(user)
        if allowed & CredentialType.USERNAME:
            return pygit2.Username(user)
        return None


_timeouts_set: float | None = None


def set_network_timeout(seconds: float) -> None:
    """Bound every connect and every read/write of libgit2's transports (whole process)."""
    global _timeouts_set
    if _timeouts_set == seconds:
        return
    millis = max(1, int(seconds * 1000))
    pygit2.option(Option.SET_SERVER_CONNECT_TIMEOUT, millis)
    pygit2.option(Option.SET_SERVER_TIMEOUT, millis)
    _timeouts_set = seconds


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials (one try per kind), progress, and a record of refs the remote refused."""

    def __init__(self, auth: Auth, progress: Progress | None = None) -> None:
        super().__init__()
        self.auth = auth
        self.progress = progress
        self.rejected: dict[str, str] = {}
        self._offered: set[type] = set()

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> Credential:
        credential = self.auth.credential(username_from_url, allowed_types)
        if credential is None or type(credential) in self._offered:
            # libgit2 asks again after a refusal; offering the same again would loop
            raise pygit2.GitError(f"authentication to {url} failed (no credential it accepts)")
        self._offered.add(type(credential))
        return credential

    def transfer_progress(self, stats: pygit2.remotes.TransferProgress) -> None:
        if self.progress is not None:
            self.progress(stats)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message is not None:
            self.rejected[refname] = message


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size} bytes"


def _trailer_value(message: str, key: str) -> str | None:
    prefix = key.lower() + ":"
    for line in reversed(message.splitlines()):
        if line.lower().startswith(prefix):
            return line[len(prefix) :].strip() or None
    return None


class DataRepo:
    """One tool's data repository: a clone at ``path`` of ``url``."""

    def __init__(
        self,
        path: Path,
        url: str,
        *,
        author_name: str,
        author_email: str,
        branch: str | None = None,
        push: bool = True,
        auth: Auth | None = None,
        progress: Progress | None = None,
        max_file_size: int | None = DEFAULT_MAX_FILE_SIZE,
    ) -> None:
        self.path = Path(path)
        #: files bigger than this (bytes) are left out of commits; None: no limit
        self.max_file_size = max_file_size
        #: what the last commit left out of the work tree, one note each (see ``_stage``)
        self.left_out: list[str] = []
        self.url = check_repo_url(url, "data repository URL")
        self.author_name = author_name
        self.author_email = author_email
        self.branch = branch
        self.push_enabled = push
        self.auth = auth or Auth()
        self.progress = progress
        if branch is not None and not pygit2.reference_is_valid_name(f"refs/heads/{branch}"):
            raise GitError(f"{self._name()}: branch name {branch!r} is not valid")

    # -- helpers ---------------------------------------------------------

    def _name(self) -> str:
        return f"data repository {self.url}"

    def _fail(self, what: str, exc: BaseException) -> GitError:
        return GitError(f"{self._name()}: {what}: {_one_line(exc)}")

    @contextlib.contextmanager
    def _converted(self, what: str) -> Iterator[None]:
        """libgit2's and the file system's errors as GitError (what a tool wrote must not crash a caller)."""
        try:
            yield
        except GitError:
            raise
        except (pygit2.GitError, OSError, ValueError, KeyError) as exc:
            raise self._fail(what, exc) from None

    def _callbacks(self) -> _Callbacks:
        return _Callbacks(self.auth, self.progress)

    def _checked_url(self) -> str:
        # Defence in depth: check again right before any network operation.
        return check_repo_url(self.url, "data repository URL")

    def _repo(self) -> pygit2.Repository:
        try:
            return pygit2.Repository(str(self.path), RepositoryOpenFlag.NO_SEARCH)
        except (pygit2.GitError, KeyError) as exc:
            raise GitError(f"{self._name()}: no clone at {self.path}; run ensure() first") from exc

    def _branch_name(self, repo: pygit2.Repository) -> str:
        if self.branch is not None:
            return self.branch
        target = repo.references["HEAD"].target
        if isinstance(target, str) and target.startswith("refs/heads/"):
            return target[len("refs/heads/") :]
        raise GitError(f"{self._name()}: HEAD is detached at {self.path}; set a branch")

    def _remote(self, repo: pygit2.Repository) -> pygit2.Remote:
        url = self._checked_url()
        try:
            remote = repo.remotes[REMOTE]
        except KeyError:
            return repo.remotes.create(REMOTE, url)
        if remote.url != url:
            repo.remotes.set_url(REMOTE, url)
            remote = repo.remotes[REMOTE]
        return remote

    def _fetch(self, repo: pygit2.Repository) -> None:
        remote = self._remote(repo)
        try:
            remote.fetch(callbacks=self._callbacks())
        except (pygit2.GitError, OSError) as exc:
            raise RemoteUnavailable(f"{self._name()}: fetch failed: {_one_line(exc)}") from None

    @staticmethod
    def _oid(repo: pygit2.Repository, refname: str) -> pygit2.Oid | None:
        ref = repo.references.get(refname)
        if ref is None:
            return None
        return ref.resolve().target  # type: ignore[return-value]

    def _local(self, repo: pygit2.Repository, branch: str) -> pygit2.Oid | None:
        return self._oid(repo, f"refs/heads/{branch}")

    def _tracking(self, repo: pygit2.Repository, branch: str) -> pygit2.Oid | None:
        return self._oid(repo, f"refs/remotes/{REMOTE}/{branch}")

    def _signature(self) -> pygit2.Signature:
        return pygit2.Signature(self.author_name, self.author_email)

    def _message(self, message: str, trailers: Mapping[str, str]) -> str:
        lines = [message.strip()]
        if trailers:
            lines.append("")
        for key, value in trailers.items():
            if not _TRAILER_KEY.fullmatch(key):
                raise GitError(f"{self._name()}: trailer key {key!r} is not allowed")
            if "\n" in value or "\r" in value:
                raise GitError(f"{self._name()}: trailer {key} must be one line")
            lines.append(f"{key}: {value}")
        return "\n".join(lines) + "\n"

    def _stage(self, repo: pygit2.Repository) -> bool:
        """Stage every addition, change and deletion in the work tree; True if any.

        What a tool wrote is not trusted.  A symlink is staged as a link
        (libgit2 reads the link, never its target); a directory that holds a
        ``.git`` of its own (a nested repository, which libgit2 would add as
        a gitlink) is walked here, without following links, its ``.git``
        left out; a file over ``max_file_size``, anything that is not a file
        or a link (a fifo, a socket) and a name git refuses are left out.
        ``left_out`` names what was left out.
        """
        index = repo.index
        index.read()
        changed = False
        skipped: dict[str, list[str]] = {}
        for rel, flags in repo.status(untracked_files="all").items():
            parts = Path(rel).parts
            if ".git" in parts or Path(rel).is_absolute() or ".." in parts:
                continue
            if flags & FileStatus.WT_DELETED:
                index.remove(rel)
                changed = True
            elif flags & (
                FileStatus.WT_NEW | FileStatus.WT_MODIFIED | FileStatus.WT_TYPECHANGE | FileStatus.WT_RENAMED
            ):
                if rel.endswith("/"):
                    changed |= self._stage_nested(index, rel.rstrip("/"), skipped)
                else:
                    changed |= self._stage_file(index, rel, skipped)
            elif flags & (
                FileStatus.INDEX_NEW | FileStatus.INDEX_MODIFIED | FileStatus.INDEX_DELETED | FileStatus.INDEX_RENAMED
            ):
                changed = True
        index.write()
        self.left_out = []
        for why, names in skipped.items():
            more = f" and {len(names) - _NOTE_NAMES} more" if len(names) > _NOTE_NAMES else ""
            self.left_out.append(f"{why}: " + ", ".join(names[:_NOTE_NAMES]) + more)
        return changed

    def _stage_file(self, index: pygit2.Index, rel: str, skipped: dict[str, list[str]]) -> bool:
        """Stage one path of the work tree (a file or a link); False when it is left out."""
        full = os.path.join(self.path, rel)
        try:
            info = os.lstat(full)
        except OSError:
            return False
        if stat.S_ISREG(info.st_mode):
            limit = self.max_file_size
            if limit is not None and info.st_size > limit:
                skipped.setdefault(f"left out, over [git] max_file_size ({_mib(limit)})", []).append(
                    f"{show_name(rel)} ({_mib(info.st_size)})"
                )
                return False
        elif not stat.S_ISLNK(info.st_mode):
            skipped.setdefault("left out, not a file or a symlink", []).append(show_name(rel))
            return False
        try:
            index.add(rel)
        except (pygit2.GitError, OSError, ValueError) as exc:
            skipped.setdefault("left out, refused by git", []).append(f"{show_name(rel)} ({_one_line(exc)})")
            return False
        return True

    def _stage_nested(self, index: pygit2.Index, rel: str, skipped: dict[str, list[str]]) -> bool:
        """Stage the files of an untracked directory libgit2 would not enter (it holds a ``.git``)."""
        changed = False
        for dirpath, dirnames, filenames in os.walk(os.path.join(self.path, rel)):  # links are not followed
            here = os.path.relpath(dirpath, self.path)
            if ".git" in dirnames:
                dirnames.remove(".git")
                skipped.setdefault("left out, a nested repository's .git", []).append(
                    show_name(os.path.join(here, ".git"))
                )
            if ".git" in filenames:
                filenames.remove(".git")
                skipped.setdefault("left out, a nested repository's .git", []).append(
                    show_name(os.path.join(here, ".git"))
                )
            names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in sorted(names):
                changed |= self._stage_file(index, os.path.join(here, name), skipped)
        return changed

    def _clean(self, repo: pygit2.Repository, commit: pygit2.Oid | None) -> None:
        """Reset index and work tree to ``commit`` and remove untracked files.

        Files over ``max_file_size`` stay: no commit holds them, so removing
        them would throw away what a tool collected.
        """
        if commit is not None:
            self._defuse(repo, commit)
            repo.reset(commit, ResetMode.HARD)
        else:
            repo.index.clear()
            repo.index.write()
        for rel, flags in repo.status(untracked_files="all").items():
            if flags & FileStatus.WT_NEW:
                target = self.path / rel
                if ".git" in Path(rel).parts or self._too_big(target):
                    continue
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
        # Remove directories left empty by the removal above.
        for dirpath, dirnames, _ in os.walk(self.path, topdown=False):
            if ".git" in Path(dirpath).relative_to(self.path).parts:
                continue
            for d in dirnames:
                full = Path(dirpath) / d
                if d != ".git" and full.is_dir() and not full.is_symlink() and not any(full.iterdir()):
                    full.rmdir()

    def _too_big(self, path: Path) -> bool:
        """A regular file (not a link) over ``max_file_size``: never committed, so never removed."""
        try:
            info = os.lstat(path)
        except OSError:
            return False
        limit = self.max_file_size
        return stat.S_ISREG(info.st_mode) and limit is not None and info.st_size > limit

    def _defuse(self, repo: pygit2.Repository, commit: pygit2.Oid) -> None:
        """Remove what would make a checkout of ``commit`` write out of the work tree.

        libgit2's checkout and hard reset write through a symlink that stands
        where the tree has a file or a directory (a tool that replaced
        ``sub/`` with a link to ``/etc`` would have the daemon write ``sub/x``
        into ``/etc``).  So every symlink in the work tree that is not the
        very link the tree has there is removed first (its content is
        committed already, or it is a failed run's, committed to its branch),
        and so is anything that is not a directory where the tree has one.
        """
        target = repo.get(commit)
        tree = target.peel(pygit2.Tree) if target is not None else None
        links: dict[str, bytes] = {}
        dirs: set[str] = set()

        def walk(node: pygit2.Tree, prefix: str) -> None:
            for entry in node:
                name = os.path.join(prefix, entry.name or "")
                if entry.filemode == FileMode.TREE:
                    dirs.add(name)
                    sub = repo.get(entry.id)
                    if isinstance(sub, pygit2.Tree):
                        walk(sub, name)
                elif entry.filemode == FileMode.LINK:
                    blob = repo.get(entry.id)
                    links[name] = blob.data if isinstance(blob, pygit2.Blob) else b""

        if tree is not None:
            walk(tree, "")
        for dirpath, dirnames, filenames in os.walk(self.path):  # links are not followed
            here = os.path.relpath(dirpath, self.path)
            here = "" if here == "." else here
            if here == "":
                dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in [*dirnames, *filenames]:
                full = os.path.join(dirpath, name)
                rel = os.path.join(here, name)
                try:
                    info = os.lstat(full)
                    if stat.S_ISLNK(info.st_mode):
                        if links.get(rel) != os.readlink(os.fsencode(full)):
                            os.unlink(full)
                    elif rel in dirs and not stat.S_ISDIR(info.st_mode):
                        os.unlink(full)
                except OSError:
                    continue

    def _push_refs(self, repo: pygit2.Repository, specs: list[str]) -> dict[str, str]:
        """Push ``specs`` (``[+]src:dst``); return refs the remote refused (empty on success).

        Raises RemoteUnavailable when the push did not happen for another reason.
        """
        local_path = self._local_remote_path()
        if local_path is not None:
            return self._push_local(repo, local_path, specs)
        remote = self._remote(repo)
        callbacks = self._callbacks()
        try:
            remote.push(specs, callbacks=callbacks)
        except (pygit2.GitError, OSError) as exc:
            text = _one_line(exc)
            if "non-fastforward" in text or "not present locally" in text or "fast-forward" in text:
                return {spec: text for spec in specs}
            raise RemoteUnavailable(f"{self._name()}: push failed: {text}") from None
        return callbacks.rejected

    def _local_remote_path(self) -> Path | None:
        url = self._checked_url()
        if url.startswith("/"):
            return Path(url)
        if url.startswith("file://"):
            return Path(urlsplit(url).path)
        return None

    def _push_local(self, repo: pygit2.Repository, path: Path, specs: list[str]) -> dict[str, str]:
        """Push to a repository on this machine with a compare-and-swap ref update.

        libgit2's local transport checks for a fast-forward and then overwrites
        the ref unconditionally, so two members pushing at once can lose a
        commit; git's receive-pack (ssh, https) compares and swaps, and so
        does this.
        """
        try:
            target = pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
        except (pygit2.GitError, OSError, KeyError) as exc:
            raise RemoteUnavailable(f"{self._name()}: push failed: {_one_line(exc)}") from None
        rejected: dict[str, str] = {}
        for spec in specs:
            force = spec.startswith("+")
            src, _, dst = spec.lstrip("+").partition(":")
            new = self._oid(repo, src)
            if new is None:
                rejected[dst] = f"no local ref {src}"
                continue
            self._copy_objects(repo, target, new)
            current = target.references.get(dst)
            try:
                if current is None:
                    target.references.create(dst, new, force=force)
                elif force:
                    target.references.create(dst, new, force=True)
                else:
                    old = current.target
                    assert isinstance(old, pygit2.Oid)
                    if old == new:
                        continue
                    if old not in repo.odb or not repo.descendant_of(new, old):
                        rejected[dst] = "non-fast-forward"
                        continue
                    current.set_target(new)  # fails if the ref moved since it was read
            except (pygit2.GitError, pygit2.AlreadyExistsError, ValueError, OSError) as exc:
                # OSError: the ref is locked by another member's push at this instant (libgit2 raises
                # it for a lock file that exists); rejected like a moved ref, tried again
                rejected[dst] = _one_line(exc)
        return rejected

    @staticmethod
    def _copy_objects(src: pygit2.Repository, dst: pygit2.Repository, tip: pygit2.Oid) -> None:
        """Write every object reachable from ``tip`` that ``dst`` lacks."""
        todo = [tip]
        while todo:
            oid = todo.pop()
            if oid in dst.odb:
                continue  # present, and so is everything it reaches
            obj = src.get(oid)
            if isinstance(obj, pygit2.Commit):
                todo.append(obj.tree_id)
                todo.extend(obj.parent_ids)
            elif isinstance(obj, pygit2.Tree):
                todo.extend(entry.id for entry in obj if entry.filemode != FileMode.COMMIT)
            kind, data = src.odb.read(oid)
            dst.odb.write(kind, data)

    # -- public API ------------------------------------------------------

    def ensure(self) -> None:
        """Clone on first use, else fetch and fast-forward the local branch.

        Raises RemoteUnavailable when an existing clone cannot fetch (the clone
        is intact; a caller may run the tool anyway), GitError otherwise.
        """
        git_dir = self.path / ".git"
        if not git_dir.exists():
            self._clone()
            return
        repo = self._repo()
        self._fetch(repo)
        branch = self._branch_name(repo)
        remote_oid = self._tracking(repo, branch)
        if remote_oid is None:
            return  # the remote has no such branch yet (empty repository)
        local_oid = self._local(repo, branch)
        if local_oid is None or (local_oid != remote_oid and repo.descendant_of(remote_oid, local_oid)):
            self._fast_forward(repo, branch, remote_oid)
        # Equal, ahead (pending) or diverged: leave it; push() rebases.

    def _fast_forward(self, repo: pygit2.Repository, branch: str, target: pygit2.Oid) -> None:
        commit = repo.get(target)
        assert isinstance(commit, pygit2.Commit)
        try:
            self._defuse(repo, target)
            repo.checkout_tree(commit.tree)
        except pygit2.GitError as exc:
            raise self._fail(f"cannot fast-forward {branch} at {self.path} (local changes in the way)", exc) from None
        repo.references.create(f"refs/heads/{branch}", target, force=True)
        repo.set_head(f"refs/heads/{branch}")

    def _clone(self) -> None:
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise GitError(f"{self._name()}: {self.path} exists and is not a clone")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.clone-", dir=self.path.parent))
        try:
            self._clone_into(tmp)
            if self.path.exists():
                self.path.rmdir()
            os.rename(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _clone_into(self, directory: Path) -> None:
        """Clone the remote into ``directory`` (empty) with the branch checked out."""
        url = self._checked_url()
        try:
            pygit2.clone_repository(url, str(directory), callbacks=self._callbacks())
        except (pygit2.GitError, OSError, KeyError, ValueError) as exc:
            raise self._fail("clone failed", exc) from None
        cloned = pygit2.Repository(str(directory))
        if self.branch is not None:
            self._start_branch(cloned, self.branch)
        elif cloned.head_is_unborn:
            cloned.set_head(f"refs/heads/{self._empty_remote_branch()}")

    # -- the clone's own .git: is it still maomao's? ------------------------

    def problems(self) -> list[str]:
        """What is wrong with the clone's ``.git``, one line each; empty when it is as a clone has it.

        A tool (a host process runs unconfined) may have deleted it, made it a
        symlink, or rewritten it: hooks, ``core.fsmonitor``, ``include.path``,
        ``remote.*.pushurl``, ``url.*.insteadOf``, alternates, grafts.  It is
        read here without libgit2 first (libgit2 would follow ``include.path``
        and symlinks out of the clone), then the branch's commit and tree
        are read with it.  A data directory that is missing or empty has no
        problems (it is cloned).
        """
        try:
            return self._problems()
        except OSError as exc:
            return [f"the clone cannot be read: {_one_line(exc)}"]

    def _problems(self) -> list[str]:
        try:
            top = os.lstat(self.path)
        except FileNotFoundError:
            return []
        if not stat.S_ISDIR(top.st_mode):
            return [f"{self.path} is not a directory"]
        git_dir = self.path / ".git"
        try:
            info = os.lstat(git_dir)
        except FileNotFoundError:
            return [] if not any(os.scandir(self.path)) else [".git is gone"]
        if stat.S_ISLNK(info.st_mode):
            return [".git is a symlink"]
        if not stat.S_ISDIR(info.st_mode):
            return [".git is not a directory"]
        found = config_problems(git_dir, self.url) + layout_problems(git_dir)
        if found:
            return found
        try:
            repo = pygit2.Repository(str(self.path), RepositoryOpenFlag.NO_SEARCH)
            tip = self._local(repo, self._branch_name(repo))
            if tip is not None:
                commit = repo.get(tip)
                if not isinstance(commit, pygit2.Commit):
                    return [f"the branch's commit {tip} is missing"]
                len(commit.tree)  # reads the tree object
        except (pygit2.GitError, GitError, KeyError, ValueError, OSError) as exc:
            return [f"the repository cannot be read: {_one_line(exc)}"]
        return []

    def snapshot(self) -> str:
        """A digest of what no run may change in the clone's ``.git`` (:func:`maomao.gitguard.snapshot`)."""
        return snapshot(self.path / ".git")

    def restore(self, aside: Path) -> None:
        """Set a damaged ``.git`` aside (``aside/git``) and put a fresh clone's in its place.

        The work tree stays as it is (what the run wrote is in it); the
        local branch is the remote's now.  Raises GitError when the remote
        cannot be cloned (the damaged ``.git`` is aside then, nothing else moved).
        """
        aside.mkdir(parents=True, exist_ok=True)
        git_dir = self.path / ".git"
        if os.path.lexists(git_dir):
            os.rename(git_dir, aside / "git")  # a symlink is moved, never followed
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.restore-", dir=self.path.parent))
        try:
            self._clone_into(tmp)
            os.rename(tmp / ".git", git_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _empty_remote_branch(self) -> str:
        """The branch to start in a clone of an empty remote: the remote's HEAD when it is
        on this machine, else ``main`` (libgit2 cannot see an empty remote's HEAD)."""
        path = self._local_remote_path()
        if path is not None:
            try:
                target = pygit2.Repository(str(path)).references["HEAD"].target
            except (pygit2.GitError, KeyError):
                target = None
            if isinstance(target, str) and target.startswith("refs/heads/"):
                return target[len("refs/heads/") :]
        return "main"

    def _start_branch(self, repo: pygit2.Repository, branch: str) -> None:
        """Check out ``branch`` in a fresh clone: the remote's, else a new one at HEAD."""
        ref = f"refs/heads/{branch}"
        remote_oid = self._tracking(repo, branch)
        if remote_oid is None and not repo.head_is_unborn:
            remote_oid = repo.head.peel(pygit2.Commit).id
        if remote_oid is not None:
            commit = repo.get(remote_oid)
            assert isinstance(commit, pygit2.Commit)
            repo.references.create(ref, remote_oid, force=True)
            repo.checkout_tree(commit.tree, strategy=CheckoutStrategy.FORCE)
        repo.set_head(ref)

    def head(self) -> str | None:
        """The local branch's commit id, or None before the first commit."""
        repo = self._repo()
        oid = self._local(repo, self._branch_name(repo))
        return str(oid) if oid is not None else None

    def ahead_of_remote(self) -> int:
        """How many local commits the remote's branch does not have yet."""
        repo = self._repo()
        branch = self._branch_name(repo)
        local = self._local(repo, branch)
        if local is None:
            return 0
        remote = self._tracking(repo, branch)
        if remote is None:
            return sum(1 for _ in repo.walk(local))
        ahead, _behind = repo.ahead_behind(local, remote)
        return ahead

    def commit_run(self, message: str, trailers: Mapping[str, str]) -> str | None:
        """Commit everything in the work tree on the branch; None if nothing changed."""
        with self._converted("commit failed"):
            repo = self._repo()
            branch = self._branch_name(repo)
            full = self._message(message, trailers)
            if not self._stage(repo):
                return None
            oid = self._commit_index(repo, self._local(repo, branch), full)
            if oid is None:
                return None
            repo.references.create(f"refs/heads/{branch}", oid, force=True)
            return str(oid)

    def _commit_index(self, repo: pygit2.Repository, parent: pygit2.Oid | None, message: str) -> pygit2.Oid | None:
        """A commit of the staged tree on ``parent``; None when the tree is the parent's."""
        tree = repo.index.write_tree()
        if parent is not None:
            parent_commit = repo.get(parent)
            assert isinstance(parent_commit, pygit2.Commit)
            if parent_commit.tree_id == tree:
                return None
        sig = self._signature()
        return repo.create_commit(None, sig, sig, message, tree, [parent] if parent else [])

    def push(self) -> PushResult:
        """Push the branch; rebase on rejection; conflicts and outages as in the module doc."""
        if not self.push_enabled:
            repo = self._repo()
            head = self._local(repo, self._branch_name(repo))
            return PushResult("disabled", str(head) if head else None, None, "push = false")
        repo = self._repo()
        branch = self._branch_name(repo)
        detail = self._push_failed_branches(repo)
        rebased = False
        for _ in range(_PUSH_ATTEMPTS):
            local = self._local(repo, branch)
            if local is None:
                return PushResult("pushed", None, branch, "nothing to push")
            spec = f"refs/heads/{branch}:refs/heads/{branch}"
            try:
                rejected = self._push_refs(repo, [spec])
            except RemoteUnavailable as exc:
                return PushResult("pending", str(local), branch, str(exc))
            if not rejected:
                repo.references.create(f"refs/remotes/{REMOTE}/{branch}", local, force=True)
                return PushResult("rebased" if rebased else "pushed", str(local), branch, detail)
            try:
                self._fetch(repo)
            except RemoteUnavailable as exc:
                return PushResult("pending", str(local), branch, str(exc))
            remote = self._tracking(repo, branch)
            if remote is None or repo.descendant_of(local, remote):
                reason = "; ".join(rejected.values())
                return PushResult("pending", str(local), branch, f"{self._name()}: push refused: {reason}")
            conflict = self._rebase(repo, branch, local, remote)
            if conflict is not None:
                return self._to_conflicts(repo, branch, local, remote, conflict)
            rebased = True
        local = self._local(repo, branch)
        return PushResult("pending", str(local) if local else None, branch, "push kept being rejected")

    def _rebase(
        self, repo: pygit2.Repository, branch: str, local: pygit2.Oid, remote: pygit2.Oid
    ) -> pygit2.Commit | None:
        """Replay local commits onto ``remote``; return the conflicting commit, if any."""
        base = repo.merge_base(local, remote)
        todo: list[pygit2.Commit] = []
        oid: pygit2.Oid | None = local
        while oid is not None and oid != base:
            commit = repo.get(oid)
            assert isinstance(commit, pygit2.Commit)
            todo.append(commit)
            oid = commit.parent_ids[0] if commit.parent_ids else None
        tip, conflict = self._replay(repo, todo[::-1], remote)
        if conflict is not None:
            return conflict
        assert tip is not None
        repo.references.create(f"refs/heads/{branch}", tip, force=True)
        self._defuse(repo, tip)
        repo.reset(tip, ResetMode.HARD)
        return None

    def _replay(
        self, repo: pygit2.Repository, commits: list[pygit2.Commit], onto: pygit2.Oid | None
    ) -> tuple[pygit2.Oid | None, pygit2.Commit | None]:
        """Replay ``commits`` (oldest first) onto ``onto`` with 3-way tree merges, committed anew.

        Returns the new tip and None, or the tip so far and the commit that conflicts.
        """
        empty = repo.get(repo.TreeBuilder().write())
        tip = onto
        for commit in commits:
            ancestor = commit.parents[0].tree if commit.parents else empty
            tip_commit = repo.get(tip) if tip is not None else None
            tip_tree = tip_commit.tree if isinstance(tip_commit, pygit2.Commit) else empty
            assert isinstance(ancestor, pygit2.Tree) and isinstance(tip_tree, pygit2.Tree)
            merged = repo.merge_trees(ancestor, tip_tree, commit.tree)
            if merged.conflicts is not None:
                return tip, commit
            tree = merged.write_tree(repo)
            tip = repo.create_commit(None, commit.author, self._signature(), commit.message, tree, [tip] if tip else [])
        return tip, None

    def _to_conflicts(
        self, repo: pygit2.Repository, branch: str, local: pygit2.Oid, remote: pygit2.Oid, commit: pygit2.Commit
    ) -> PushResult:
        run_id = _trailer_value(commit.message, "Maomao-Run") or str(commit.id)[:12]
        name = CONFLICTS + run_id
        if not pygit2.reference_is_valid_name(f"refs/heads/{name}"):
            name = CONFLICTS + str(commit.id)[:12]
        ref = f"refs/heads/{name}"
        repo.references.create(ref, local, force=True)
        try:
            rejected = self._push_refs(repo, [f"+{ref}:{ref}"])
        except RemoteUnavailable as exc:
            return PushResult("pending", str(local), branch, str(exc))
        if rejected:
            reason = "; ".join(rejected.values())
            return PushResult("pending", str(local), branch, f"{self._name()}: conflict branch refused: {reason}")
        repo.references.delete(ref)
        repo.references.create(f"refs/heads/{branch}", remote, force=True)
        self._clean(repo, remote)
        return PushResult(
            "conflict", str(local), name, f"{self._name()}: run {run_id} conflicts with {branch}; kept on {name}"
        )

    def _push_failed_branches(self, repo: pygit2.Repository) -> str:
        """Push failed-run branches a previous push could not deliver."""
        notes = []
        for ref in list(repo.references):
            if not ref.startswith(f"refs/heads/{FAILED}"):
                continue
            try:
                rejected = self._push_refs(repo, [f"+{ref}:{ref}"])
            except RemoteUnavailable:
                continue
            if not rejected:
                repo.references.delete(ref)
            else:
                notes.append(f"{ref} refused")
        return "; ".join(notes)

    def commit_failed_run(
        self, run_id: str, message: str, trailers: Mapping[str, str], *, push: bool = True
    ) -> str | None:
        """Commit a failed run's output to maomao/failed/<run-id>, push it, restore the work tree.

        Returns the commit id, or None when the run wrote nothing. The branch is
        kept locally when the push fails (or ``push`` is false); a later
        ``push()`` or ``push_failed_run()`` delivers it.
        """
        ref = f"refs/heads/{FAILED}{run_id}"
        if not run_id or not pygit2.reference_is_valid_name(ref):
            raise GitError(f"{self._name()}: run id {run_id!r} is not a valid branch name")
        with self._converted("commit of a failed run failed"):
            repo = self._repo()
            branch = self._branch_name(repo)
            full = self._message(message, trailers)
            parent = self._local(repo, branch)
            try:
                if not self._stage(repo):
                    return None
                oid = self._commit_index(repo, parent, full)
                if oid is None:
                    return None
                repo.references.create(ref, oid, force=True)
            finally:
                self._clean(repo, parent)
        if push:
            self.push_failed_run(run_id)
        return str(oid)

    def push_failed_run(self, run_id: str) -> bool:
        """Deliver maomao/failed/<run-id> if it waits here; whether it is on the remote now."""
        ref = f"refs/heads/{FAILED}{run_id}"
        repo = self._repo()
        if ref not in repo.references:
            return True
        if not self.push_enabled:
            return False
        try:
            rejected = self._push_refs(repo, [f"+{ref}:{ref}"])
        except RemoteUnavailable:
            return False
        if not rejected:
            repo.references.delete(ref)
        return not rejected

    def withdraw_run(self, run_id: str) -> str | None:
        """Take an unpushed run's commit off the way to the remote; the local branch now holding it.

        For a run whose slot this member lost (fencing): its commit on the
        branch (with the commits after it replayed onto its parent) or its
        failed-run branch moves to ``maomao/lost/<run-id>``, a local branch no
        push ever sends.  None when no unpushed commit of the run is here.
        """
        lost = f"refs/heads/{LOST}{run_id}"
        if not run_id or not pygit2.reference_is_valid_name(lost):
            raise GitError(f"{self._name()}: run id {run_id!r} is not a valid branch name")
        repo = self._repo()
        failed = f"refs/heads/{FAILED}{run_id}"
        if failed in repo.references:
            target = repo.references[failed].target
            assert isinstance(target, pygit2.Oid)
            repo.references.create(lost, target, force=True)
            repo.references.delete(failed)
            return LOST + run_id
        branch = self._branch_name(repo)
        tip = self._local(repo, branch)
        remote = self._tracking(repo, branch)
        above: list[pygit2.Commit] = []
        oid = tip
        while oid is not None and oid != remote:
            commit = repo.get(oid)
            assert isinstance(commit, pygit2.Commit)
            if _trailer_value(commit.message, "Maomao-Run") == run_id:
                break
            above.append(commit)
            oid = commit.parent_ids[0] if commit.parent_ids else None
        else:
            return None  # pushed already, or never committed here
        repo.references.create(lost, commit.id, force=True)
        parent = commit.parent_ids[0] if commit.parent_ids else None
        base, conflict = self._replay(repo, above[::-1], parent)
        if conflict is not None:
            # a later run changed the same files: keep it as it was, lost run and all
            repo.references.delete(lost)
            raise GitError(f"{self._name()}: run {run_id} cannot be taken out from under later runs")
        if base is None:
            repo.references.delete(f"refs/heads/{branch}")
            repo.set_head(f"refs/heads/{branch}")
        else:
            repo.references.create(f"refs/heads/{branch}", base, force=True)
        self._clean(repo, base)
        return LOST + run_id

    def pending_failed_branches(self) -> list[str]:
        """Failed-run branches committed here and not delivered to the remote yet."""
        repo = self._repo()
        prefix = f"refs/heads/{FAILED}"
        return [ref[len("refs/heads/") :] for ref in repo.references if ref.startswith(prefix)]

    def run_commit(self, run_id: str, depth: int = 1000) -> str | None:
        """The commit on the branch whose ``Maomao-Run`` trailer is ``run_id`` (newest ``depth`` commits)."""
        repo = self._repo()
        tip = self._local(repo, self._branch_name(repo))
        if tip is None:
            return None
        for count, commit in enumerate(repo.walk(tip)):
            if count >= depth:
                break
            if _trailer_value(commit.message, "Maomao-Run") == run_id:
                return str(commit.id)
        return None

    def on_remote(self, commit: str) -> bool:
        """Whether the remote-tracking branch (as last fetched or pushed) contains ``commit``."""
        repo = self._repo()
        remote = self._tracking(repo, self._branch_name(repo))
        if remote is None:
            return False
        oid = pygit2.Oid(hex=commit)
        return remote == oid or repo.descendant_of(remote, oid)
