"""The fault suite's fixtures: a three-node etcd cluster of the test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.etcd import EtcdCluster


@pytest.fixture
def etcd3() -> Iterator[EtcdCluster]:
    """Three etcd members on loopback, started for the test and destroyed after it."""
    cluster = EtcdCluster(3)
    cluster.start()
    yield cluster
    cluster.destroy()
