"""``maomao ctl tool``: register, list, schedule, run and remove tools."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter, Token

from maomao.cli import records
from maomao.cli.context import Common, JsonFlag, with_registry, with_registry_on_trio
from maomao.cli.output import warn
from maomao.config import Config, load_config
from maomao.errors import UsageError
from maomao.model import (
    DATA_MOUNT,
    Limits,
    Run,
    Schedule,
    Tool,
    check_name,
    check_placement,
    parse_env_pairs,
    parse_number,
    utc_iso,
)
from maomao.registry import Collection, Registry

app = App(name="tool", help="Register, list, schedule, run and remove tools.")


def _whole_number(type_: type, tokens: Sequence[Token]) -> int:
    """``--pids``: plain digits only (cyclopts' int would round 1.5 and read 0x10)."""
    text = tokens[0].value
    if not re.fullmatch(r"[0-9]+", text, re.ASCII):
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def parse_spike_settings(pairs: Sequence[str]) -> dict[str, float]:
    """``--spike KEY=VALUE`` options as a mapping (the values are checked by the Tool record)."""
    settings: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--spike {pair!r} must be PARAM=VALUE or METRIC.PARAM=VALUE")
        number = parse_number(value)
        if number is None:
            raise UsageError(f"--spike {pair!r}: {value.strip()!r} is not a number")
        settings[key.strip()] = number  # its range is checked by the Tool record
    return settings


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
        ("network", tool.network or "(default)"),
        ("read_only", "(default)" if tool.read_only is None else str(tool.read_only).lower()),
        ("data_mount", tool.data_mount),
        ("pinned", tool.digest or "no"),
        ("metrics", " ".join(tool.metrics) or "-"),
        ("spikes", " ".join(f"{k}={v:g}" for k, v in tool.spikes.items()) or "(defaults)"),
    ]


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A tool as ``tool get`` shows it: with its schedule and next fire time."""

    tool: Tool
    schedule: Schedule | None
    next_run: str | None
    unreadable: bool = False  # a schedule is stored but this maomao cannot read it

    @classmethod
    def of(cls, tool: Tool, schedule: Schedule | None, now: datetime, unreadable: bool = False) -> Scheduled:
        next_run = utc_iso(schedule.parsed().next_after(now)) if schedule is not None else None
        return cls(tool, schedule, next_run, unreadable)

    def cell(self, text: str | None) -> str:
        return "?" if self.unreadable else text or "-"

    def to_dict(self) -> dict[str, Any]:
        schedule = self.schedule.to_dict() if self.schedule is not None else None
        if schedule is not None:
            del schedule["name"]
        return {**self.tool.to_dict(), "schedule": schedule, "next_run": self.next_run}

    def details(self) -> list[tuple[str, str]]:
        pairs = _details(self.tool)
        schedule = self.schedule
        if schedule is None:
            return [*pairs, ("schedule", self.cell(None)), ("next_run", self.cell(None))]
        return [
            *pairs,
            ("schedule", schedule.expression),
            ("timezone", schedule.timezone),
            ("catch_up", schedule.catch_up),
            ("concurrency", schedule.concurrency),
            ("on", schedule.on),
            ("next_run", self.cell(self.next_run)),
        ]


@app.command
def get(
    name: str | None = None,
    /,
    *,
    json: JsonFlag = False,
    common: Common = Common(),
) -> None:
    """List the registered tools with their schedules, or show one.

    Parameters
    ----------
    name
        Show only this tool.
    """

    async def read(registry: Registry, _config: Config) -> list[Scheduled]:
        now = datetime.now(UTC)
        if name is not None:
            return [Scheduled.of(*await registry.tool_and_schedule(name), now)]
        tools = await registry.tools.list()
        schedules = await registry.schedules.list()  # one range for all tools
        by_tool = {s.name: s for s in schedules.records}
        broken = {problem.partition(": ")[0] for problem in schedules.unreadable}
        for problem in (*tools.unreadable, *schedules.unreadable):
            warn(problem)
        return [
            Scheduled.of(t, by_tool.get(t.name), now, registry.keys.schedule(t.name) in broken)
            for t in tools.records
        ]

    records.render(
        with_registry(common, read),
        name is not None,
        json,
        [
            ("NAME", lambda r: r.tool.name),
            ("AUTHOR", lambda r: r.tool.author),
            ("IMAGE", lambda r: r.tool.image),
            ("ARTEFACT", lambda r: r.tool.artefact),
            ("DATA_REPO", lambda r: r.tool.data_repo),
            ("CODE_REPO", lambda r: r.tool.code_repo),
            ("SCHEDULE", lambda r: r.cell(r.schedule.expression if r.schedule else None)),
            ("NEXT_RUN", lambda r: r.cell(r.next_run)),
        ],
        Scheduled.details,
        Scheduled.to_dict,
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
    network: Annotated[
        Literal["bridge", "none", "host"] | None,
        Parameter(help="The container's network (default: [runner] network, bridge)."),
    ] = None,
    read_only: Annotated[
        bool | None, Parameter(help="Read-only root file system (the data mount and /tmp stay writable).")
    ] = None,
    data_mount: Annotated[
        str, Parameter(help="Where the container sees its data repository.")
    ] = DATA_MOUNT,
    pin: Annotated[
        bool, Parameter(help="Resolve the image's digest now and run only that digest until `tool pin`.")
    ] = False,
    metric: Annotated[
        list[str] | None,
        Parameter(help="A series to watch for spikes, NAME=GLOB[:COLUMN]; repeat for more."),
    ] = None,
    spike: Annotated[
        list[str] | None,
        Parameter(
            help="Spike detection setting, PARAM=VALUE or METRIC.PARAM=VALUE (threshold, cooldown, "
            "min_history, short_percent); repeat for more."
        ),
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
        network=network,
        read_only=read_only,
        data_mount=data_mount,
        spikes=parse_spike_settings(spike or []),
    )
    if pin:
        if runtime != "container":
            raise UsageError("--pin is for the container runtime (a process tool has no image to pin)")
        from maomao.cli.pin import pinned

        tool = pinned(tool, load_config(common.config))
    records.add(common, _tools, tool, replace)


@app.command
def pin(name: str, /, *, common: Common = Common()) -> None:
    """Pin a tool to the digest its image has now (pull it if the engine lacks it).

    A pinned tool runs only that digest: an image pushed again under the same
    tag changes nothing until this is run again.

    Parameters
    ----------
    name
        The tool to pin.
    """
    from maomao.cli.pin import pin_tool

    pin_tool(common, name)


@app.command
def logs(
    name: str,
    run_id: str | None = None,
    /,
    *,
    follow: Annotated[bool, Parameter(help="Keep printing output as it comes, until the run ends.")] = False,
    common: Common = Common(),
) -> int:
    """Print a run's output (the newest run's unless RUN_ID is given).

    Parameters
    ----------
    name
        The tool.
    run_id
        Which run (see `tool runs NAME`).
    """
    from maomao.cli.logs import show_logs

    async def act(registry: Registry, config: Config) -> int:
        return await show_logs(registry, config, name, run_id, follow)

    return with_registry_on_trio(common, act)


@app.command
def remove(name: str, /, *, common: Common = Common()) -> None:
    """Remove a registered tool and its schedule (its past runs stay).

    Parameters
    ----------
    name
        The tool to remove.
    """

    async def delete(registry: Registry, _config: Config) -> bool:
        return await registry.remove_tool(name)

    had_schedule = with_registry(common, delete)
    print(f"tool {name} removed" + (" with its schedule" if had_schedule else ""))


@app.command
def schedule(
    name: str,
    expression: str,
    /,
    *,
    tz: Annotated[str, Parameter(help="IANA time zone the expression is read in, e.g. Europe/Berlin.")] = "UTC",
    catch_up: Annotated[
        Literal["latest", "skip", "all"],
        Parameter(help="Slots missed while no member was up: run the latest one, none, or all of them."),
    ] = "latest",
    concurrency: Annotated[
        Literal["forbid", "allow"],
        Parameter(help="Whether a slot may start while the previous run is still going."),
    ] = "forbid",
    on: Annotated[
        str, Parameter(help="Where it runs: any (one member), all (every member), a member name, or LABEL=VALUE.")
    ] = "any",
    common: Common = Common(),
) -> None:
    """Run a tool on a schedule (replaces the tool's schedule if it has one).

    Parameters
    ----------
    name
        The tool to schedule.
    expression
        When, as one argument: daily, weekly, hourly (at a time spread by the tool's name),
        '@every 30m', or five-field cron such as '*/5 * * * *'.
    """
    now = datetime.now(UTC)
    record = Schedule(
        name=name,
        expression=expression,
        timezone=tz,
        catch_up=catch_up,
        concurrency=concurrency,
        on=on,
        created=utc_iso(now),
    )
    parsed = record.parsed()
    # store the normalised spelling ("@every 1h30m", "0 3 * * MON"): what every member parses alike
    record = replace(record, expression=parsed.text)

    async def write(registry: Registry, _config: Config) -> Schedule | None:
        return await registry.schedule(record)

    previous = with_registry(common, write)
    placement = "" if on == "any" else f", on {on}"
    print(
        f"tool {name} {'rescheduled' if previous else 'scheduled'}: {parsed.text} ({parsed.zone}){placement}, "
        f"next run {utc_iso(parsed.next_after(now))}"
    )


@app.command
def unschedule(name: str, /, *, common: Common = Common()) -> None:
    """Stop running a tool on its schedule (the tool stays registered).

    Parameters
    ----------
    name
        The tool to unschedule.
    """

    async def delete(registry: Registry, _config: Config) -> None:
        await registry.unschedule(name)

    with_registry(common, delete)
    print(f"tool {name} unscheduled")


@app.command
def runs(
    name: str,
    /,
    *,
    limit: Annotated[
        int, Parameter(help="Show at most this many, newest first; 0 shows all.", converter=_whole_number)
    ] = 20,
    json: JsonFlag = False,
    common: Common = Common(),
) -> None:
    """List a tool's runs, newest first: those in progress and those finished.

    Parameters
    ----------
    name
        The tool whose runs to list.
    """
    from maomao.cli.runs import emit_runs, list_runs

    async def read(registry: Registry, _config: Config) -> list[Run]:
        return await list_runs(registry, name, limit)

    emit_runs(with_registry(common, read), name, json)


@app.command
def run(
    name: str,
    /,
    *,
    no_wait: Annotated[bool, Parameter(help="Print the run id once the request is written, and exit.")] = False,
    wait: Annotated[
        bool, Parameter(help="Wait for the run to end and report it (the default).", negative=())
    ] = False,
    on: Annotated[
        str | None, Parameter(help="Only this member (or members with LABEL=VALUE) may take the run.")
    ] = None,
    here: Annotated[
        bool, Parameter(help="Run it in this process instead of through a member (process runtime only).")
    ] = False,
    claim_timeout: Annotated[
        float, Parameter(help="Seconds to wait for a member to take the run before withdrawing the request.")
    ] = 10.0,
    common: Common = Common(),
) -> int:
    """Run a tool now: a live member takes the run, and this waits for it and reports.

    Exits 0 when the run succeeded, 1 when it failed or no member took it.

    Parameters
    ----------
    name
        The tool to run.
    """
    check_name(name, "tool name")
    if wait and no_wait:
        raise UsageError("--wait and --no-wait contradict each other")
    if here and (no_wait or on is not None):
        raise UsageError("--here runs the tool in this process: it takes neither --no-wait nor --on")
    placement = check_placement(on or "any")
    if placement == "all":
        raise UsageError("--on all is for schedules: a run now is taken by one member; name one, or LABEL=VALUE")
    if not (math.isfinite(claim_timeout) and 0 < claim_timeout <= 3600):
        raise UsageError(f"--claim-timeout {claim_timeout!r} must be seconds above 0, at most 3600")

    if here:
        from maomao.cli.run_here import run_here

        async def act_here(registry: Registry, config: Config) -> int:
            return await run_here(registry, config, name)

        return with_registry_on_trio(common, act_here)

    from maomao.cli.run_now import Requested, say, write_request

    async def write(registry: Registry, _config: Config) -> Requested:
        return await write_request(registry, name, placement)

    requested = with_registry(common, write)  # without Trio: it loads while a member starts the run
    if no_wait:
        say(requested.run_id)
        return 0
    say(f"requested run {requested.run_id} of tool {requested.tool}")
    from maomao.cli.follow import follow_request

    async def follow(registry: Registry, _config: Config) -> int:
        return await follow_request(registry, requested, claim_timeout)

    return with_registry_on_trio(common, follow)
