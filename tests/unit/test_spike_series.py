"""Reading a tool's metric series out of its data directory: ordering, bad points, declared metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao.model import parse_number
from maomao.spikes.series import MetricSpec, control_series, declared_series, natural_key, tool_series

pytestmark = pytest.mark.timeout(30)


def write(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_natural_order_of_control_files(tmp_path: Path) -> None:
    for n in (10, 9, 1, 100, 2):
        write(tmp_path, f"control-{n}.csv", f"{n}\n")
    series = control_series(tmp_path)
    assert series.labels == ["control-1.csv", "control-2.csv", "control-9.csv", "control-10.csv", "control-100.csv"]
    assert series.values == [1.0, 2.0, 9.0, 10.0, 100.0]
    assert sorted(["control-2026-11-30.csv", "control-2026-2-1.csv"], key=natural_key) == [
        "control-2026-2-1.csv", "control-2026-11-30.csv"
    ]


def test_the_originals_demo_and_its_failure_cases(tmp_path: Path) -> None:
    write(tmp_path, "control-0.csv", "600\n")
    write(tmp_path, "control-1.csv", "630\n")
    write(tmp_path, "control-2.csv", "900.5\n")
    write(tmp_path, "control-3.csv", "")  # empty: the original crashed
    write(tmp_path, "control-4.csv", "not a number\n")
    write(tmp_path, "control-5.csv", "nan\n")
    write(tmp_path, "control-6.csv", "  7e2 \n")
    series = control_series(tmp_path)
    assert series.values == [600.0, 630.0, 900.5, 700.0]
    assert series.labels == ["control-0.csv", "control-1.csv", "control-2.csv", "control-6.csv"]
    assert series.skipped == 3


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0), (" -2.5 ", -2.5), ("1e3", 1000.0), ("", None), ("x", None), ("nan", None), ("-inf", None),
        (None, None),
    ],
)
def test_parse_number(text: str | None, value: float | None) -> None:
    assert parse_number(text) == value


def test_declared_metric_rows_appended_per_run(tmp_path: Path) -> None:
    write(tmp_path, "measurements.csv", "time,mem_available_kib\n2026-11-30T03:00:00Z,10\n2026-11-30T04:00:00Z,\n"
                                        "2026-11-30T05:00:00Z,12.5\n2026-11-30T02:00:00Z,9\n")  # fmt: skip
    series = declared_series(tmp_path, MetricSpec.parse("mem=measurements.csv:mem_available_kib"))
    assert series.name == "mem"
    assert series.values == [9.0, 10.0, 12.5]  # by time, the empty cell skipped
    assert series.labels[0] == "2026-11-30T02:00:00Z" and series.skipped == 1


def test_declared_metric_one_file_per_run_and_default_columns(tmp_path: Path) -> None:
    for n, (stamp, value) in enumerate([("1700000000.5", "3"), ("1700000000.25", "2"), ("1700000100", "4")]):
        write(tmp_path, f"runs/out-{n}.csv", f"timestamp,value,other\n{stamp},{value},x\n")
    series = declared_series(tmp_path, MetricSpec.parse("v=runs/*.csv"))
    assert series.values == [2.0, 3.0, 4.0]  # epoch seconds sort by value (0.25 before 0.5)


def test_declared_metric_without_its_column_or_outside_the_directory(tmp_path: Path) -> None:
    write(tmp_path, "data/a.csv", "time,x\n1,5\n")
    assert declared_series(tmp_path / "data", MetricSpec.parse("m=a.csv:y")).skipped == 1
    write(tmp_path, "secret.csv", "time,x\n1,5\n")
    assert declared_series(tmp_path / "data", MetricSpec.parse("m=../secret.csv")).values == []


def test_tool_series_lists_control_then_declared(tmp_path: Path) -> None:
    assert tool_series(tmp_path, []) == []
    write(tmp_path, "control-1.csv", "5\n")
    write(tmp_path, "m.csv", "time,v\n1,2\n")
    assert [s.name for s in tool_series(tmp_path, ["m=m.csv"])] == ["control", "m"]


def test_symlinks_out_of_the_data_directory_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("42\n")
    data = tmp_path / "data"
    write(data, "control-0.csv", "1\n")
    (data / "control-1.csv").symlink_to(outside)
    (data / "m.csv").symlink_to(outside)
    assert control_series(data).values == [1.0]
    assert declared_series(data, MetricSpec.parse("m=m.csv")).values == []
