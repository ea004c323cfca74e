"""Recording a finished run: the claim's create_revision fences it (embedded store, no services)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from maomao.daemon.recording import PendingRecord, write_record
from maomao.model import Run
from maomao.store import Compare, Put
from maomao.store.embedded import EmbeddedStore
from maomao.store.keys import Keys

pytestmark = pytest.mark.timeout(30)

KEYS = Keys("/maomao/")
RUN_ID = "20261130T080259Z"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    backend = EmbeddedStore(tmp_path / "store.db")
    try:
        yield backend
    finally:
        await backend.aclose()


async def claim(store: EmbeddedStore, member: str) -> int:
    """Claim the slot as the scheduler does; the claim's create_revision."""
    key = KEYS.claim("tick", RUN_ID)
    result = await store.txn([Compare(key, "create", "=", 0)], [Put(key, f'{{"member": "{member}"}}'.encode())])
    assert result.succeeded
    return result.revision


def pending(fence: int, member: str = "alpha") -> PendingRecord:
    run = Run(id=RUN_ID, tool="tick", slot="2026-11-30T08:02:59Z", trigger="schedule", member=member, state="succeeded")
    return PendingRecord(run, KEYS.run("tick", RUN_ID), KEYS.claim("tick", RUN_ID), fence)


async def test_the_owner_records_after_changing_its_own_claim(store: EmbeddedStore) -> None:
    # marking the claim running moves its mod_revision; the answer to that write may
    # have been lost with the store, so the member still holds the first revision
    fence = await claim(store, "alpha")
    await store.put(KEYS.claim("tick", RUN_ID), b'{"member": "alpha", "state": "running"}')
    assert await write_record(store, pending(fence)) == "recorded"
    assert await store.get(KEYS.claim("tick", RUN_ID)) is None
    recorded = await store.get(KEYS.run("tick", RUN_ID))
    assert recorded is not None and Run.from_value(recorded.value).member == "alpha"


async def test_a_claim_taken_over_fences_the_member_that_lost_it(store: EmbeddedStore) -> None:
    fence = await claim(store, "alpha")
    await store.delete(KEYS.claim("tick", RUN_ID))  # alpha's lease expired
    await claim(store, "beta")
    assert await write_record(store, pending(fence)) == "fenced"
    assert await store.get(KEYS.run("tick", RUN_ID)) is None
    held = await store.get(KEYS.claim("tick", RUN_ID))
    assert held is not None and b"beta" in held.value


async def test_a_claim_taken_again_by_the_same_member_still_fences_the_old_run(store: EmbeddedStore) -> None:
    fence = await claim(store, "alpha")
    await store.delete(KEYS.claim("tick", RUN_ID))
    await claim(store, "alpha")  # registered again under a new lease and claimed the slot anew
    assert await write_record(store, pending(fence)) == "fenced"


async def test_a_claim_that_expired_with_nobody_taking_over_is_recorded(store: EmbeddedStore) -> None:
    fence = await claim(store, "alpha")
    await store.delete(KEYS.claim("tick", RUN_ID))  # an outage longer than the ttl
    assert await write_record(store, pending(fence)) == "recorded"


async def test_a_run_recorded_by_another_member_is_not_overwritten(store: EmbeddedStore) -> None:
    fence = await claim(store, "alpha")
    await store.delete(KEYS.claim("tick", RUN_ID))
    other = Run(id=RUN_ID, tool="tick", slot="s", trigger="schedule", member="beta", state="succeeded")
    await store.put(KEYS.run("tick", RUN_ID), other.to_value())
    assert await write_record(store, pending(fence)) == "fenced"
    recorded = await store.get(KEYS.run("tick", RUN_ID))
    assert recorded is not None and Run.from_value(recorded.value).member == "beta"
