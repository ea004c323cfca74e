"""``maomao daemon --validate-config``: every problem of a config, through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao.config import check_config, load_config
from maomao.errors import ConfigError
from tests.support.cli import MAOMAO, clean_env, run

BAD = """\
[store]
ttl = 1
timeout = abc
[daemon]
max_parallel = 0
"""


def validate(tmp_path: Path, *args: str | Path, extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = run([MAOMAO, "daemon", "--validate-config", *args], env=clean_env(tmp_path, extra), cwd=tmp_path)
    return result.returncode, result.stdout, result.stderr


def test_every_bad_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.ini"
    config.write_text(BAD)
    code, out, err = validate(tmp_path, "--config", config)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "error: [store] ttl = '1': must be a whole number from 2 to 3600",
        "error: [store] timeout = 'abc': must be a number of seconds greater than 0 and below 86400, e.g. 5 or 0.5",
        "error: [daemon] max_parallel = '0': must be a whole number from 1 to 1024",
    ]


def test_unknown_sections_keys_and_environment_are_listed_too(tmp_path: Path) -> None:
    config = tmp_path / "bad.ini"
    config.write_text(BAD + "bogus = 1\n[nosuch]\nx = 1\n[metrics]\nlisten = nowhere\n")
    code, _, err = validate(tmp_path, "--config", config, extra={"MAOMAO_STORE_NOPE": "1"})
    lines = err.splitlines()
    assert code == 2 and len(lines) == 7, err
    assert all(line.startswith("error: ") for line in lines)
    assert any("[daemon] bogus: unknown key" in line for line in lines)
    assert any("[nosuch]: unknown section" in line for line in lines)
    assert any("[metrics] listen = 'nowhere'" in line for line in lines)
    assert any(line.startswith("error: MAOMAO_STORE_NOPE: [store] has no key 'nope'") for line in lines)


def test_a_good_file_is_summed_up(tmp_path: Path) -> None:
    config = tmp_path / "good.ini"
    config.write_text(f"[maomao]\nmember = lab-1\n[store]\nbackend = embedded\npath = {tmp_path}/s.db\n")
    code, out, err = validate(tmp_path, "--config", config)
    assert (code, err) == (0, "")
    assert out == f"config OK: {config}, store embedded {tmp_path}/s.db, member lab-1\n"
    assert not (tmp_path / "s.db").exists()  # nothing started, nothing opened
    etcd = tmp_path / "etcd.ini"
    etcd.write_text("[ETCD]\nhost = 10.0.0.1\nport = 2379\n[maomao]\nmember = m2\n")
    code, out, _ = validate(tmp_path, "--config", etcd)
    assert code == 0 and out == f"config OK: {etcd}, store etcd http://10.0.0.1:2379, member m2\n"


def test_defaults_and_a_missing_file(tmp_path: Path) -> None:
    code, out, _ = validate(tmp_path)
    assert code == 0 and out.startswith("config OK: defaults, store embedded ")
    code, out, err = validate(tmp_path, "--config", tmp_path / "missing.ini")
    assert (code, out) == (2, "") and err == f"error: config file {tmp_path}/missing.ini does not exist\n"
    broken = tmp_path / "broken.ini"
    broken.write_text("key = value\n")
    code, _, err = validate(tmp_path, "--config", broken)
    assert code == 2 and err.count("\n") == 1 and "comes before any [section]" in err


def test_load_config_still_stops_at_the_first_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.ini"
    config.write_text(BAD)
    with pytest.raises(ConfigError, match=r"^\[store\] ttl = '1': must be a whole number from 2 to 3600$"):
        load_config(config, environ={})
    loaded, problems = check_config(config, environ={})
    assert loaded is None and len(problems) == 3
    good = tmp_path / "good.ini"
    good.write_text("[maomao]\nmember = m\n")
    loaded, problems = check_config(good, environ={})
    assert problems == [] and loaded is not None and loaded.member == "m"
    assert loaded == load_config(good, environ={})


def test_cert_without_key(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    config = tmp_path / "tls.ini"
    config.write_text(f"[store]\ncert = {cert}\n")
    code, _, err = validate(tmp_path, "--config", config)
    assert code == 2
    assert err == "error: [store] cert and key: give both (the client certificate and its key) or neither\n"
