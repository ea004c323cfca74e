"""Spike series out of a data directory a tool filled with garbage: nothing outside it is read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from maomao.spikes.series import MetricSpec, control_series, declared_series, tool_series

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    """(data directory, a directory outside it holding series files a symlink may point at)."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    (outside / "deep").mkdir(parents=True)
    (outside / "control-7.csv").write_text("777777\n")
    (outside / "m.csv").write_text("time,v\n1,666666\n")
    (outside / "deep" / "m.csv").write_text("time,v\n2,555555\n")
    return data, outside


def test_symlinked_directories_are_not_followed_by_double_star(place: tuple[Path, Path]) -> None:
    data, outside = place
    (data / "in").mkdir()
    (data / "in" / "m.csv").write_text("time,v\n3,1\n")
    (data / "out").symlink_to(outside)  # absolute
    (data / "in" / "up").symlink_to(Path("..") / ".." / "outside")  # relative ../..
    (data / "root").symlink_to("/")
    (data / "loop").symlink_to(".")
    series = declared_series(data, MetricSpec.parse("m=**/m.csv:v"))
    assert series.values == [1.0] and series.labels == ["3"]
    assert declared_series(data, MetricSpec.parse("m=out/m.csv:v")).values == []
    assert declared_series(data, MetricSpec.parse("m=out/**/m.csv:v")).values == []


def test_control_files_that_are_links_fifos_or_odd_names_are_not_read(place: tuple[Path, Path]) -> None:
    data, outside = place
    (data / "control-1.csv").write_text("1\n")
    (data / "control-2.csv").symlink_to(outside / "control-7.csv")
    (data / "control-3.csv").symlink_to(Path("..") / "outside" / "control-7.csv")
    os.mkfifo(data / "control-4.csv")  # opening it for reading would block
    (data / "control-5\n.csv").write_text("5\n")
    (data / os.fsdecode(b"control-6\xff.csv")).write_text("6\n")
    (data / "control-8.csv").write_bytes(b"\x00\xff\xfe binary \x00\n")
    (data / "control-9.csv").mkdir()
    began = time.monotonic()
    series = control_series(data)
    assert time.monotonic() - began < 5
    assert series.values == [1.0] and series.labels == ["control-1.csv"]
    assert series.skipped == 1  # the binary one: read, not a number


def test_patterns_out_of_the_data_directory_match_nothing(place: tuple[Path, Path]) -> None:
    data, outside = place
    for pattern in (f"{outside}/m.csv", "../outside/m.csv", "../**/m.csv", "/**/m.csv", "in/../../outside/m.csv"):
        assert declared_series(data, MetricSpec.parse(f"m={pattern}:v")).values == [], pattern


def test_a_git_directory_is_not_entered(place: tuple[Path, Path]) -> None:
    data, _ = place
    for where in (data / ".git", data / "sub" / ".git"):
        where.mkdir(parents=True)
        (where / "m.csv").write_text("time,v\n9,9\n")
        (where / "control-1.csv").write_text("9\n")
    assert declared_series(data, MetricSpec.parse("m=**/m.csv:v")).values == []
    assert tool_series(data, ["m=**/*.csv:v"]) == [declared_series(data, MetricSpec.parse("m=**/*.csv:v"))]
    assert tool_series(data, ["m=**/*.csv:v"])[0].values == []


def test_a_data_directory_that_is_a_symlink_is_not_read(place: tuple[Path, Path]) -> None:
    data, outside = place
    link = data.parent / "linked"
    link.symlink_to(outside)
    assert control_series(link).values == []
    assert declared_series(link, MetricSpec.parse("m=m.csv:v")).values == []


def test_thousands_of_control_files_are_read_quickly(tmp_path: Path) -> None:
    for n in range(5000):
        (tmp_path / f"control-{n}.csv").write_text(f"{n % 7}\n")
    began = time.monotonic()
    series = control_series(tmp_path)
    assert len(series.values) == 5000 and series.labels[-1] == "control-4999.csv"
    assert time.monotonic() - began < 5
