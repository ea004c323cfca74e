"""``maomao ctl tool run``: run a tool now, through a live member or right here.

Through a member, ``ctl`` writes an intent and watches what the daemons do
with it (the store is the API):

1. ``requests/<run-id>``: a :class:`~maomao.model.RunRequest`, created only
   if absent.  The run id is ``<slot_id(now)>-<6 hex>`` and is the run's
   slot too.  Nothing is written when no live member is eligible.
2. A member claims it: ``claims/<tool>/<run-id>``, a
   :class:`~maomao.model.Claim` bound to its lease, state ``claimed`` and
   then ``running``.
3. At the end, in one transaction, the member puts
   ``runs/<tool>/<run-id>`` (a :class:`~maomao.model.Run`, trigger
   ``request``) and deletes the claim and the request.

``ctl`` watches those three keys from the revision after its request,
prints each change of state, and then the run's report.  When no member
claims the request within ``--claim-timeout`` it withdraws it (deletes the
request, only while neither a claim nor a run exists) and fails.  A claim
that disappears without a run (its member died) sends it back to waiting
for a claim: the request is still there for another member.

This module writes the request; :mod:`maomao.cli.follow` watches it (Trio
is imported only then, while a member is already at work on the run), and
:mod:`maomao.cli.run_here` runs a tool inside ``ctl`` (``--here``).
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from maomao.cli.output import warn
from maomao.errors import MaomaoError
from maomao.model import Member, RunRequest, Tool, utc_iso
from maomao.registry import Registry
from maomao.schedule import slot_id

#: exit status after Ctrl-C, as a shell reports a SIGINT death
INTERRUPTED = 130


def new_run_id(now: datetime) -> str:
    """``20261130T030512Z-123a1b``: the time, its milliseconds, three random hex digits.

    Ids sort as their requests were made (to the millisecond: ``tool logs``
    and ``tool runs`` take the newest by id) and are unique without
    coordination.
    """
    return f"{slot_id(now)}-{now.microsecond // 1000:03d}{secrets.token_hex(2)[:3]}"


def requester() -> str:
    """``user@host`` of whoever runs ``ctl``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def say(line: str) -> None:
    print(line, flush=True)


def no_member(tool: Tool, on: str, members: Sequence[Member]) -> MaomaoError:
    """The one-line failure when no live member may take the run."""
    if not members:
        return MaomaoError(f"no members are running: no one can run tool {tool.name}")
    where = "" if on == "any" else f", on {on}"
    names = ", ".join(m.name for m in members)
    return MaomaoError(f"no live member can run tool {tool.name} (runtime {tool.runtime}{where}); members: {names}")


@dataclass(frozen=True, slots=True)
class Requested:
    """A run request as written: what to follow, from which store revision on."""

    tool: str
    run_id: str
    revision: int


async def write_request(registry: Registry, tool_name: str, on: str) -> Requested:
    """Write a run request for the live members; fail (writing nothing) when none may take it."""
    tool = await registry.tools.get(tool_name)
    members = await registry.members.list()
    for problem in members.unreadable:
        warn(problem)
    if not any(member.eligible(on, tool.runtime) for member in members.records):
        raise no_member(tool, on, members.records)
    now = datetime.now(UTC)
    run_id = new_run_id(now)
    request = RunRequest(name=run_id, tool=tool.name, on=on, created=utc_iso(now), by=requester())
    revision = await registry.store.put(registry.keys.request(run_id), request.to_value(), if_revision=0)
    return Requested(tool.name, run_id, revision)
