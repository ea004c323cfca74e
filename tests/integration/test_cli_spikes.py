"""``maomao ctl spikes get`` and the offline ``maomao spikes score|plot``, through the real entry points."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from maomao.model import Spike
from tests.support.cli import MAOMAO, Ctl, clean_env, embedded_ctl, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def ctl(tmp_path: Path) -> Ctl:
    return embedded_ctl(tmp_path)


def spike(tool: str, run_id: str, detected: str, value: float = 400.0) -> Spike:
    return Spike(
        name=f"{run_id}.control", tool=tool, metric="control", run_id=run_id, member="lab-1",
        point="control-41.csv", value=value, baseline=100.0, deviation=(value - 100) / 100, score=0.99,
        detected=detected,
    )  # fmt: skip


def test_spikes_get_lists_newest_first_within_since(ctl: Ctl) -> None:
    ctl("tool", "add", "tl", "Ada", "busybox", "/srv/d", "/srv/c", "pages").ok()
    ctl("tool", "add", "other", "Ada", "busybox", "/srv/d", "/srv/c", "pages").ok()
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    iso = lambda d: d.isoformat().replace("+00:00", "Z")  # noqa: E731
    for tool, run_id, age, value in [("tl", "r1", 1, 300.0), ("tl", "r2", 0, 400.0), ("other", "r3", 30, 500.0)]:
        record = spike(tool, run_id, iso(now - timedelta(days=age, minutes=1)), value)
        ctl.put_raw(f"/maomao/spikes/{tool}/{record.name}", record.to_value())
    listed = ctl("spikes", "get", "--json").json()
    assert [s["run_id"] for s in listed] == ["r2", "r1"]  # r3 is older than the default 7d
    assert [s["run_id"] for s in ctl("spikes", "get", "--since", "60d", "--json").json()] == ["r2", "r1", "r3"]
    assert [s["run_id"] for s in ctl("spikes", "get", "other", "--since", "60d", "--json").json()] == ["r3"]
    rows = ctl("spikes", "get", "tl").ok().stdout.splitlines()
    assert rows[0].split() == ["DETECTED", "TOOL", "METRIC", "VALUE", "BASELINE", "CHANGE", "SCORE", "POINT", "RUN"]
    assert "400" in rows[1] and "+300.0%" in rows[1] and "r2" in rows[1]
    assert ctl("spikes", "get", "other").ok().stdout.startswith("no spikes in the last 7d for tool other")
    assert "--since" in ctl("spikes", "get", "--since", "soon").error(2)
    assert "nosuch" in ctl("spikes", "get", "nosuch").error(2)
    assert "../x" in ctl("spikes", "get", "../x").error(2)


def write_series(path: Path, values: list[str]) -> None:
    path.write_text("timestamp,value\n" + "".join(f"2026-11-30 00:{i // 60:02d}:{i % 60:02d},{v}\n"
                                                  for i, v in enumerate(values)))  # fmt: skip


def test_spikes_score_writes_one_row_per_input_row(tmp_path: Path) -> None:
    values = [str(100 + (7 * n) % 11 - 5) for n in range(300)]
    values[200] = "900"
    values[50] = "oops"
    source = tmp_path / "in.csv"
    write_series(source, values)
    out = tmp_path / "out.csv"
    done = run([MAOMAO, "spikes", "score", str(source), "-o", str(out)], env=clean_env(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done
    assert done.stderr == "1 rows had no number and were not scored\n"
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "spike"]
    assert len(rows) == 300 and rows[0]["timestamp"] == "2026-11-30 00:00:00"
    assert rows[50]["value"] == "" and rows[50]["spike"] == "0"
    assert all(0 <= float(r["anomaly_score"]) <= 1 and r["spike"] in ("0", "1") for r in rows)
    assert rows[200]["spike"] == "1" and float(rows[200]["anomaly_score"]) > 0.5 and rows[200]["value"] == "900"
    # to stdout by default, the same rows
    same = run([MAOMAO, "spikes", "score", str(source)], env=clean_env(tmp_path), cwd=tmp_path)
    assert same.stdout == out.read_text()
    # bad input: one line, exit 2
    for argv, named in [
        (["spikes", "score", str(tmp_path / "missing.csv")], "missing.csv"),
        (["spikes", "score", str(source), "--value-column", "nope"], "nope"),
    ]:
        bad = run([MAOMAO, *argv], env=clean_env(tmp_path), cwd=tmp_path)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and named in bad.stderr, bad


def test_spikes_plot_draws_a_png_or_says_what_is_missing(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    write_series(source, [str(10 + math.sin(n / 5)) for n in range(200)] + ["40"] + ["10"] * 20)
    png = tmp_path / "plot.png"
    drawn = run([MAOMAO, "spikes", "plot", str(source), "-o", str(png)], env=clean_env(tmp_path), cwd=tmp_path)
    assert drawn.returncode == 0, drawn
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "221 points" in drawn.stdout
    # without matplotlib (a shadowing package that fails to import): one clear line, exit 1
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = clean_env(tmp_path, {"PYTHONPATH": str(shadow.parent)})
    missing = run([MAOMAO, "spikes", "plot", str(source), "-o", str(tmp_path / "x.png")], env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "maomao[plot]" in missing.stderr and missing.stderr.count("\n") == 1, missing
