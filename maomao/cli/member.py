"""``maomao ctl member``: the live members (daemons) of the collaboration."""

from __future__ import annotations

from cyclopts import App

from maomao.cli import records
from maomao.cli.context import Common, JsonFlag
from maomao.model import Member
from maomao.registry import Collection, Registry

app = App(name="member", help="List the live members (each a running daemon).")


def _members(registry: Registry) -> Collection[Member]:
    return registry.members


def _labels(member: Member) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(member.labels.items())) or "-"


@app.command
def get(
    name: str | None = None,
    /,
    *,
    json: JsonFlag = False,
    common: Common = Common(),
) -> None:
    """List the live members, or show one.

    A member is listed while its daemon keeps its lease alive; one that
    stopped or lost the store disappears within the lease's ttl.

    Parameters
    ----------
    name
        Show only this member.
    """
    records.show(
        common,
        _members,
        name,
        json,
        [
            ("NAME", lambda m: m.name),
            ("HOST", lambda m: m.host),
            ("VERSION", lambda m: m.version),
            ("RUNTIMES", lambda m: ",".join(m.runtimes) or "-"),
            ("LABELS", _labels),
            ("STARTED", lambda m: m.started),
        ],
        lambda m: [
            ("name", m.name),
            ("host", m.host),
            ("version", m.version),
            ("runtimes", ", ".join(m.runtimes) or "-"),
            ("labels", _labels(m)),
            ("started", m.started),
            ("pid", str(m.pid or "-")),
        ],
    )
