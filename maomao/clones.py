"""Datasets cloned on this machine: clone or update one, and the record of where they are.

``maomao ctl dataset clone NAME`` clones a dataset's git remote into
``importdir/<NAME>`` (or ``--dest``), or, when it is cloned already, fetches
and fast-forwards it; the work is :class:`maomao.gitdata.DataRepo`'s
(a first clone goes to a temporary directory renamed into place, so a failed
one leaves nothing). This module decides where, refuses a destination that
holds something else, counts what came, and keeps the local record
``importdir/.maomao/clones.json``: dataset name -> path, URL, when cloned and
last updated (rewritten atomically, under a lock). ``dataset get`` reads the
record and each clone's HEAD. The original's ``[DATA_REPOS]`` section of
config.ini is neither written nor read.

pygit2 is imported only by functions that open a repository, so reading the
record costs nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maomao.errors import MaomaoError, UsageError
from maomao.model import Dataset, utc_iso

if TYPE_CHECKING:
    import pygit2

    from maomao.config import Config
    from maomao.gitdata import Progress

__all__ = [
    "Clone",
    "CloneBusy",
    "Head",
    "Outcome",
    "clone_dataset",
    "load",
    "read_head",
    "record_path",
]

RECORD_VERSION = 1
#: what a destination path must not hold: NUL and other control characters, undecodable bytes (surrogates)
_UNUSABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class CloneBusy(MaomaoError):
    """Another process is cloning or updating the same dataset here."""


@dataclass(frozen=True, slots=True)
class Clone:
    """Where one dataset is cloned on this machine."""

    name: str
    path: Path
    url: str
    cloned: str  # ISO 8601 UTC
    updated: str

    def to_json(self) -> dict[str, str]:
        return {"path": str(self.path), "url": self.url, "cloned": self.cloned, "updated": self.updated}


@dataclass(frozen=True, slots=True)
class Head:
    """A clone's HEAD: the commit (None before the first) and the branch (None when detached)."""

    commit: str | None
    branch: str | None

    @property
    def short(self) -> str:
        return self.commit[:7] if self.commit else "-"

    def describe(self) -> str:
        """``abc1234 main``, ``abc1234 (detached)``, ``empty main``."""
        commit = self.commit[:7] if self.commit else "empty"
        return f"{commit} {self.branch}" if self.branch else f"{commit} (detached)"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``clone_dataset`` did."""

    name: str
    path: Path
    fresh: bool  # cloned now (else updated an existing clone)
    commits: int  # all commits for a fresh clone, new ones for an update
    head: Head
    ahead: int = 0  # local commits the remote does not have

    def line(self) -> str:
        """The one line ``dataset clone`` ends with."""
        if self.fresh:
            if self.head.commit is None:
                return f"cloned {self.name} into {self.path} (empty repository)"
            return f"cloned {self.name} into {self.path} ({_commits(self.commits)}, HEAD {self.head.short})"
        local = f" ({_commits(self.ahead)} here not on the remote)" if self.ahead else ""
        if self.commits == 0:
            return f"{self.name} at {self.path} is up to date{local}"
        return f"updated {self.name} at {self.path}: {_commits(self.commits, 'new ')} (HEAD {self.head.short}){local}"


def _commits(count: int, adjective: str = "") -> str:
    return f"{count} {adjective}commit{'' if count == 1 else 's'}"


# -- the record ---------------------------------------------------------------


def record_path(importdir: Path) -> Path:
    """``importdir/.maomao/clones.json``."""
    return importdir / ".maomao" / "clones.json"


def load(importdir: Path) -> tuple[dict[str, Clone], list[str]]:
    """The clones recorded here, and a line for each part of the record that could not be read."""
    path = record_path(importdir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [f"{path}: cannot read it: {exc}"]
    try:
        data = json.loads(text)
        entries = data["clones"]
        if not isinstance(entries, dict):
            raise TypeError("clones is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        return {}, [f"{path}: not a clone record ({exc}); it is rewritten by the next dataset clone"]
    clones: dict[str, Clone] = {}
    problems: list[str] = []
    for name, entry in entries.items():
        try:
            clones[name] = Clone(
                name,
                Path(_text(entry, "path")),
                _text(entry, "url"),
                _text(entry, "cloned"),
                _text(entry, "updated"),
            )
        except (KeyError, TypeError) as exc:
            problems.append(f"{path}: entry {name!r} is unreadable ({exc}); ignored")
    return clones, problems


def _text(entry: Any, key: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"{key} is not text")
    return value


def _save(importdir: Path, clones: Mapping[str, Clone]) -> None:
    """Write the record atomically: a temporary file beside it, flushed, renamed over it."""
    path = record_path(importdir)
    body = {"v": RECORD_VERSION, "clones": {name: clones[name].to_json() for name in sorted(clones)}}
    fd, tmp = tempfile.mkstemp(prefix=".clones-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(body, out, indent=2, ensure_ascii=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        _as_umask_allows(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _as_umask_allows(path: Path, mode: int) -> None:
    """Give ``path`` the permissions a plain ``mkdir``/``open`` would have (temporary files are private)."""
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def _locked(lock: Path, *, wait: bool, busy: str) -> Iterator[None]:
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise MaomaoError(f"cannot write in {lock.parent}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise CloneBusy(busy) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _remember(importdir: Path, clone: Clone, fresh: bool) -> None:
    """Record ``clone`` (read, change, write under the record's lock); an update keeps when it was cloned."""
    record = record_path(importdir)
    with _locked(record.with_name("clones.lock"), wait=True, busy=""):
        clones, _problems = load(importdir)
        previous = clones.get(clone.name)
        if not fresh and previous is not None and previous.path == clone.path:
            clone = Clone(clone.name, clone.path, clone.url, previous.cloned, clone.updated)
        clones[clone.name] = clone
        try:
            _save(importdir, clones)
        except OSError as exc:
            raise MaomaoError(f"cannot write {record}: {exc.strerror or exc}") from None


# -- repositories ---------------------------------------------------------------


def _open(path: Path) -> pygit2.Repository | None:
    """The repository whose work tree is ``path`` (not a parent's), or None."""
    if not (path / ".git").exists():
        return None
    import pygit2
    from pygit2.enums import RepositoryOpenFlag

    try:
        return pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
    except (pygit2.GitError, KeyError, OSError):
        return None


def _head(repo: pygit2.Repository) -> Head:
    target = repo.references["HEAD"].target
    if isinstance(target, str):  # symbolic: on a branch, maybe unborn
        branch = target.removeprefix("refs/heads/")
        if repo.head_is_unborn:
            return Head(None, branch)
        return Head(str(repo.head.target), branch)
    return Head(str(target), None)


def read_head(path: Path) -> Head | None:
    """HEAD of the clone at ``path``; None when there is no readable repository there."""
    repo = _open(path)
    if repo is None:
        return None
    import pygit2

    try:
        return _head(repo)
    except (pygit2.GitError, KeyError):
        return None


def _origin(repo: pygit2.Repository) -> str | None:
    try:
        return repo.remotes["origin"].url
    except KeyError:
        return None


def _count(repo: pygit2.Repository, new: str | None, old: str | None) -> int:
    """Commits reachable from ``new`` and not from ``old``."""
    import pygit2

    if new is None or new == old:
        return 0
    if old is None or pygit2.Oid(hex=old) not in repo.odb:
        return sum(1 for _ in repo.walk(pygit2.Oid(hex=new)))
    ahead, _behind = repo.ahead_behind(pygit2.Oid(hex=new), pygit2.Oid(hex=old))
    return ahead


def _divergence(repo: pygit2.Repository, head: Head) -> tuple[int, int]:
    """(ahead, behind) of the local branch against ``origin``'s."""
    import pygit2

    if head.commit is None or head.branch is None:
        return 0, 0
    tracking = repo.references.get(f"refs/remotes/origin/{head.branch}")
    if tracking is None:
        return 0, 0
    remote = tracking.resolve().target
    assert isinstance(remote, pygit2.Oid)
    ahead, behind = repo.ahead_behind(pygit2.Oid(hex=head.commit), remote)
    return ahead, behind


# -- clone or update ---------------------------------------------------------------


def destination(dataset: Dataset, importdir: Path, dest: Path | None, known: Clone | None) -> Path:
    """``dest`` made absolute; else where it is recorded as cloned (if still there); else importdir/NAME.

    A ``--dest`` that cannot name a directory (NUL, control characters, undecodable bytes, ``~user`` of
    no user, longer than a path may be) is a UsageError.
    """
    if dest is not None:
        text = str(dest)
        if not text or _UNUSABLE.search(text) or len(os.fsencode(text)) > 4095:
            raise UsageError(f"--dest {text[:200]!r} is not a directory path that can be used")
        try:
            return Path(os.path.abspath(dest.expanduser()))
        except RuntimeError:  # ~user of a user that does not exist, or no home
            raise UsageError(f"--dest {text[:200]!r}: its home directory is unknown") from None
    if known is not None and _open(known.path) is not None:
        return known.path
    return Path(os.path.abspath(importdir / dataset.name))


def check_destination(dataset: Dataset, path: Path, recorded_url: str | None) -> bool:
    """True when ``path`` is a clone of ``dataset`` to update, False when it is free to clone into.

    Raises UsageError (nothing written) when it holds anything else: a file,
    a directory with other things in it, a clone of another remote, or when
    it cannot be looked at (a name too long, a directory not to be read).
    """
    try:
        return _check_destination(dataset, path, recorded_url)
    except OSError as exc:
        raise UsageError(f"{path} cannot be used as the destination: {exc.strerror or exc}") from None


def _check_destination(dataset: Dataset, path: Path, recorded_url: str | None) -> bool:
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory; choose another --dest")
    repo = _open(path)
    if repo is None:
        if any(path.iterdir()):
            raise UsageError(
                f"{path} exists, is not empty and is not a clone of dataset {dataset.name}; choose another --dest"
            )
        return False
    origin = _origin(repo)
    if origin != dataset.url and (origin is None or origin != recorded_url):
        what = f"a clone of {origin}" if origin else "a git repository without an origin remote"
        raise UsageError(f"{path} is {what}, not of dataset {dataset.name} ({dataset.url}); choose another --dest")
    return True


def clone_dataset(
    dataset: Dataset,
    config: Config,
    *,
    dest: Path | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Clone ``dataset`` here, or fetch and fast-forward its clone; record where it is.

    Raises UsageError (exit 2, nothing written) for a destination holding
    something else; MaomaoError (exit 1) when the remote cannot be reached,
    the clone fails (nothing is left behind), local changes or commits stand
    in the way of a fast-forward (nothing is changed), or another process is
    cloning the same dataset.
    """
    from maomao.gitdata import Auth, DataRepo, GitError, RemoteUnavailable, set_network_timeout

    importdir = config.importdir
    known = load(importdir)[0].get(dataset.name)
    path = destination(dataset, importdir, dest, known)
    recorded_url = known.url if known is not None and known.path == path else None
    check_destination(dataset, path, recorded_url)

    git = config.git
    set_network_timeout(git.timeout)
    repo = DataRepo(
        path,
        dataset.url,
        author_name=git.author_name,
        author_email=git.author_email,
        push=False,
        auth=Auth(token=git.token, token_user=git.token_user, ssh_key=git.ssh_key),
        progress=progress,
    )
    lock = importdir / ".maomao" / "locks" / f"dataset-{dataset.name}.lock"
    busy = f"dataset {dataset.name} is being cloned or updated by another process; try again when it is done"
    with _locked(lock, wait=False, busy=busy):
        exists = check_destination(dataset, path, recorded_url)  # again, now that no other clone runs
        before = read_head(path) if exists else None
        if before is not None and before.branch is None:
            raise MaomaoError(
                f"dataset {dataset.name} at {path}: HEAD is detached; check out a branch, then clone again"
            )
        try:
            repo.ensure()
        except RemoteUnavailable as exc:
            reason = _reason(dataset, exc)
            raise MaomaoError(f"dataset {dataset.name}: cannot fetch from {dataset.url}: {reason}") from None
        except GitError as exc:
            if exists and _dirty(path):
                raise MaomaoError(
                    f"dataset {dataset.name} at {path}: local changes or untracked files in the way of the update; "
                    "commit, move or discard them, then clone again (nothing was changed)"
                ) from None
            what = "cannot update from" if exists else "cannot clone"
            raise MaomaoError(f"dataset {dataset.name}: {what} {dataset.url}: {_reason(dataset, exc)}") from None
        except OSError as exc:
            raise MaomaoError(f"dataset {dataset.name}: cannot clone into {path}: {exc}") from None
        if not exists:
            _as_umask_allows(path, 0o777)  # the clone was made in a private temporary directory
        opened = _open(path)
        if opened is None:
            raise MaomaoError(f"dataset {dataset.name}: no clone at {path} after cloning")
        head = _head(opened)
        ahead, behind = _divergence(opened, head)
        if behind:
            raise MaomaoError(
                f"dataset {dataset.name} at {path}: {_commits(ahead)} here the remote does not have and "
                f"{_commits(behind)} of the remote's not here; not fast-forwarded (merge or reset it yourself)"
            )
        commits = _count(opened, head.commit, before.commit if before else None)
        now = utc_iso(datetime.now(UTC))
        _remember(importdir, Clone(dataset.name, path, dataset.url, now, now), fresh=not exists)
    return Outcome(dataset.name, path, not exists, commits, head, ahead)


def _reason(dataset: Dataset, exc: Exception) -> str:
    """gitdata's message without its ``data repository URL: `` opening (the caller names the dataset)."""
    return str(exc).removeprefix(f"data repository {dataset.url}: ")


def _dirty(path: Path) -> bool:
    """Whether the clone at ``path`` has local changes or untracked files (either can block a checkout)."""
    from pygit2.enums import FileStatus

    repo = _open(path)
    if repo is None:
        return False
    return any(flags not in (FileStatus.CURRENT, FileStatus.IGNORED) for flags in repo.status().values())
