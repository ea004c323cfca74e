"""Fixtures: real etcd servers, started by the tests themselves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.etcd import EtcdCluster
from tests.support.journald import Journald
from tests.support.podman import Podman


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdCluster]:
    """One etcd server for the whole session; tests keep apart by key prefix."""
    cluster = EtcdCluster(1)
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def own_etcd() -> Iterator[EtcdCluster]:
    """An etcd server of the test's own, for tests that stop or restart it."""
    cluster = EtcdCluster(1)
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"/test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """One Podman service (Docker Engine API) for the session, in storage of its own; removed at the end."""
    service = Podman()
    try:
        service.start()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def journald() -> Iterator[Journald]:
    """The machine's journald: the one running, or one started for the session (and stopped after)."""
    service = Journald()
    try:
        service.start()
        yield service
    finally:
        service.stop()
