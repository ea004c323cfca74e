"""The sd_notify client against a real datagram socket (path and abstract)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from maomao.daemon.notify import Notifier


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(2)
    return sock


@pytest.mark.parametrize("abstract", [False, True])
def test_messages_arrive(tmp_path: Path, abstract: bool) -> None:
    address = f"@maomao-test-{os.getpid()}" if abstract else str(tmp_path / "notify.sock")
    sock = receiver(address)
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000", "OTHER": "kept"}
    notifier = Notifier.from_environment(env)
    assert env == {"OTHER": "kept"}  # children will not inherit the socket
    assert notifier.watchdog_interval == 1.0
    notifier.ready("all good")
    assert sock.recv(4096) == b"READY=1\nSTATUS=all good"
    notifier.status("a   b\nc")
    notifier.status("a b c")  # unchanged: not sent again
    notifier.watchdog()
    assert sock.recv(4096) == b"STATUS=a b c"
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.reloading()
    assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()
    sock.close()


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.send("READY=1") is False


def test_watchdog_for_another_pid_is_ignored() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval is None
