"""Fixtures: real services (etcd, Podman, journald) started by the tests themselves, and daemons on them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.support.daemons import Daemons, StoreSpec
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


HARNESSES = pytest.StashKey[list[Daemons]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for harness in item.stash.get(HARNESSES, []):
            report.sections.append((f"daemon stderr ({report.when})", harness.logs()))


@pytest.fixture
def make_daemons(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[StoreSpec], Daemons]]:
    """Build a :class:`Daemons` on a store; every daemon it started is killed at the end."""
    made: list[Daemons] = []
    request.node.stash[HARNESSES] = made

    def make(spec: StoreSpec) -> Daemons:
        harness = Daemons(tmp_path / f"cluster{len(made)}", spec)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()

