"""Fixtures for the daemon tests: daemons on a store, their stderr shown when a test fails."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.support.daemons import Daemons, StoreSpec

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

