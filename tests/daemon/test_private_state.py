"""The daemon's state directory (outbox, detection state) is private to its user, whatever the umask."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable

import pytest

from tests.support.daemons import Daemons, StoreSpec, etcd_spec, wait_for
from tests.support.etcd import EtcdCluster

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]


@pytest.mark.timeout(60)
def test_state_directory_is_0700_under_umask_022(etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(etcd_spec(etcd.endpoints, prefix))
    daemon = cluster.make("alpha")
    daemon.state_dir.mkdir(mode=0o755)  # as an operator's mkdir left it
    old = os.umask(0o022)
    try:
        cluster.launch(daemon).wait_ready()
    finally:
        os.umask(old)
    assert stat.S_IMODE(daemon.state_dir.stat().st_mode) == 0o700
    cluster.records.add_tool("quick", "sh -c 'echo 1 > control-1.csv'")
    run_id = f"now-{uuid.uuid4().hex[:8]}"
    cluster.records.request(run_id, "quick")
    wait_for("the run record", lambda: cluster.records.runs("quick"), timeout=20)
    # what the run left there is behind the 0700 directory, and stays so
    assert any(daemon.state_dir.iterdir())
    assert stat.S_IMODE(daemon.state_dir.stat().st_mode) == 0o700
    assert daemon.stop() == 0
