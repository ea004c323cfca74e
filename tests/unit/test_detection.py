"""Spike detection after runs, without services: which points are new, per-metric settings, the entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao.config import load_config
from maomao.daemon.detection import Detection, detector_params
from maomao.errors import ValidationError
from tests.support.tools import make_tool

pytestmark = pytest.mark.timeout(30)



def detection(tmp_path: Path, **env: str) -> Detection:
    environ = {"MAOMAO_DAEMON_STATE_DIR": str(tmp_path / "state"), **env}
    return Detection(load_config(environ=environ), None, None)


def write_controls(directory: Path, values: list[float], start: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n, value in enumerate(values, start):
        (directory / f"control-{n}.csv").write_text(f"{value:g}\n")


def test_only_points_not_seen_before_can_alert(tmp_path: Path) -> None:
    data = tmp_path / "data"
    found = detection(tmp_path)
    tool = make_tool()
    # first look: a history with a spike early on; only the newest point counts
    history = [100.0 + (7 * n) % 11 - 5 for n in range(400)]
    history[5] = 500.0
    write_controls(data, history)
    entries, alerts = found.score(tool, "r1", "m", data)
    assert alerts == [] and entries[0]["new_points"] == 1 and entries[0]["spike"] is False
    assert entries[0]["point"] == "control-399.csv" and entries[0]["points"] == 400
    # the next run adds a spike: it alerts, once
    write_controls(data, [700.0], start=400)
    entries, alerts = found.score(tool, "r2", "m", data)
    (alert,) = alerts
    assert (alert.label, alert.value, alert.run_id, alert.metric) == ("control-400.csv", 700.0, "r2", "control")
    assert entries[0]["spike"] is True and entries[0]["new_points"] == 1
    assert 95 < alert.baseline < 115 and entries[0]["value"] == 700.0
    # nothing new: nothing alerts again
    entries, alerts = found.score(tool, "r3", "m", data)
    assert alerts == [] and entries[0]["new_points"] == 0


def test_a_series_with_no_points_is_reported_not_fatal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "control-0.csv").write_text("")
    entries, alerts = detection(tmp_path).score(make_tool(metrics=("m=missing.csv",)), "r1", "m", data)
    assert alerts == []
    assert entries == [
        {"metric": "control", "points": 0, "skipped": 1, "spike": False},
        {"metric": "m", "points": 0, "skipped": 0, "spike": False},
    ]


def test_settings_from_config_then_tool_then_metric(tmp_path: Path) -> None:
    config = load_config(environ={"MAOMAO_SPIKES_THRESHOLD": "0.7", "MAOMAO_SPIKES_SHORT_PERCENT": "10"})
    tool = make_tool(spikes={"cooldown": 5, "threshold": 0.6, "mem.threshold": 0.9, "mem.short_percent": 50})
    general = detector_params(config, tool.spikes, "control")
    assert (general.threshold, general.cooldown, general.short_threshold) == (0.6, 5, 0.10)
    mem = detector_params(config, tool.spikes, "mem")
    assert (mem.threshold, mem.cooldown, mem.short_threshold) == (0.9, 5, 0.5)
    assert detector_params(load_config(environ={})).short_threshold == 0.2


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"colour": 1}, ["colour", "threshold, cooldown"]),
        ({"threshold": 1.5}, ["threshold", "at most 1"]),
        ({"threshold": 0}, ["threshold", "above 0"]),
        ({"cooldown": 2.5}, ["cooldown", "whole number"]),
        ({"m/x.cooldown": 2}, ["m/x.cooldown"]),
        ({"min_history": 1}, ["min_history", "from 2"]),
        ({"threshold": True}, ["threshold"]),
    ],
)
def test_bad_spike_settings(settings: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        make_tool(spikes=settings)
    for word in words:
        assert word in str(caught.value)


async def test_points_another_member_looked_at_are_not_new_here(tmp_path: Path) -> None:
    from maomao.model import Run
    from maomao.store.embedded import EmbeddedStore
    from maomao.store.keys import Keys

    store = EmbeddedStore(tmp_path / "store.db")
    keys = Keys("/maomao/")
    config = load_config(environ={"MAOMAO_DAEMON_STATE_DIR": str(tmp_path / "state")})
    found = Detection(config, store, keys)
    try:
        data = tmp_path / "data"
        history = [100.0 + (7 * n) % 11 - 5 for n in range(402)]
        history[400] = 500.0  # a spike that member b's run found and reported
        write_controls(data, history)
        found._save("t", {"control": "control-399.csv"})  # this member last looked before it
        seen_by_b = Run(
            id="20261130T030000Z-b", tool="t", slot="s", trigger="schedule", member="b", state="succeeded",
            detection=({"metric": "control", "point": "control-401.csv", "spike": False},),
        )
        await store.put(keys.run("t", seen_by_b.id), seen_by_b.to_value())
        write_controls(data, [101.0], start=402)
        (entry,) = await found.after_run(make_tool(), "20261130T040000Z-a", "a", data)
        assert entry["new_points"] == 1 and entry["spike"] is False and found.alerts == 0
    finally:
        await store.aclose()
