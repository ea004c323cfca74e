"""systemd's notify protocol (sd_notify), spoken directly over its datagram socket.

``Notifier.from_environment()`` reads ``NOTIFY_SOCKET`` (a path, or an
abstract socket when it starts with ``@``) and ``WATCHDOG_USEC``, and removes
both from ``os.environ`` so that the tools the daemon starts do not inherit
them.  Without ``NOTIFY_SOCKET`` every call is a no-op, so the daemon runs
the same outside systemd.  Messages never block and never raise: health
reporting must not take the daemon down.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends ``READY=1``, ``STATUS=…``, ``WATCHDOG=1``, ``STOPPING=1``, ``RELOADING=1``."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self.last_status = ""
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None)
        usec_text = env.pop("WATCHDOG_USEC", None)
        pid_text = env.pop("WATCHDOG_PID", None)
        usec: int | None = None
        # WATCHDOG_PID, when set, names the process the watchdog is for
        if usec_text and usec_text.isdigit() and int(usec_text) > 0 and pid_text in (None, str(os.getpid())):
            usec = int(usec_text)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the timeout), or None."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; False when it could not be sent."""
        if self._socket is None or self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._socket.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.debug("sd_notify %s: %s", fields, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        line = " ".join(text.split())
        if line != self.last_status:
            self.last_status = line
            self.send(f"STATUS={line}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
