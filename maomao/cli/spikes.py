"""``maomao ctl spikes get [TOOL] [--since 7d] [--json]``: the spikes detection found, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from cyclopts import App, Parameter

from maomao.cli import records
from maomao.cli.context import Common, JsonFlag, with_registry
from maomao.cli.output import warn
from maomao.config import Config
from maomao.errors import MaomaoError, NotFound, UsageError, ValidationError
from maomao.model import Spike, check_name, parse_iso
from maomao.registry import Registry, parse_at

app = App(name="spikes", help="The spikes found in the tools' series.")


def _since(text: str) -> tuple[datetime, str]:
    """The oldest time ``--since`` takes in, and the duration as maomao spells it (``1d``, ``1h30m``)."""
    from maomao.schedule import format_duration, parse_duration

    try:
        duration = parse_duration(text)
        return datetime.now(UTC) - duration, format_duration(duration)
    except ValidationError as exc:
        # the duration's own reason ("must be at most 366d", "expected e.g. 30s, ...") names the text
        raise UsageError(f"--since: {exc}") from None


def _deviation(spike: Spike) -> str:
    return f"{spike.deviation:+.1%}" if spike.deviation is not None else "-"


@app.command
def get(
    tool: str | None = None,
    /,
    *,
    since: Annotated[str, Parameter(help="Only spikes detected within this long, e.g. 7d, 12h.")] = "7d",
    json: JsonFlag = False,
    common: Common = Common(),
) -> None:
    """List the spikes detected after runs (of one tool, or of all), newest first.

    Parameters
    ----------
    tool
        Only this tool's spikes.
    """
    if tool is not None:
        check_name(tool, "tool name")
    oldest, since = _since(since)

    async def read(registry: Registry, _config: Config) -> list[Spike]:
        prefix = registry.keys.spikes(tool) if tool is not None else registry.keys.all_spikes
        result = await registry.store.range(prefix)
        if tool is not None and not result.kvs and await registry.store.get(registry.keys.tool(tool)) is None:
            raise NotFound(f"no tool named {tool!r}")
        found = []
        for kv in result.kvs:
            try:
                spike = parse_at(kv, Spike, registry.keys.all_spikes)
            except MaomaoError as exc:
                warn(str(exc))  # names the key
                continue
            if parse_iso(spike.detected) >= oldest:
                found.append(spike)
        return sorted(found, key=lambda s: (s.detected, s.name), reverse=True)

    found = with_registry(common, read)
    if not found and not json:
        print(f"no spikes in the last {since}" + (f" for tool {tool}" if tool else ""))
        return
    records.render(
        found,
        False,
        json,
        [
            ("DETECTED", lambda s: s.detected),
            ("TOOL", lambda s: s.tool),
            ("METRIC", lambda s: s.metric),
            ("VALUE", lambda s: f"{s.value:g}"),
            ("BASELINE", lambda s: f"{s.baseline:g}"),
            ("CHANGE", _deviation),
            ("SCORE", lambda s: f"{s.score:.3f}"),
            ("POINT", lambda s: s.point),
            ("RUN", lambda s: s.run_id),
        ],
        lambda s: [],
        Spike.to_dict,
    )


