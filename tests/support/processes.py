"""Ending a service a test started: a signal, a grace, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess


def end_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Send ``sig`` (if it still runs), wait up to ``grace`` seconds, then kill it; reap it either way."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
