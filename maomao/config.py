"""Configuration: ``config.ini`` plus ``MAOMAO_<SECTION>_<KEY>`` overrides.

The file is looked up from ``--config PATH``, then ``$MAOMAO_CONFIG``, then
``./config.ini``, ``~/.config/maomao/config.ini`` and
``/etc/maomao/config.ini``; with none, every key takes its default (the
embedded store under the user's state directory).  The original MAO-MAO
file's keys still work: ``[WORKING_ENVIRONMENT] importdir`` and
``[ETCD] host, port``, which select the etcd backend.

Every value is parsed and checked once, here; a wrong one fails at load
with one line naming section, key and what is allowed.  The rest of the
code reads typed, frozen records.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from maomao.errors import ConfigError

ENV_PREFIX = "MAOMAO_"
SEARCH_PATH = (
    Path("config.ini"),
    Path("~/.config/maomao/config.ini"),
    Path("/etc/maomao/config.ini"),
)


def state_dir() -> Path:
    """Where maomao keeps its state when the config does not say."""
    if os.environ.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "maomao"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: which store, where, and how to reach it."""

    backend: str
    path: Path
    endpoints: tuple[str, ...]
    prefix: str
    ca_cert: str | None
    cert: str | None
    key: str | None
    ttl: int
    timeout: float
    #: etcd authentication: the user, and its password (from ``password`` or ``password_file``)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """``[daemon]``: how a member schedules, runs and keeps runs."""

    labels: dict[str, str]
    max_parallel: int
    claim_grace: float
    shutdown_grace: float
    run_timeout: float
    kill_grace: float
    keep_runs: int
    max_run_age: float
    state_dir: Path


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """``[runner]``: the container engine and the defaults of each run's confinement."""

    docker_host: str | None
    memory: str | None
    cpus: float | None
    pids: int | None
    network: str
    read_only: bool
    pull_timeout: float


@dataclass(frozen=True, slots=True)
class GitConfig:
    """``[git]``: who commits run output, how to reach data remotes."""

    author_name: str
    author_email: str
    push: bool
    token: str | None
    token_user: str
    ssh_key: Path | None
    timeout: float
    push_retry: float
    #: files bigger than this (bytes) are left out of a run's commit
    max_file_size: int = 50 << 20


@dataclass(frozen=True, slots=True)
class SpikesConfig:
    """``[spikes]``: the detector's defaults, where alerts go, how long spikes are kept."""

    threshold: float | None
    cooldown: int | None
    min_history: int | None
    short_percent: float
    webhook: str | None
    webhook_timeout: float
    webhook_retries: int
    keep: int
    max_age: float


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``[metrics]``: where the daemon serves Prometheus metrics (off unless ``listen`` is set)."""

    listen: tuple[str, int] | None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    source: Path | None
    importdir: Path
    member: str
    store: StoreConfig
    daemon: DaemonConfig
    runner: RunnerConfig
    git: GitConfig
    spikes: SpikesConfig
    metrics: MetricsConfig


# -- value parsers: each takes the text and returns the value or raises ValueError


def _text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not hold control characters")
    return value


def _excerpt(line: str, width: int = 60) -> str:
    """A line of a file that is not a config file, short enough to show (it may be anything)."""
    line = line.strip()
    return line if len(line) <= width else line[:width] + "…"


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return value

    return parse


_WHOLE = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]", re.ASCII)


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        # int() would also take "1_0", "+5" and non-ASCII digits: only plain digits here
        if not _WHOLE.fullmatch(value) or not low <= int(value) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(value)

    return parse


def _seconds(value: str) -> float:
    if not _DECIMAL.fullmatch(value):
        raise ValueError("must be a number of seconds greater than 0 and below 86400, e.g. 5 or 0.5")
    number = float(value)
    if not 0 < number < 86400:
        raise ValueError("must be a number of seconds greater than 0 and below 86400")
    return number


_SIZE = re.compile(r"([0-9]+)\s*([kmgt]?)(?:i?b)?", re.ASCII | re.IGNORECASE)


def _size(value: str) -> int:
    """A size in bytes: ``52428800``, ``500k``, ``50m``, ``50MiB``, ``1g`` (binary units)."""
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError("must be a size like 50m, 500k, 1g or a number of bytes")
    shift = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[match.group(2).lower()]
    number = int(match.group(1)) << shift
    if not 1 <= number <= 1 << 40:
        raise ValueError("must be a size from 1 byte to 1t")
    return number


def _endpoints(value: str) -> tuple[str, ...]:
    urls = tuple(u.strip().rstrip("/") for u in value.split(",") if u.strip())
    if not urls:
        raise ValueError("must list at least one URL, e.g. http://127.0.0.1:2379")
    for url in urls:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
            parts = parts._replace(netloc="")
        host = parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
            or not _HOST.fullmatch(host)
        ):
            raise ValueError(f"{url!r} is not an http:// or https:// URL of host and port")
        if (port is None and ":" in parts.netloc.rsplit("]", 1)[-1]) or port == 0:
            raise ValueError(f"{url!r} has a bad port")
    return urls


def _prefix(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._/-]*", value):
        raise ValueError("must start with / and hold only letters, digits, '.', '_', '-', '/'")
    return value if value.endswith("/") else value + "/"


def _member(value: str) -> str:
    from maomao.model import NAME_RULE, valid_name

    if not valid_name(value):
        raise ValueError(NAME_RULE)
    return value


def _labels(value: str) -> dict[str, str]:
    from maomao.errors import ValidationError
    from maomao.model import parse_labels

    try:
        return parse_labels(value)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None


def _duration_seconds(value: str) -> float:
    from maomao.errors import ValidationError
    from maomao.schedule import parse_duration

    try:
        return parse_duration(value).total_seconds()
    except ValidationError:
        raise ValueError("must be a duration like 30d, 12h or 90m") from None


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("must be true or false")


def _memory(value: str) -> str:
    from maomao.errors import ValidationError
    from maomao.model import Limits

    try:
        Limits(memory=value)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    return value


def _cpus(value: str) -> float:
    if not _DECIMAL.fullmatch(value) or not 0 < float(value) <= 1024:
        raise ValueError("must be a number of CPUs above 0, e.g. 0.5 or 2")
    return float(value)


def _docker_host(value: str) -> str:
    if not re.fullmatch(r"(unix|tcp|ssh)://\S+", value):
        raise ValueError("must be a unix://, tcp:// or ssh:// address, e.g. unix:///run/podman/podman.sock")
    return value


def _fraction(value: str) -> float:
    if not _DECIMAL.fullmatch(value) or not 0 < float(value) < 1:
        raise ValueError("must be a number between 0 and 1, e.g. 0.9")
    return float(value)


def _percent(value: str) -> float:
    if not _DECIMAL.fullmatch(value) or not 0 < float(value) <= 10000:
        raise ValueError("must be a percentage above 0, e.g. 20")
    return float(value)


def _webhook(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not _WHOLE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464")
    return host, int(port)


def _existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise ValueError(f"{value!r} is not a readable file")
    return value


def default_member() -> str:
    """This machine's host name, made a valid member name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64].lstrip(".-")
    return name or "member"


# section -> key -> (parser, default); a default of None means "unset"
SCHEMA: dict[str, dict[str, tuple[Callable[[str], Any], str | None]]] = {
    "maomao": {
        "importdir": (_text, None),
        "member": (_member, None),
    },
    "store": {
        "backend": (_choice("embedded", "etcd"), None),
        "path": (_text, None),
        "endpoints": (_endpoints, "http://127.0.0.1:2379"),
        "prefix": (_prefix, "/maomao/"),
        "ca_cert": (_existing_file, None),
        "cert": (_existing_file, None),
        "key": (_existing_file, None),
        "ttl": (_integer(2, 3600), "10"),
        "timeout": (_seconds, "5"),
        "user": (_text, None),
        "password": (_text, None),
        "password_file": (_text, None),
    },
    "daemon": {
        "labels": (_labels, ""),
        "max_parallel": (_integer(1, 1024), "4"),
        "claim_grace": (_seconds, "2"),
        "shutdown_grace": (_seconds, "30"),
        "run_timeout": (_seconds, "3600"),
        "kill_grace": (_seconds, "10"),
        "keep_runs": (_integer(1, 100000), "100"),
        "max_run_age": (_duration_seconds, "30d"),
        "state_dir": (_text, None),
    },
    "runner": {
        "docker_host": (_docker_host, None),
        "memory": (_memory, None),
        "cpus": (_cpus, None),
        "pids": (_integer(1, 1_000_000), "1024"),
        "network": (_choice("bridge", "none", "host"), "bridge"),
        "read_only": (_boolean, "false"),
        "pull_timeout": (_seconds, "600"),
    },
    "git": {
        "author_name": (_text, "maomao"),
        "author_email": (_text, None),
        "push": (_boolean, "true"),
        "token": (_text, None),
        "token_user": (_text, "x-access-token"),
        "ssh_key": (_existing_file, None),
        "timeout": (_seconds, "60"),
        "push_retry": (_seconds, "60"),
        "max_file_size": (_size, "50m"),
    },
    "spikes": {
        "threshold": (_fraction, None),
        "cooldown": (_integer(0, 100000), None),
        "min_history": (_integer(2, 100000), None),
        "short_percent": (_percent, "20"),
        "webhook": (_webhook, None),
        "webhook_timeout": (_seconds, "5"),
        "webhook_retries": (_integer(0, 100), "3"),
        "keep": (_integer(1, 1000000), "1000"),
        "max_age": (_duration_seconds, "90d"),
    },
    "metrics": {
        "listen": (_listen, None),
    },
}

#: keys naming files; relative to the config file's directory when given there
_FILE_KEYS = ("ca_cert", "cert", "key", "ssh_key", "password_file")

#: sections of the original maoctl.py file, read for compatibility only
LEGACY_SECTIONS = ("WORKING_ENVIRONMENT", "ETCD", "DATA_REPOS")


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read, by the documented search order."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    env = os.environ.get("MAOMAO_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"MAOMAO_CONFIG names {path}, which does not exist")
        return path
    for candidate in SEARCH_PATH:
        path = candidate.expanduser()
        if path.is_file():
            return path
    return None


def _read_file(path: Path) -> configparser.ConfigParser:
    # no DEFAULT section: its keys would otherwise show up in every section
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"config file {path} line {exc.lineno}: {_excerpt(exc.line)!r} comes before any [section]"
        ) from exc
    except configparser.ParsingError as exc:
        # its message is several lines; keep the first line it could not parse
        lineno, line = exc.errors[0] if getattr(exc, "errors", None) else (0, "?")
        with contextlib.suppress(ValueError, SyntaxError):
            line = str(ast.literal_eval(line))  # configparser reports the repr of the line
        raise ConfigError(
            f"config file {path} line {lineno}: {_excerpt(line)!r} is not [section] or key = value"
        ) from exc
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path}: {first_line}") from exc
    return parser


class _Problems:
    """Where a problem with the configuration goes: raised at once (``load_config``), or collected."""

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self.found: list[str] = []

    def __call__(self, message: str) -> None:
        if not self.collect:
            raise ConfigError(message)
        self.found.append(message)


def _raw_values(
    parser: configparser.ConfigParser | None,
    environ: Mapping[str, str],
    problem: Callable[[str], None] | None = None,
) -> dict[tuple[str, str], tuple[str, str]]:
    """(section, key) -> (text, where it came from), legacy keys mapped."""
    problem = problem or _Problems(collect=False)
    raw: dict[tuple[str, str], tuple[str, str]] = {}
    if parser is not None:
        if parser.has_option("WORKING_ENVIRONMENT", "importdir"):
            raw["maomao", "importdir"] = (
                parser.get("WORKING_ENVIRONMENT", "importdir"),
                "[WORKING_ENVIRONMENT] importdir",
            )
        if parser.has_section("ETCD"):
            host = parser.get("ETCD", "host", fallback="127.0.0.1").strip()
            port = parser.get("ETCD", "port", fallback="2379").strip()
            good = True
            if not _WHOLE.fullmatch(port) or not 1 <= int(port) <= 65535:
                problem(f"[ETCD] port = {port!r}: must be a port number from 1 to 65535")
                good = False
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"  # an IPv6 address
            if not _HOST.fullmatch(host):
                problem(f"[ETCD] host = {host!r}: must be a host name or IP address")
                good = False
            raw["store", "backend"] = ("etcd", "[ETCD]")
            if good:
                raw["store", "endpoints"] = (f"http://{host}:{port}", "[ETCD] host, port")
        for section in parser.sections():
            if section in LEGACY_SECTIONS:
                continue
            if section not in SCHEMA:
                problem(f"[{section}]: unknown section; known: {', '.join(SCHEMA)}")
                continue
            for key, value in parser.items(section):
                if key not in SCHEMA[section]:
                    problem(f"[{section}] {key}: unknown key; known: {', '.join(SCHEMA[section])}")
                    continue
                raw[section, key] = (value.strip(), f"[{section}] {key}")
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section, keys in SCHEMA.items():
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                if key not in keys:
                    problem(f"{name}: [{section}] has no key {key!r}; known: {', '.join(keys)}")
                    break
                raw[section, key] = (value.strip(), name)
    return raw


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Find, read, override and validate the configuration."""
    config = _load(explicit, environ, _Problems(collect=False))
    assert config is not None
    return config


def check_config(
    explicit: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config | None, list[str]]:
    """Like :func:`load_config`, but every problem found: (the config or None, the problems' lines).

    A file that cannot be found or read is one problem (nothing after it can be checked).
    """
    problems = _Problems(collect=True)
    try:
        config = _load(explicit, environ, problems)
    except ConfigError as exc:
        return None, [*problems.found, str(exc)]
    return (None if problems.found else config), problems.found


def _store_credentials(values: Mapping[tuple[str, str], Any], problem: Callable[[str], None]) -> str | None:
    """Check ``[store]``'s credentials together; the password (read from its file)."""
    user: str | None = values["store", "user"]
    password: str | None = values["store", "password"]
    password_file: str | None = values["store", "password_file"]
    if password is not None and password_file is not None:
        problem("[store] password and password_file: give one of them, not both")
        return None
    if password_file is not None:
        try:
            password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            problem(f"[store] password_file = {password_file!r}: cannot be read: {reason}")
            return None
        if not password:
            problem(f"[store] password_file = {password_file!r}: is empty")
            return None
    if user is None and password is not None:
        problem("[store] password: needs [store] user (the etcd user it is the password of)")
    if user is not None and password is None:
        problem("[store] user: needs [store] password or password_file (or MAOMAO_STORE_PASSWORD)")
    return password


def _load(
    explicit: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None,
    problem: _Problems,
) -> Config | None:
    environ = os.environ if environ is None else environ
    source = find_config(explicit)
    parser = _read_file(source) if source is not None else None
    raw = _raw_values(parser, environ, problem)
    base = source.parent if source is not None else Path.cwd()

    values: dict[tuple[str, str], Any] = {}
    for section, keys in SCHEMA.items():
        for key, (parse, default) in keys.items():
            text, origin = raw.get((section, key), (default, "default"))
            if text is None:
                values[section, key] = None
                continue
            if key in _FILE_KEYS and text and not origin.startswith(ENV_PREFIX):
                # a file named in the config file is relative to that file, as [store] path is
                text = str(base / Path(text).expanduser())
            try:
                values[section, key] = parse(text)
            except ValueError as exc:
                where = f"[{section}] {key}"
                if origin.startswith(ENV_PREFIX):
                    where = f"{origin} ({where})"
                elif origin not in ("default", where):
                    where = f"{origin} (as {where})"  # a legacy key
                problem(f"{where} = {text!r}: {exc}")
                values[section, key] = None

    def path(value: str | None, fallback: Path) -> Path:
        if value is None:
            return fallback
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (base / candidate).resolve()

    if problem.found:
        return None
    if (values["store", "cert"] is None) != (values["store", "key"] is None):
        problem("[store] cert and key: give both (the client certificate and its key) or neither")
        return None
    password = _store_credentials(values, problem)
    if problem.found:
        return None
    backend = values["store", "backend"]
    if backend is None:
        backend = "etcd" if ("store", "endpoints") in raw else "embedded"
    state = state_dir()
    member = values["maomao", "member"] or default_member()

    def fields_of(name: str) -> dict[str, Any]:
        """A section's parsed values by key (the record's fields are named as the keys)."""
        return {key: values[name, key] for key in SCHEMA[name]}

    return Config(
        source=source,
        importdir=path(values["maomao", "importdir"], state / "data"),
        member=member,
        store=StoreConfig(
            backend=backend,
            path=path(values["store", "path"], state / "store.db"),
            endpoints=values["store", "endpoints"],
            prefix=values["store", "prefix"],
            ca_cert=values["store", "ca_cert"],
            cert=values["store", "cert"],
            key=values["store", "key"],
            ttl=values["store", "ttl"],
            timeout=values["store", "timeout"],
            user=values["store", "user"],
            password=password,
            password_file=values["store", "password_file"],
        ),
        daemon=DaemonConfig(**{**fields_of("daemon"), "state_dir": path(values["daemon", "state_dir"], state)}),
        runner=RunnerConfig(**fields_of("runner")),
        spikes=SpikesConfig(**fields_of("spikes")),
        metrics=MetricsConfig(**fields_of("metrics")),
        git=GitConfig(
            **{
                **fields_of("git"),
                "author_email": values["git", "author_email"] or f"maomao@{member}",
                "ssh_key": Path(values["git", "ssh_key"]) if values["git", "ssh_key"] else None,
            }
        ),
    )
