"""A real journald for tests: ``/lib/systemd/systemd-journald`` started by hand, read with ``journalctl``.

journald's paths are fixed (``/run/systemd/journal/socket``), so there is
one per machine: :meth:`Journald.start` uses the one that answers, or
starts it (removing a stale socket first) and :meth:`Journald.stop` ends
only one it started.  Entries are told apart by their fields (a run id, a
tool name unique to the test).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.processes import end_process

JOURNALD = Path("/lib/systemd/systemd-journald")
SOCKET = Path("/run/systemd/journal/socket")


def answers(path: Path = SOCKET) -> bool:
    """Whether a journald reads datagrams on ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"MESSAGE=maomao test: is journald there?\nPRIORITY=7\n", str(path))
    except OSError:
        return False
    return True


class Journald:
    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        if answers():
            return
        if not JOURNALD.exists():
            raise RuntimeError(f"{JOURNALD} is missing: install Debian's systemd package")
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(SOCKET.parent)
        self.process = subprocess.Popen(
            [str(JOURNALD)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-journald exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"systemd-journald did not answer within {timeout:g}s")
            time.sleep(0.05)

    def entries(self, *matches: str, timeout: float = 10.0, count: int = 1) -> list[dict[str, Any]]:
        """``journalctl MATCHES -o json`` once it lists at least ``count`` entries (journald writes lazily)."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                ["journalctl", "--no-pager", "-o", "json", *matches], capture_output=True, text=True, check=False
            )
            found = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            end_process(self.process)
        self.process = None
