"""``maomao ctl tool``: register, list and remove tools."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import asdict
from typing import Annotated, Literal

from cyclopts import App, Parameter, Token

from maomao.cli import records
from maomao.cli.context import Common
from maomao.model import Limits, Tool, parse_env_pairs
from maomao.registry import Collection, Registry

app = App(name="tool", help="Register, list and remove tools.")


def _whole_number(type_: type, tokens: Sequence[Token]) -> int:
    """``--pids``: plain digits only (cyclopts' int would round 1.5 and read 0x10)."""
    text = tokens[0].value
    if not re.fullmatch(r"[0-9]+", text, re.ASCII):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def _tools(registry: Registry) -> Collection[Tool]:
    return registry.tools


def _details(tool: Tool) -> list[tuple[str, str]]:
    limits = ", ".join(f"{k}={v}" for k, v in asdict(tool.limits).items() if v is not None)
    return [
        ("name", tool.name),
        ("author", tool.author),
        ("image", tool.image + (f"@{tool.digest}" if tool.digest else "")),
        ("artefact", tool.artefact),
        ("data_repo", tool.data_repo),
        ("code_repo", tool.code_repo),
        ("runtime", tool.runtime),
        ("command", tool.command or "(the image's)"),
        ("env", " ".join(f"{k}={shlex.quote(v)}" for k, v in tool.env.items()) or "-"),
        ("timeout", f"{tool.timeout:g}s" if tool.timeout else "(default)"),
        ("limits", limits or "(defaults)"),
        ("metrics", " ".join(tool.metrics) or "-"),
    ]


@app.command
def get(
    name: str | None = None,
    /,
    *,
    json: Annotated[bool, Parameter(help="Print a JSON list of objects instead of a table.")] = False,
    common: Common = Common(),
) -> None:
    """List the registered tools, or show one.

    Parameters
    ----------
    name
        Show only this tool.
    """
    records.show(
        common,
        _tools,
        name,
        json,
        [
            ("NAME", lambda t: t.name),
            ("AUTHOR", lambda t: t.author),
            ("IMAGE", lambda t: t.image),
            ("ARTEFACT", lambda t: t.artefact),
            ("DATA_REPO", lambda t: t.data_repo),
            ("CODE_REPO", lambda t: t.code_repo),
        ],
        _details,
    )


@app.command
def add(
    name: str,
    author: str,
    image: str,
    data_repo: str,
    code_repo: str,
    artefact: str,
    /,
    *,
    command: Annotated[
        str | None, Parameter(help="Command to run instead of the image's own (a shell-quoted string).")
    ] = None,
    env: Annotated[
        list[str] | None, Parameter(help="Environment variable for the tool, KEY=VALUE; repeat for more.")
    ] = None,
    timeout: Annotated[float | None, Parameter(help="Seconds a run may take before it is stopped.")] = None,
    memory: Annotated[str | None, Parameter(help="Memory limit of a run, e.g. 512m or 2g.")] = None,
    cpus: Annotated[float | None, Parameter(help="CPU limit of a run, e.g. 0.5.")] = None,
    pids: Annotated[int | None, Parameter(help="Process limit of a run.", converter=_whole_number)] = None,
    metric: Annotated[
        list[str] | None,
        Parameter(help="A series to watch for spikes, NAME=GLOB[:COLUMN]; repeat for more."),
    ] = None,
    runtime: Annotated[
        Literal["container", "process"],
        Parameter(help="Run the image in a container, or --command as a host process."),
    ] = "container",
    replace: Annotated[bool, Parameter(help="Overwrite a tool of the same name.")] = False,
    common: Common = Common(),
) -> None:
    """Register a tool: a container image that collects data into a git repository.

    Parameters
    ----------
    name
        The tool's name: 1-64 letters, digits, '.', '_' or '-'.
    author
        Who maintains it.
    image
        Its container image, e.g. registry.example.org/team/tool:1.2.
    data_repo
        Git remote its data is committed to.
    code_repo
        Git remote of its source code.
    artefact
        The kind of artefact it studies.
    """
    tool = Tool(
        name=name,
        author=author,
        image=image,
        data_repo=data_repo,
        code_repo=code_repo,
        artefact=artefact,
        command=command,
        env=parse_env_pairs(env or []),
        timeout=timeout,
        limits=Limits(memory=memory, cpus=cpus, pids=pids),
        metrics=tuple(metric or ()),
        runtime=runtime,
    )
    records.add(common, _tools, tool, replace)


@app.command
def remove(name: str, /, *, common: Common = Common()) -> None:
    """Remove a registered tool.

    Parameters
    ----------
    name
        The tool to remove.
    """
    records.remove(common, _tools, name)
