"""The ``git`` command line for tests: what a collaborator (or a seeding script) does to a remote."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: a fixed identity and no user or system git config, whatever the machine has
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Seeder",
    "GIT_AUTHOR_EMAIL": "seed@example.org",
    "GIT_COMMITTER_NAME": "Seeder",
    "GIT_COMMITTER_EMAIL": "seed@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str | Path, check: bool = True) -> str:
    """``git ARGS``; its stdout (a failure raises CalledProcessError unless ``check`` is false)."""
    out = subprocess.run(["git", *map(str, args)], env=GIT_ENV, capture_output=True, text=True, check=check)
    return out.stdout
