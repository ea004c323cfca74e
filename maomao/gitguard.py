"""A clone's own ``.git``: is it still what maomao cloned? (no libgit2 here)

A tool writes into its data repository's work tree; a host process tool
(unconfined) can also rewrite the clone's ``.git``: hooks,
``core.fsmonitor``, ``include.path``, ``remote.*.pushurl``,
``url.*.insteadOf``, alternates, symlinks out of it.  libgit2 would follow
some of those, so they are read here with plain file operations:
:func:`layout_problems` and :func:`config_problems` say what a clone would
not have, :func:`snapshot` digests what no run may change.
:class:`maomao.gitdata.DataRepo` uses them before and after every run.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

#: the remote a clone of maomao's names
REMOTE = "origin"
#: ``.git/config`` keys a clone of maomao's has (section, key); anything else is not maomao's
_CONFIG_KEYS = {
    ("core", "repositoryformatversion"), ("core", "filemode"), ("core", "bare"), ("core", "logallrefupdates"),
    ("core", "ignorecase"), ("core", "precomposeunicode"), ("core", "symlinks"),
    ("remote", "url"), ("remote", "fetch"), ("branch", "remote"), ("branch", "merge"),
}
#: files a clone's ``.git`` may hold at its top (libgit2's and git's own); others are not maomao's
_GIT_TOP = {
    "HEAD", "config", "description", "index", "packed-refs", "FETCH_HEAD", "ORIG_HEAD", "hooks", "info",
    "objects", "refs", "logs", "branches", "COMMIT_EDITMSG",
}


def show_name(rel: str) -> str:
    """A path as one printable line: bytes that are not UTF-8 and control characters escaped."""
    text = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _config_entries(text: str) -> list[tuple[str, str, str, str]] | None:
    """(section, subsection, key, value) of a git config file's lines; None for a line that is
    not one (read here, not by libgit2, which would follow ``include.path`` out of the clone)."""
    entries: list[tuple[str, str, str, str]] = []
    section = subsection = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            header = re.fullmatch(r'\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]', line)
            if header is None:
                return None
            section, subsection = header.group(1).lower(), header.group(2) or ""
            if "." in section:  # the old [section.subsection] form
                section, _, subsection = section.partition(".")
            continue
        pair = re.fullmatch(r"([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(.*))?", line)
        if pair is None or not section:
            return None
        value = (pair.group(2) or "").strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        entries.append((section, subsection, pair.group(1).lower(), value))
    return entries


def layout_problems(git_dir: Path) -> list[str]:
    """What in ``git_dir`` a clone does not have: foreign top-level files, symlinks, hooks, alternates."""
    found = []
    for entry in sorted(os.scandir(git_dir), key=lambda e: e.name):
        name = show_name(entry.name)
        if entry.name not in _GIT_TOP:
            found.append(f".git/{name} is not a clone's")
        elif entry.is_symlink():
            found.append(f".git/{name} is a symlink")
    for sub in ("refs", "logs", "hooks", "info", "objects"):
        for dirpath, dirnames, filenames in os.walk(git_dir / sub):
            if sub == "objects" and dirpath != str(git_dir / sub):
                dirnames.clear()  # the fan-out directories: their objects are read by libgit2 alone
                continue
            for name in [*dirnames, *filenames]:
                full = os.path.join(dirpath, name)
                rel = show_name(os.path.relpath(full, git_dir))
                if os.path.islink(full):
                    found.append(f".git/{rel} is a symlink")
                elif sub == "hooks" and not name.endswith(".sample"):
                    found.append(f".git/{rel} is a hook")
                elif sub == "info" and name != "exclude":
                    found.append(f".git/{rel} is not a clone's")
                elif sub == "objects" and name in ("info", "pack"):
                    continue
                elif sub == "objects" and not re.fullmatch(r"[0-9a-f]{2}", name):
                    found.append(f".git/{rel} is not a clone's")
        if sub == "objects":
            for name in ("alternates", "http-alternates"):
                if os.path.lexists(git_dir / "objects" / "info" / name):
                    found.append(f".git/objects/info/{name} points elsewhere")
    return found


def config_problems(git_dir: Path, url: str) -> list[str]:
    """What ``git_dir/config`` sets that a clone of ``url`` does not (read without libgit2)."""
    path = git_dir / "config"
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or os.lstat(path).st_size > 1 << 20:
            return [".git/config is not a small file"]
        entries = _config_entries(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        entries = None
    if entries is None:
        return [".git/config is not a clone's config file"]
    found = []
    for section, sub, key, value in entries:
        name = f"{section}.{show_name(sub) + '.' if sub else ''}{key}"
        falsy = value.lower() in ("false", "no", "off", "0")
        if (section, key) not in _CONFIG_KEYS or (section == "remote" and sub != REMOTE):
            found.append(f".git/config sets {name}")
        elif (section, key) == ("core", "bare") and not falsy:
            found.append(".git/config makes the clone bare")
        elif (section, key) == ("core", "symlinks") and falsy:
            found.append(".git/config turns symlinks into files")
        elif (section, key) == ("remote", "url") and value != url:
            found.append(f".git/config points {REMOTE} elsewhere")
        elif (section, key) == ("remote", "fetch") and value != f"+refs/heads/*:refs/remotes/{REMOTE}/*":
            found.append(f".git/config changes what {REMOTE} fetches")
        elif (section, key) == ("branch", "remote") and value != REMOTE:
            found.append(f".git/config sets {name}")
    return found


def snapshot(git_dir: Path) -> str:
    """A digest of what no run may change in ``git_dir``: config, HEAD, hooks/, info/, objects/info/."""
    digest = hashlib.sha256()
    try:
        _digest(digest, git_dir)
    except OSError as exc:
        digest.update(f"unreadable: {exc.errno}".encode())
    return digest.hexdigest()

def _digest(digest: hashlib._Hash, git_dir: Path) -> None:
    for name in ("config", "HEAD"):
        try:
            with open(git_dir / name, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
                digest.update(name.encode() + b"\0" + handle.read(1 << 20) + b"\0")
        except OSError as exc:
            digest.update(f"{name}: {exc.errno}".encode())
    for sub in ("hooks", "info", "objects/info"):
        try:
            entries = sorted(os.scandir(git_dir / sub), key=lambda e: e.name)
        except OSError as exc:
            digest.update(f"{sub}: {exc.errno}".encode())
            continue
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            digest.update(f"{sub}/{entry.name} {info.st_mode} {info.st_size} {info.st_mtime_ns}\0".encode())
