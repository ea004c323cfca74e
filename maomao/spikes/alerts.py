"""Spike alerts to journald (its native protocol), or stderr when there is no journal, and to a webhook.

journald: one datagram to ``/run/systemd/journal/socket`` per alert, with
structured fields (``MESSAGE``, ``MESSAGE_ID`` = :data:`MESSAGE_ID`,
``PRIORITY=4``, ``MAOMAO_TOOL``, ``MAOMAO_METRIC``, ``MAOMAO_VALUE``,
``MAOMAO_BASELINE``, ``MAOMAO_SCORE``, ``MAOMAO_RUN_ID`` …), so that
``journalctl MESSAGE_ID=171b59065697463c8d1e5f3e09c0973f`` lists every
alert.  Without that socket the alert is one ``<4>`` line on stderr (which a
service's journal reads as a warning).

The webhook gets a JSON POST per alert, with a timeout and retries; the
daemon sends from a task of its own, so a slow or dead endpoint never holds
a run up.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TextIO

#: the MESSAGE_ID of every spike alert (journalctl MESSAGE_ID=...)
MESSAGE_ID = "171b59065697463c8d1e5f3e09c0973f"
JOURNAL_SOCKET = "/run/systemd/journal/socket"


@dataclass(frozen=True, slots=True)
class Alert:
    """One spike: where, what value against what baseline, how sure."""

    tool: str
    metric: str
    run_id: str
    member: str
    label: str  # the point: its control file, or its time
    value: float
    baseline: float
    deviation: float  # (value - baseline) / |baseline|, or None-like NaN when the baseline is 0
    score: float
    detected: str  # ISO 8601 UTC

    def message(self) -> str:
        change = f"{self.deviation:+.1%}" if self.deviation == self.deviation else "from 0"
        return (
            f"spike in {self.tool} {self.metric}: {self.value:g} against a baseline of {self.baseline:g} "
            f"({change}, score {self.score:.3f}) at {self.label}, run {self.run_id}"
        )

    def fields(self) -> dict[str, str]:
        """The journal entry's fields."""
        return {
            "MESSAGE": self.message(),
            "MESSAGE_ID": MESSAGE_ID,
            "PRIORITY": "4",
            "SYSLOG_IDENTIFIER": "maomao",
            "MAOMAO_TOOL": self.tool,
            "MAOMAO_METRIC": self.metric,
            "MAOMAO_VALUE": f"{self.value:g}",
            "MAOMAO_BASELINE": f"{self.baseline:g}",
            "MAOMAO_DEVIATION": f"{self.deviation:g}",
            "MAOMAO_SCORE": f"{self.score:.6f}",
            "MAOMAO_RUN_ID": self.run_id,
            "MAOMAO_MEMBER": self.member,
            "MAOMAO_POINT": self.label,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def journal_datagram(fields: Mapping[str, str]) -> bytes:
    """The native protocol's encoding: ``KEY=value\\n``, or ``KEY\\n<64-bit LE length>value\\n`` for
    values holding a newline."""
    parts = []
    for key, value in fields.items():
        data = value.encode("utf-8", errors="replace")
        if b"\n" in data:
            parts.append(key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key.encode() + b"=" + data + b"\n")
    return b"".join(parts)


def send_to_journal(alert: Alert, path: str = JOURNAL_SOCKET) -> bool:
    """Send the alert to journald; False when there is no journal to send to."""
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(journal_datagram(alert.fields()), path)
    except OSError:
        return False
    return True


def emit(alert: Alert, journal: str = JOURNAL_SOCKET, stderr: TextIO | None = None) -> str:
    """Journald if it is there, else a ``<4>`` line on stderr; which one it was."""
    if send_to_journal(alert, journal):
        return "journal"
    out = stderr or sys.stderr
    out.write(f"<4>maomao.spikes: {alert.message()}\n")
    out.flush()
    return "stderr"


def post_json(url: str, payload: Mapping[str, Any], timeout: float) -> None:
    """POST ``payload`` as JSON; raises OSError (urllib's errors included) when it did not get a 2xx."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "maomao"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        if not 200 <= answer.status < 300:
            raise urllib.error.HTTPError(url, answer.status, "not a 2xx answer", answer.headers, None)
