"""Configuration: where it is found, its defaults, overrides, legacy keys and errors."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from maomao import config as config_module
from maomao.config import SEARCH_PATH, default_member, find_config, load_config, state_dir
from maomao.errors import ConfigError, UsageError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty world: a home, a working directory, a state dir, no MAOMAO_* variables."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    for name in list(os.environ):
        if name.startswith("MAOMAO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(work)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> config_module.Config:
    return load_config(write(tmp_path / "config.ini", text), environ=environ or {})


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, environ)
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.exit_code == 2
    return message


# -- where the file is found ----------------------------------------------------------------


def test_search_order(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = write(place / "flag.ini", "[store]\nttl = 11\n")
    env = write(place / "env.ini", "[store]\nttl = 12\n")
    cwd = write(place / "work" / "config.ini", "[store]\nttl = 13\n")
    home = write(place / "home" / ".config" / "maomao" / "config.ini", "[store]\nttl = 14\n")
    monkeypatch.setenv("MAOMAO_CONFIG", str(env))

    assert find_config(flag) == flag
    assert load_config(flag).store.ttl == 11
    assert find_config() == env
    assert load_config().store.ttl == 12
    monkeypatch.delenv("MAOMAO_CONFIG")
    assert find_config() == Path("config.ini")
    assert load_config().store.ttl == 13
    assert load_config().source is not None and load_config().source.resolve() == cwd  # type: ignore[union-attr]
    cwd.unlink()
    assert find_config() == home
    assert load_config().store.ttl == 14
    home.unlink()
    # the last place is system-wide; nothing is written there by tests
    assert (
        Path("config.ini"),
        Path("~/.config/maomao/config.ini"),
        Path("/etc/maomao/config.ini"),
    ) == SEARCH_PATH
    if not Path("/etc/maomao/config.ini").exists():
        assert find_config() is None
        assert load_config().source is None


def test_explicit_and_env_files_must_exist(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(place / "work" / "config.ini", "[store]\nttl = 13\n")
    with pytest.raises(ConfigError, match=r"missing\.ini does not exist"):
        find_config(place / "missing.ini")
    monkeypatch.setenv("MAOMAO_CONFIG", str(place / "gone.ini"))
    with pytest.raises(ConfigError, match=r"MAOMAO_CONFIG names .*gone\.ini"):
        load_config()
    # a directory is not a config file
    with pytest.raises(ConfigError):
        find_config(place)


def test_defaults_without_a_file(place: Path) -> None:
    config = load_config(environ={})
    assert config.source is None
    assert config.store.backend == "embedded"
    assert config.store.path == place / "state" / "maomao" / "store.db"
    assert config.importdir == place / "state" / "maomao" / "data"
    assert config.store.endpoints == ("http://127.0.0.1:2379",)
    assert config.store.prefix == "/maomao/"
    assert (config.store.ttl, config.store.timeout) == (10, 5.0)
    assert (config.store.ca_cert, config.store.cert, config.store.key) == (None, None, None)
    assert config.member == default_member()
    assert default_member() and not default_member().startswith((".", "-"))


def test_state_dir(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert state_dir() == place / "state" / "maomao"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_dir() == place / "home" / ".local" / "state" / "maomao"
    monkeypatch.setenv("STATE_DIRECTORY", f"{place}/systemd:{place}/other")
    assert state_dir() == place / "systemd"
    assert load_config(environ={}).store.path == place / "systemd" / "store.db"


def test_records_are_frozen(place: Path) -> None:
    config = load_config(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.store.ttl = 3  # type: ignore[misc]


# -- values ---------------------------------------------------------------------------------


def test_full_file(place: Path) -> None:
    write(place / "ca.pem", "x")
    write(place / "client.pem", "x")
    write(place / "client.key", "x")
    config = load_text(
        place,
        "[maomao]\nimportdir = data\nmember = lab-1\n\n"
        "[store]\nbackend = etcd\npath = db/store.db\n"
        "endpoints = https://10.0.0.1:2379/, https://[fd00::2]:2379 ,http://etcd-3\n"
        "prefix = /collab\nca_cert = ca.pem\ncert = client.pem\nkey = client.key\n"
        "ttl = 30\ntimeout = 2.5\n",
    )
    assert config.source == place / "config.ini"
    assert config.importdir == place / "data"  # relative to the file's directory
    assert config.member == "lab-1"
    store = config.store
    assert store.backend == "etcd"
    assert store.path == place / "db" / "store.db"
    assert store.endpoints == ("https://10.0.0.1:2379", "https://[fd00::2]:2379", "http://etcd-3")
    assert store.prefix == "/collab/"
    assert (store.ca_cert, store.cert, store.key) == (
        str(place / "ca.pem"),
        str(place / "client.pem"),
        str(place / "client.key"),
    )
    assert (store.ttl, store.timeout) == (30, 2.5)


def test_endpoints_alone_select_etcd(place: Path) -> None:
    assert load_text(place, "[store]\nendpoints = http://h:1\n").store.backend == "etcd"
    assert load_text(place, "[store]\nttl = 5\n").store.backend == "embedded"
    assert load_text(place, "[store]\nbackend = embedded\nendpoints = http://h:1\n").store.backend == "embedded"


def test_environment_overrides(place: Path) -> None:
    config = load_text(
        place,
        "[store]\nttl = 5\nbackend = embedded\n",
        {
            "MAOMAO_STORE_TTL": "42",
            "MAOMAO_STORE_BACKEND": "etcd",
            "MAOMAO_STORE_ENDPOINTS": "http://a:1,http://b:2",
            "MAOMAO_STORE_PREFIX": "/p",
            "MAOMAO_MAOMAO_MEMBER": "m1",
            "MAOMAO_MAOMAO_IMPORTDIR": "/srv/import",
            # not configuration keys: left alone
            "MAOMAO_CONFIG": "/nowhere",
            "MAOMAO_DEBUG": "1",
            "OTHER_STORE_TTL": "x",
        },
    )
    assert config.store.ttl == 42
    assert config.store.backend == "etcd"
    assert config.store.endpoints == ("http://a:1", "http://b:2")
    assert config.store.prefix == "/p/"
    assert config.member == "m1"
    assert config.importdir == Path("/srv/import")


def test_environment_alone(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAOMAO_STORE_TTL", "7")
    monkeypatch.setenv("MAOMAO_STORE_PATH", str(place / "elsewhere.db"))
    config = load_config()
    assert config.source is None
    assert config.store.ttl == 7
    assert config.store.path == place / "elsewhere.db"


def test_legacy_file(place: Path) -> None:
    config = load_text(
        place,
        "[WORKING_ENVIRONMENT]\nimportdir = /home/me/maomao-data\n\n"
        "[ETCD]\nhost = 10.1.2.3\nport = 4001\n\n"
        "[DATA_REPOS]\nanything = goes\n",
    )
    assert config.importdir == Path("/home/me/maomao-data")
    assert config.store.backend == "etcd"
    assert config.store.endpoints == ("http://10.1.2.3:4001",)
    assert config.store.prefix == "/maomao/"


def test_legacy_defaults_and_new_keys_win(place: Path) -> None:
    assert load_text(place, "[ETCD]\n").store.endpoints == ("http://127.0.0.1:2379",)
    assert load_text(place, "[ETCD]\nhost = ::1\nport = 2379\n").store.endpoints == ("http://[::1]:2379",)
    config = load_text(place, "[ETCD]\nhost = old\nport = 1\n[store]\nendpoints = http://new:2\n")
    assert config.store.endpoints == ("http://new:2",)
    config = load_text(place, "[ETCD]\nhost = old\nport = 1\n", {"MAOMAO_STORE_BACKEND": "embedded"})
    assert config.store.backend == "embedded"
    config = load_text(place, "[WORKING_ENVIRONMENT]\nimportdir = /a\n[maomao]\nimportdir = /b\n")
    assert config.importdir == Path("/b")


# -- errors: one line naming section, key and what is allowed ---------------------------------

ERRORS = [
    ("[store]\nbackend = zookeeper\n", ["[store] backend", "zookeeper", "embedded, etcd"]),
    ("[store]\nbackend =\n", ["[store] backend", "embedded, etcd"]),
    ("[store]\nttl = 0\n", ["[store] ttl", "2 to 3600"]),
    ("[store]\nttl = 1\n", ["[store] ttl", "2 to 3600"]),
    ("[store]\nttl = 3601\n", ["[store] ttl", "2 to 3600"]),
    ("[store]\nttl = ten\n", ["[store] ttl", "'ten'", "whole number"]),
    ("[store]\nttl = 1_0\n", ["[store] ttl", "whole number"]),
    ("[store]\nttl = 2.5\n", ["[store] ttl", "whole number"]),
    ("[store]\nttl = \u0663\u0663\n", ["[store] ttl", "whole number"]),
    ("[store]\ntimeout = 0\n", ["[store] timeout", "seconds"]),
    ("[store]\ntimeout = nan\n", ["[store] timeout", "seconds"]),
    ("[store]\ntimeout = inf\n", ["[store] timeout", "seconds"]),
    ("[store]\ntimeout = 86400\n", ["[store] timeout", "86400"]),
    ("[store]\nendpoints = ftp://h:1\n", ["[store] endpoints", "http:// or https://"]),
    ("[store]\nendpoints = h:2379\n", ["[store] endpoints", "http:// or https://"]),
    ("[store]\nendpoints = http://:2379\n", ["[store] endpoints", "http://"]),
    ("[store]\nendpoints = http://h:2379/v3\n", ["[store] endpoints", "host and port"]),
    ("[store]\nendpoints = http://h:2379?x=1\n", ["[store] endpoints", "host and port"]),
    ("[store]\nendpoints = http://user@h:2379\n", ["[store] endpoints", "host and port"]),
    ("[store]\nendpoints = http://a b:2379\n", ["[store] endpoints", "host and port"]),
    ("[store]\nendpoints = http://h:99999\n", ["[store] endpoints", "http://h:99999"]),
    ("[store]\nendpoints = http://h:x\n", ["[store] endpoints", "http://h:x"]),
    ("[store]\nendpoints = http://h:0\n", ["[store] endpoints", "bad port"]),
    ("[store]\nendpoints = ,\n", ["[store] endpoints", "at least one URL"]),
    ("[store]\nprefix = maomao\n", ["[store] prefix", "start with /"]),
    ("[store]\nprefix = /a b\n", ["[store] prefix", "letters"]),
    ("[store]\npath =\n", ["[store] path", "empty"]),
    ("[store]\ncolour = blue\n", ["[store] colour", "unknown key", "backend", "ttl"]),
    ("[store]\nTTL = 5\n", ["[store] TTL", "unknown key"]),
    ("[stores]\nttl = 5\n", ["[stores]", "unknown section", "maomao, store"]),
    ("[DEFAULT]\nttl = 5\n", ["[DEFAULT]", "unknown section"]),
    ("[store]\ncert = {here}/client.pem\n", ["[store] cert and key", "both"]),
    ("[store]\nkey = {here}/client.key\n", ["[store] cert and key", "both"]),
    ("[store]\nca_cert = missing.pem\n", ["[store] ca_cert", "missing.pem", "not a readable file"]),
    ("[maomao]\nmember = -lab\n", ["[maomao] member", "'-lab'", "letters, digits"]),
    ("[maomao]\nmember = lab 1\n", ["[maomao] member", "letters, digits"]),
    ("[maomao]\nmember = " + "m" * 65 + "\n", ["[maomao] member", "1-64"]),
    ("[ETCD]\nhost = 127.0.0.1\nport = http\n", ["[ETCD] port", "1 to 65535"]),
    ("[ETCD]\nhost = 127.0.0.1\nport = 70000\n", ["[ETCD] port", "1 to 65535"]),
    ("[ETCD]\nhost = 127.0.0.1\nport = 0\n", ["[ETCD] port", "1 to 65535"]),
    ("[ETCD]\nhost = bad host\nport = 2379\n", ["[ETCD] host", "host name"]),
    ("[ETCD]\nhost =\nport = 2379\n", ["[ETCD] host", "host name"]),
    ("[store\nttl = 5\n", ["line 1", "[store"]),
    ("[store]\nttl\n", ["line 2", "'ttl'", "key = value"]),
    ("ttl = 5\n", ["line 1", "before any [section]"]),
    ("[store]\nttl = 5\nttl = 6\n", ["ttl", "already exists"]),
    ("[runner]\nnetwork = wifi\n", ["[runner] network", "bridge, none, host"]),
    ("[runner]\nmemory = lots\n", ["[runner] memory", "512m"]),
    ("[runner]\ncpus = 0\n", ["[runner] cpus", "above 0"]),
    ("[runner]\npids = 0\n", ["[runner] pids", "whole number"]),
    ("[runner]\ndocker_host = /var/run/docker.sock\n", ["[runner] docker_host", "unix://"]),
    ("[runner]\nread_only = maybe\n", ["[runner] read_only", "true or false"]),
    ("[git]\npush = maybe\n", ["[git] push", "true or false"]),
    ("[git]\nssh_key = nokey\n", ["[git] ssh_key", "not a readable file"]),
    ("[git]\ntimeout = 0\n", ["[git] timeout", "seconds"]),
    ("[git]\nauthor_name =\n", ["[git] author_name", "empty"]),
]


def _case_id(text: str) -> str:
    # no "store" in an id: the other suites are selected by -k "store"
    return re.sub(r"(?i)store", "st", " ".join(text.split()))[:40]


@pytest.mark.parametrize(("text", "words"), ERRORS, ids=[_case_id(t) for t, _ in ERRORS])
def test_wrong_values_fail_at_load(place: Path, text: str, words: list[str]) -> None:
    write(place / "client.pem", "x")
    write(place / "client.key", "x")
    message = error_of(place, text.format(here=place))
    for word in words:
        assert word in message, message


def test_runner_and_git_sections(place: Path) -> None:
    defaults = load_text(place, "[maomao]\nmember = lab-2\n")
    assert defaults.runner == config_module.RunnerConfig(
        docker_host=None, memory=None, cpus=None, pids=1024, network="bridge", read_only=False, pull_timeout=600.0
    )
    assert defaults.git.author_name == "maomao" and defaults.git.author_email == "maomao@lab-2"
    assert defaults.git.push and defaults.git.token is None and defaults.git.ssh_key is None
    write(place / "keys" / "deploy", "key")
    config = load_text(
        place,
        "[runner]\ndocker_host = unix:///run/podman/podman.sock\nmemory = 512m\ncpus = 1.5\npids = 64\n"
        "network = none\nread_only = yes\npull_timeout = 30\n"
        "[git]\nauthor_name = Lab Bot\nauthor_email = bot@lab.example\npush = off\nssh_key = keys/deploy\n"
        "timeout = 15\npush_retry = 5\n",
        {"MAOMAO_GIT_TOKEN": "s3cret"},
    )
    assert config.runner == config_module.RunnerConfig(
        "unix:///run/podman/podman.sock", "512m", 1.5, 64, "none", True, 30.0
    )
    assert config.git == config_module.GitConfig(
        "Lab Bot", "bot@lab.example", False, "s3cret", "x-access-token", place / "keys" / "deploy", 15.0, 5.0
    )


def test_wrong_environment_values_name_the_variable(place: Path) -> None:
    message = error_of(place, "[store]\nttl = 5\n", {"MAOMAO_STORE_TTL": "forever"})
    assert "MAOMAO_STORE_TTL" in message and "[store] ttl" in message and "'forever'" in message
    assert "2 to 3600" in message
    message = error_of(place, "", {"MAOMAO_STORE_COLOUR": "blue"})
    assert "MAOMAO_STORE_COLOUR" in message and "colour" in message and "ttl" in message
    message = error_of(place, "", {"MAOMAO_MAOMAO_MEMBER": ".hidden"})
    assert "MAOMAO_MAOMAO_MEMBER" in message and "[maomao] member" in message


def test_unreadable_file(place: Path) -> None:
    path = place / "config.ini"
    path.write_bytes(b"[store]\nttl = \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"config file {path}:")
    assert "\n" not in str(caught.value)


def test_config_error_is_a_usage_error() -> None:
    assert issubclass(ConfigError, UsageError)
    assert ConfigError("x").exit_code == 2


def test_text_values_refuse_control_characters(tmp_path: Path) -> None:
    path = tmp_path / "c.ini"
    path.write_text("[store]\nbackend = embedded\npath = /tmp/a\x00b\n")
    with pytest.raises(ConfigError, match="must not hold control characters"):
        load_config(path, environ={})


def test_a_file_that_is_not_a_config_is_quoted_short(tmp_path: Path) -> None:
    path = tmp_path / "environ"
    path.write_text("SECRET_TOKEN=" + "x" * 500 + "\0OTHER=1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert "comes before any [section]" in message and "x" * 100 not in message and len(message) < 200
