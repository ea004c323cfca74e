"""The daemon's own log lines in a real journald (started by the ``journald`` fixture), read with journalctl."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.daemons import Daemons, StoreSpec, embedded_spec
from tests.support.journald import Journald

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]


@pytest.mark.timeout(60)
def test_the_daemon_logs_structured_entries_to_journald(
    tmp_path: Path, make_daemons: MakeDaemons, journald: Journald
) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    name = f"j-{uuid.uuid4().hex[:8]}"
    # the test harness makes daemons log to stderr; this one logs as under systemd
    daemon = cluster.start(name, env={"MAOMAO_LOG": "journal"})
    assert daemon.process is not None
    (entry,) = journald.entries(
        "SYSLOG_IDENTIFIER=maomao", "LOGGER=maomao.daemon.membership", f"_PID={daemon.process.pid}"
    )
    assert entry["MESSAGE"].startswith(f"registered as member {name}")
    assert entry["PRIORITY"] == "6" and entry["CODE_FUNC"] and entry["CODE_FILE"].endswith("membership.py")
    ready = journald.entries("SYSLOG_IDENTIFIER=maomao", "LOGGER=maomao.daemon", f"_PID={daemon.process.pid}")
    assert any(e["MESSAGE"].startswith(f"ready: {name}: 1 members") for e in ready), ready
    assert "registered as member" not in daemon.stderr()  # the journal had it, not stderr
    assert daemon.stop() == 0
