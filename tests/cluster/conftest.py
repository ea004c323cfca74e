"""The fault suite's fixtures: a three-node etcd cluster of the test's own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd import EtcdCluster

SHM = Path("/dev/shm")


@pytest.fixture
def etcd3() -> Iterator[EtcdCluster]:
    """Three etcd members on loopback, started for the test and destroyed after it.

    Their data directories are on tmpfs (/dev/shm): three members' fsyncs on
    this shared VM's one disk would measure the disk, not maomao.
    """
    cluster = EtcdCluster(3, root=Path(tempfile.mkdtemp(prefix="maomao-etcd-", dir=SHM if SHM.is_dir() else None)))
    cluster.start()
    yield cluster
    cluster.destroy()
