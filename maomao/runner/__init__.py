"""The Runner interface: how one run of a tool is executed.

A runner takes a :class:`RunSpec` (what to run, where its data directory
and log file are, its environment, its time limit) and returns a
:class:`RunOutcome`.  It owns the whole life of what it starts: on timeout
it stops it (SIGTERM, a grace, SIGKILL) and reports ``timed_out``; when its
Trio scope is cancelled (the daemon shuts down) it stops it the same way,
shielded, and reports ``cancelled``.  It never raises for a tool that
fails: a failure is an outcome.  It raises :class:`RunnerUnavailable` when
it cannot start anything at all (no engine, no such command).

``process`` (a host command, :mod:`maomao.runner.process`) and
``container`` (the Docker Engine API, :mod:`maomao.runner.container`)
implement it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from maomao.errors import MaomaoError
from maomao.model import DATA_MOUNT, Tool

if TYPE_CHECKING:
    from maomao.config import RunnerConfig

RunState = Literal["succeeded", "failed", "timed_out", "cancelled"]

#: bytes of a run's output kept in its run record
TAIL_BYTES = 4096


class RunnerUnavailable(MaomaoError):
    """The runner cannot start the tool at all (the cause is in the message)."""


@dataclass(frozen=True, slots=True)
class Confinement:
    """What a container run may use: limits, network, root file system, where its data goes."""

    memory: str | None = None
    cpus: float | None = None
    pids: int | None = None
    network: str = "bridge"
    read_only: bool = False
    data_mount: str = DATA_MOUNT

    @classmethod
    def of(cls, tool: Tool, defaults: RunnerConfig) -> Confinement:
        """The tool's own settings, each unset one taken from ``[runner]``."""
        return cls(
            memory=tool.limits.memory or defaults.memory,
            cpus=tool.limits.cpus or defaults.cpus,
            pids=tool.limits.pids or defaults.pids,
            network=tool.network or defaults.network,
            read_only=defaults.read_only if tool.read_only is None else tool.read_only,
            data_mount=tool.data_mount,
        )


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything a runner needs for one run."""

    tool: Tool
    run_id: str
    slot: str
    member: str
    workdir: Path
    log_path: Path
    timeout: float
    kill_grace: float = 10.0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    confinement: Confinement = field(default_factory=Confinement)

    @property
    def image(self) -> str:
        """What to run: ``repository@digest`` for a pinned tool, else its image reference."""
        return pinned_reference(self.tool.image, self.tool.digest)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The tool's environment: a clean base, the tool's env, then MAOMAO_*."""
        source = os.environ if base is None else base
        env = {k: v for k, v in source.items() if k in INHERITED}
        env.update(self.tool.env)
        env.update(self.extra_env)
        env.update(
            {
                "MAOMAO_TOOL": self.tool.name,
                "MAOMAO_RUN_ID": self.run_id,
                "MAOMAO_SLOT": self.slot,
                "MAOMAO_MEMBER": self.member,
            }
        )
        return env


#: variables a host process inherits from the daemon (never NOTIFY_SOCKET & co)
INHERITED = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR"})


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended."""

    state: RunState
    exit_code: int | None
    started: datetime
    finished: datetime
    output_tail: str
    detail: str = ""
    #: the image that ran, as the engine resolved it (container runtime only)
    image: str | None = None


class Runner(Protocol):
    """Executes runs of one runtime (``process``, ``container``)."""

    name: str

    async def run(self, spec: RunSpec) -> RunOutcome: ...


def log_path(importdir: Path, tool: str, run_id: str) -> Path:
    """Where a run's stdout and stderr are kept on the member that ran it."""
    return importdir / ".maomao" / "logs" / tool / f"{run_id}.log"


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log file, decoded leniently."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def split_reference(image: str) -> tuple[str, str | None, str | None]:
    """``(repository, tag, digest)`` of an image reference (a colon after the last ``/`` is a tag,
    one before it a registry port)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def pinned_reference(image: str, digest: str | None) -> str:
    """``image`` with its tag replaced by ``digest`` (``repo@sha256:…``); ``image`` when not pinned."""
    if digest is None:
        return image
    return f"{split_reference(image)[0]}@{digest}"
