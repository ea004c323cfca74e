"""``[git] max_file_size``: sizes with binary units, its environment override, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao.config import check_config, load_config

pytestmark = pytest.mark.timeout(30)


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(f"[maomao]\nmember = lab-1\nimportdir = {tmp_path / 'import'}\n{text}")
    return path


@pytest.mark.parametrize(
    ("text", "size"),
    [("52428800", 50 << 20), ("500k", 500 << 10), ("50m", 50 << 20), ("50MiB", 50 << 20), ("1g", 1 << 30),
     ("2 GB", 2 << 30), ("1t", 1 << 40)],
)  # fmt: skip
def test_sizes(tmp_path: Path, text: str, size: int) -> None:
    config = load_config(config_file(tmp_path, f"[git]\nmax_file_size = {text}\n"), environ={})
    assert config.git.max_file_size == size


def test_default_and_environment(tmp_path: Path) -> None:
    assert load_config(config_file(tmp_path, ""), environ={}).git.max_file_size == 50 << 20
    config = load_config(config_file(tmp_path, "[git]\nmax_file_size = 1g\n"), {"MAOMAO_GIT_MAX_FILE_SIZE": "2m"})
    assert config.git.max_file_size == 2 << 20


@pytest.mark.parametrize("text", ["0", "-1", "1.5m", "lots", "50x", "2t", "m"])
def test_refused_with_one_line_naming_the_key(tmp_path: Path, text: str) -> None:
    config, problems = check_config(config_file(tmp_path, f"[git]\nmax_file_size = {text}\n"), environ={})
    assert config is None and len(problems) == 1, problems
    assert problems[0].startswith(f"[git] max_file_size = {text!r}: must be a size"), problems
