"""Records (Tool, Dataset) and the validation of every field they hold.

A record is frozen and valid by construction: ``__post_init__`` checks each
field and raises :class:`~maomao.errors.ValidationError` with one line that
names the field and what is allowed.  Records travel as JSON objects with a
schema version (``"v": 1``); :meth:`from_value` is the one parser of what
the store holds, and ignores fields it does not know so that an older
member can read what a newer one wrote.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import UnionType
from typing import TYPE_CHECKING, Any, ClassVar, Self, Union, get_args, get_origin, get_type_hints
from urllib.parse import unquote, urlsplit

from maomao.errors import MaomaoError, ValidationError

if TYPE_CHECKING:
    from maomao.schedule import Expression

SCHEMA_VERSION = 1

NAME_RULE = "1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# C0 and C1 control characters, line/paragraph separators (they break a table's
# lines or drive the terminal) and lone surrogates (what undecodable bytes of
# argv become: no UTF-8 output or JSON reader can take them)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MEMORY = re.compile(r"[1-9][0-9]*[bkmgBKMG]?")
_METRIC = re.compile(
    r"(?P<name>[A-Za-z0-9_][A-Za-z0-9._-]{0,63})=(?P<glob>[^:\x00-\x1f]+)(?::(?P<column>[^:\x00-\x1f]+))?"
)

# The Docker reference grammar (github.com/distribution/reference, regexp.go).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_SCP_URL = re.compile(
    r"(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>[^\x00-\x20].*)"
)


def valid_name(name: str) -> bool:
    """Whether ``name`` may name a tool, a dataset or a member."""
    return isinstance(name, str) and bool(_NAME.fullmatch(name))


def check_name(name: str, what: str = "name") -> str:
    if not valid_name(name):
        raise ValidationError(f"{what} {name!r} is not allowed: {NAME_RULE}")
    return name


#: a run id: a slot (``20261130T030000Z``), with ``-<ms><hex>`` for a request, ``.<member>`` for ``--on all``
_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,159}")


def check_run_id(run_id: str) -> str:
    if not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id)):
        raise ValidationError(
            f"run id {run_id!r} is not allowed: 1-160 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        )
    return run_id


def check_text(value: str, what: str, *, limit: int = 256, empty: bool = False) -> str:
    """Free text for a table cell: no control characters, bounded length."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text")
    if not value and not empty:
        raise ValidationError(f"{what} must not be empty")
    if len(value) > limit:
        raise ValidationError(f"{what} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise ValidationError(f"{what} {value!r} holds control characters or undecodable bytes")
    return value


def check_image(image: str) -> str:
    """A Docker image reference: ``[registry[:port]/]path[:tag][@digest]``."""
    match = _REFERENCE.fullmatch(image) if isinstance(image, str) else None
    if not match or len(match["name"]) > 255:
        raise ValidationError(
            f"image {image!r} is not a Docker image reference "
            "(e.g. registry.example.org/team/tool:1.2 or tool@sha256:<hex>)"
        )
    return image


def check_repo_url(url: str, what: str = "repository URL") -> str:
    """A git remote: https://, http://, ssh://, git@host:path, file:// or /abs/path."""
    allowed = "https://, http://, ssh://, user@host:path, file:// or an absolute path"
    if not isinstance(url, str):
        raise ValidationError(f"{what} must be text")
    if not url or url.startswith("-") or _CONTROL.search(url) or " " in url.strip("/") or len(url) > 4096:
        raise ValidationError(f"{what} {url!r} is not allowed: use {allowed}")
    if _CONTROL.search(unquote(url)):  # %0a, %00: a newline or NUL once a transport decodes it
        raise ValidationError(f"{what} {url!r} holds an encoded control character")
    if url.startswith("/"):
        return url
    scp = _SCP_URL.fullmatch(url)
    if scp and "://" not in url:
        if scp["path"].startswith("-"):  # git refuses it too ("strange pathname"): an option to the remote side
            raise ValidationError(f"{what} {url!r} has a path starting with '-'")
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValidationError(f"{what} {url!r} is not a valid URL") from None
    if parts.scheme == "file" and parts.path.startswith("/") and parts.netloc in ("", "localhost"):
        return url
    if parts.scheme in ("https", "http", "ssh"):
        host = parts.hostname or ""
        if not (host and not host.startswith("-") and re.fullmatch(r"[A-Za-z0-9.:_\[\]-]+", host)):
            raise ValidationError(f"{what} {url!r} has no valid host")
        # ssh://-oProxyCommand=...@host/x: "user@host" is one argument of ssh, and that one is an option
        if parts.username is not None and (not parts.username or unquote(parts.username).startswith("-")):
            raise ValidationError(f"{what} {url!r} has a user name that is empty or starts with '-'")
        return url
    raise ValidationError(f"{what} {url!r} is not allowed: use {allowed}")


def check_env(env: Mapping[str, str]) -> dict[str, str]:
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError("env must map names to text values")
        if not _ENV_KEY.fullmatch(key):
            raise ValidationError(
                f"env name {key!r} is not allowed: letters, digits and '_', not starting with a digit"
            )
        if key.startswith("MAOMAO_"):
            raise ValidationError(f"env name {key!r} is reserved: maomao sets MAOMAO_* itself")
        if "\x00" in value or _SURROGATE.search(value) or len(value) > 4096:
            raise ValidationError(
                f"env value of {key} holds NUL or undecodable bytes, or is longer than 4096 characters"
            )
    return dict(env)


def parse_env_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["K=V", ...]`` -> ``{"K": "V"}``, as ``--env`` takes them."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValidationError(f"--env {pair!r} is not KEY=VALUE")
        if key in env:
            raise ValidationError(f"--env {key} is given twice")
        env[key] = value
    return check_env(env)


def _number(value: object) -> bool:
    """An int or float, not a bool (which JSON's ``true`` would give)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """The dataclass field names of ``cls``, computed once."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


_SCALARS = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """A field value as JSON sees it (``dataclasses.asdict`` is ten times slower)."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(type(value), "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    return value


class Record:
    """What the record classes share: JSON with a schema version."""

    kind: ClassVar[str]
    name: str

    def to_dict(self) -> dict[str, Any]:
        """The record's fields as JSON-ready values (nested records as objects)."""
        return {name: _plain(getattr(self, name)) for name in _field_names(type(self))}

    def to_value(self) -> bytes:
        return json.dumps({"v": SCHEMA_VERSION, **self.to_dict()}, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = _field_names(cls)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        """The record a stored value holds; :class:`UnreadableRecord` (one line saying why) if it holds none.

        Beyond what constructing the record checks, every field must have its declared JSON type (a
        string where text is due, a list of strings for a tuple, ...) and times must read as ISO 8601
        UTC: what another program, an older maomao or a hand edit put in the store must not reach
        code that trusts a record.
        """
        try:
            data = json.loads(value)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise UnreadableRecord(f"stored {cls.kind} is not JSON: {_one_line(exc)}") from None
        version = data.get("v") if isinstance(data, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            what = "a JSON object" if not isinstance(data, dict) else "an object"
            raise UnreadableRecord(f"stored {cls.kind} has no schema version (\"v\": 1 in {what})")
        if data["v"] > SCHEMA_VERSION:
            raise UnreadableRecord(
                f"stored {cls.kind} {data.get('name')!r} has schema v{data['v']}; "
                f"this maomao reads up to v{SCHEMA_VERSION}: upgrade it"
            )
        try:
            record = cls.from_dict(data)  # the constructor's checks first: they say best what is wrong
            _check_stored(cls, data)
            return record
        except (TypeError, ValueError, AttributeError, KeyError, ValidationError) as exc:
            raise UnreadableRecord(f"stored {cls.kind} {data.get('name')!r} is invalid: {_one_line(exc)}") from None

    def key_name(self) -> str:
        """Where under its kind's prefix the record belongs: its name (``<tool>/<id>`` for runs and the like)."""
        return self.name


class UnreadableRecord(MaomaoError, ValueError):
    """A stored value that holds no readable record: not JSON, a newer schema, a wrong type, a bad field."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _conforms(value: object, hint: Any) -> bool:
    """Whether a JSON value fits a field's annotation (a tuple takes a list, a dataclass an object)."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is str:
        return isinstance(value, str)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return _number(value) and math.isfinite(value)  # type: ignore[arg-type]
    origin = get_origin(hint)
    if origin in (UnionType, Union):
        return any(_conforms(value, arm) for arm in get_args(hint))
    if origin is tuple:
        item = get_args(hint)[0]
        return isinstance(value, list | tuple) and all(_conforms(v, item) for v in value)
    if origin is dict:
        key, item = get_args(hint)
        return isinstance(value, dict) and all(_conforms(k, key) and _conforms(v, item) for k, v in value.items())
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return isinstance(value, dict | hint)
    return True


_HINTS: dict[type, dict[str, Any]] = {}


def _describe_hint(hint: Any) -> str:
    text = str(hint).replace("typing.", "").replace("NoneType", "null").replace("maomao.model.", "")
    return text.replace("<class '", "").replace("'>", "")


#: fields holding times that code reads as times (ISO 8601 UTC, e.g. 2026-11-30T03:00:00Z; a Schedule's
#: created may be "" for none); the others (a claim's, a member's) are only shown
_TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "schedule": ("created",),
    "run": ("started", "finished"),
    "spike": ("detected",),
}
#: fields holding names (tools, members, run ids): what keys and paths are made of
_NAME_FIELDS: dict[str, tuple[str, ...]] = {
    "claim": ("tool", "member"),
    "run": ("tool", "member"),
    "spike": ("tool", "member"),
    "request": ("tool",),
}
#: fields holding run ids
_RUN_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "claim": ("name",),
    "run": ("id",),
    "spike": ("run_id",),
    "request": ("name",),
}


def _check_stored(cls: type[Record], data: Mapping[str, Any]) -> None:
    """The checks a stored record gets beyond its constructor's: JSON types, times, names."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = {name: hint for name, hint in get_type_hints(cls).items() if name in _field_names(cls)}
    for name, hint in hints.items():
        if name in data and not _conforms(data[name], hint):
            raise ValidationError(f"{name} must be {_describe_hint(hint)}, not {type(data[name]).__name__}")
    for name in _TIME_FIELDS.get(cls.kind, ()):
        value = data.get(name)
        if value is None or (value == "" and cls.kind == "schedule"):
            continue
        try:
            parse_iso(value)
        except ValueError:
            raise ValidationError(f"{name} {value!r} is not a time like 2026-11-30T03:00:00Z") from None
    for name in _NAME_FIELDS.get(cls.kind, ()):
        if name in data:
            check_name(data[name], name.replace("_", " "))
    for name in _RUN_ID_FIELDS.get(cls.kind, ()):
        if name in data:
            check_run_id(data[name])
    if cls.kind == "spike":
        check_text(data.get("name", ""), "name", limit=300)
        check_text(data.get("metric", ""), "metric", limit=64)
    if cls.kind == "request" and "on" in data:
        check_placement(data["on"])
    if cls.kind == "member":  # shown in tables: text, no control characters
        check_text(data.get("host", ""), "host")
        check_text(data.get("version", ""), "version", limit=64)
    if cls.kind == "claim":
        _check_choice(data.get("state"), RUN_STATES, "claim state")
        _check_choice(data.get("trigger"), TRIGGERS, "claim trigger")
    if cls.kind == "member" and isinstance(data.get("labels"), dict):
        for key, value in data["labels"].items():
            if not (_LABEL.fullmatch(key) and _LABEL.fullmatch(value)):
                raise ValidationError(f"label {key!r}={value!r} must be KEY=VALUE of letters, digits, '.', '_', '-'")


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one run; ``None`` takes the configured default."""

    memory: str | None = None
    cpus: float | None = None
    pids: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        """Limits from JSON, ignoring the keys a newer maomao may have added."""
        known = _field_names(cls)
        return cls(**{k: v for k, v in data.items() if k in known})

    def __post_init__(self) -> None:
        if self.memory is not None and not (isinstance(self.memory, str) and _MEMORY.fullmatch(self.memory)):
            raise ValidationError(f"memory {self.memory!r} must be a size like 512m or 2g")
        if self.cpus is not None and not (_number(self.cpus) and 0 < self.cpus <= 1024):
            raise ValidationError(f"cpus {self.cpus!r} must be a number above 0")
        if self.pids is not None and not (
            isinstance(self.pids, int) and not isinstance(self.pids, bool) and 1 <= self.pids <= 1_000_000
        ):
            raise ValidationError(f"pids {self.pids!r} must be a whole number from 1")


#: detector settings a tool may set, all metrics or one: name -> (whole number?, low, high)
SPIKE_PARAMS: dict[str, tuple[bool, float, float]] = {
    "threshold": (False, 0.0, 1.0),
    "cooldown": (True, 0, 100_000),
    "min_history": (True, 2, 100_000),
    "short_percent": (False, 0.0, 10_000.0),
}


def check_spike_param(key: object, value: object) -> float:
    """``threshold``, ``cooldown``, ``min_history``, ``short_percent``, each alone or as ``METRIC.PARAM``."""
    if not isinstance(key, str):
        raise ValidationError("spike setting names must be text")
    metric, _, param = key.rpartition(".")
    if param not in SPIKE_PARAMS or (metric and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", metric)):
        raise ValidationError(
            f"spike setting {key!r} must be PARAM or METRIC.PARAM, PARAM one of {', '.join(SPIKE_PARAMS)}"
        )
    whole, low, high = SPIKE_PARAMS[param]
    number = _as_number(value)
    if whole:
        fits = number is not None and number == int(number) and low <= number <= high
    else:
        fits = number is not None and low < number <= high
    if number is None or not fits:
        kind = f"a whole number from {low:g} to {high:g}" if whole else f"a number above {low:g}, at most {high:g}"
        raise ValidationError(f"spike setting {key} = {value!r} must be {kind}")
    return int(number) if whole else number


def parse_number(text: str | None) -> float | None:
    """The finite number in ``text`` (integer or float, surrounding space allowed); None for anything else."""
    if text is None:
        return None
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return parse_number(value) if isinstance(value, str) else None


RUNTIMES = ("container", "process")
NETWORKS = ("bridge", "none", "host")
#: where a container sees its data repository (the original framework's contract)
DATA_MOUNT = "/usr/src/app/data"


def check_mount_path(path: str) -> str:
    """A container path to mount the data repository at: absolute, plain, not a system directory."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 256:
        raise ValidationError(f"data mount {path!r} must be an absolute path inside the container")
    parts = path.strip("/").split("/")
    if (
        not parts[0]
        or any(part in ("", ".", "..") for part in parts)
        or not all(re.fullmatch(r"[A-Za-z0-9._@+-]+", part) for part in parts)
        or (len(parts) == 1 and parts[0] in ("proc", "sys", "dev", "etc", "bin", "sbin", "lib", "lib64", "usr"))
    ):
        raise ValidationError(
            f"data mount {path!r} must be an absolute path of plain names (not /, /proc, /etc, ...)"
        )
    return path


@dataclass(frozen=True, slots=True)
class Tool(Record):
    """A registered data collector."""

    kind: ClassVar[str] = "tool"

    name: str
    author: str
    image: str
    data_repo: str
    code_repo: str
    artefact: str
    command: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    limits: Limits = field(default_factory=Limits)
    metrics: tuple[str, ...] = ()
    runtime: str = "container"
    digest: str | None = None
    network: str | None = None
    read_only: bool | None = None
    data_mount: str = DATA_MOUNT
    #: spike detection settings of this tool: PARAM or METRIC.PARAM -> value (see SPIKE_PARAMS)
    spikes: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name, "tool name")
        check_text(self.author, "author")
        check_image(self.image)
        check_repo_url(self.data_repo, "data_repo")
        check_repo_url(self.code_repo, "code_repo")
        check_text(self.artefact, "artefact")
        if self.command is not None:
            check_text(self.command, "command", limit=4096)
            try:
                if not shlex.split(self.command):
                    raise ValidationError("command must not be empty")
            except ValueError as exc:
                raise ValidationError(f"command {self.command!r} does not parse: {exc}") from None
        if not isinstance(self.env, dict):
            raise ValidationError("env must be a mapping of names to values")
        check_env(self.env)
        if self.timeout is not None and not (_number(self.timeout) and 0 < self.timeout <= 7 * 86400):
            raise ValidationError(f"timeout {self.timeout!r} must be seconds above 0, at most a week")
        if isinstance(self.limits, dict):
            object.__setattr__(self, "limits", Limits.from_dict(self.limits))
        if not isinstance(self.limits, Limits):
            raise ValidationError("limits must be an object of memory, cpus and pids")
        if not isinstance(self.metrics, list | tuple):
            raise ValidationError("metrics must be a list of NAME=GLOB[:COLUMN]")
        object.__setattr__(self, "metrics", tuple(self.metrics))
        for metric in self.metrics:
            if not isinstance(metric, str) or not _METRIC.fullmatch(metric):
                raise ValidationError(f"metric {metric!r} must be NAME=GLOB[:COLUMN]")
        if self.runtime not in RUNTIMES:
            raise ValidationError(f"runtime {self.runtime!r} must be one of {', '.join(RUNTIMES)}")
        if self.runtime == "process" and not self.command:
            raise ValidationError("the process runtime needs --command")
        if self.digest is not None and not (isinstance(self.digest, str) and re.fullmatch(_DIGEST, self.digest)):
            raise ValidationError(f"digest {self.digest!r} must be algorithm:hex")
        if self.network is not None and self.network not in NETWORKS:
            raise ValidationError(f"network {self.network!r} must be one of {', '.join(NETWORKS)}")
        if self.read_only is not None and not isinstance(self.read_only, bool):
            raise ValidationError("read_only must be true or false")
        check_mount_path(self.data_mount)
        if not isinstance(self.spikes, dict):
            raise ValidationError("spikes must be a mapping of PARAM or METRIC.PARAM to a number")
        object.__setattr__(self, "spikes", {key: check_spike_param(key, value) for key, value in self.spikes.items()})


@dataclass(frozen=True, slots=True)
class Dataset(Record):
    """A shared git repository of data."""

    kind: ClassVar[str] = "dataset"

    name: str
    url: str
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "dataset name")
        check_repo_url(self.url, "url")
        check_text(self.description, "description", limit=1024, empty=True)


# -- the daemon's records: schedules, members, claims, runs, run requests ----

CATCH_UP = ("latest", "skip", "all")
CONCURRENCY = ("forbid", "allow")
RUN_STATES = ("claimed", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped")
FINISHED_STATES = ("succeeded", "failed", "timed_out", "cancelled", "skipped")
TRIGGERS = ("schedule", "request")
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
PLACEMENT_RULE = "any, all, a member name, or LABEL=VALUE"


def utc_iso(moment: datetime) -> str:
    """``2026-11-30T03:00:00Z``: how records write times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def check_placement(on: str) -> str:
    """Where a tool may run: ``any``, ``all``, a member name or ``LABEL=VALUE``."""
    key, sep, value = on.partition("=")
    if on in ("any", "all") or (not sep and valid_name(on)):
        return on
    if sep and _LABEL.fullmatch(key) and _LABEL.fullmatch(value):
        return on
    raise ValidationError(f"--on {on!r} is not allowed: use {PLACEMENT_RULE}")


def parse_labels(text: str) -> dict[str, str]:
    """``"site=lab,gpu=yes"`` -> ``{"site": "lab", "gpu": "yes"}``."""
    labels: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not _LABEL.fullmatch(key) or not _LABEL.fullmatch(value):
            raise ValidationError(f"label {pair!r} must be KEY=VALUE of letters, digits, '.', '_', '-'")
        labels[key] = value
    return labels


def _check_choice(value: object, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValidationError(f"{what} {value!r} must be one of {', '.join(allowed)}")


@dataclass(frozen=True, slots=True)
class Schedule(Record):
    """When a tool runs (``schedules/<tool>``)."""

    kind: ClassVar[str] = "schedule"

    name: str
    expression: str
    timezone: str = "UTC"
    catch_up: str = "latest"
    concurrency: str = "forbid"
    on: str = "any"
    created: str = ""

    def __post_init__(self) -> None:
        from maomao.schedule import parse_expression

        check_name(self.name, "tool name")
        if not isinstance(self.expression, str) or not isinstance(self.timezone, str):
            raise ValidationError("expression and timezone must be text")
        parse_expression(self.expression, self.name, self.timezone)
        _check_choice(self.catch_up, CATCH_UP, "--catch-up")
        _check_choice(self.concurrency, CONCURRENCY, "--concurrency")
        check_placement(self.on)

    def parsed(self) -> Expression:
        from maomao.schedule import parse_expression

        return parse_expression(self.expression, self.name, self.timezone)


@dataclass(frozen=True, slots=True)
class Member(Record):
    """A live daemon (``members/<name>``, bound to its lease)."""

    kind: ClassVar[str] = "member"

    name: str
    host: str
    version: str
    runtimes: tuple[str, ...]
    labels: dict[str, str]
    started: str
    pid: int = 0

    def __post_init__(self) -> None:
        check_name(self.name, "member name")
        object.__setattr__(self, "runtimes", tuple(self.runtimes))

    def eligible(self, on: str, runtime: str) -> bool:
        """Whether this member may run a tool of ``runtime`` placed ``on``."""
        if runtime not in self.runtimes:
            return False
        if on in ("any", "all"):
            return True
        key, sep, value = on.partition("=")
        return self.labels.get(key) == value if sep else self.name == on


@dataclass(frozen=True, slots=True)
class Claim(Record):
    """A run in progress (``claims/<tool>/<run-id>``, bound to the claimer's lease).

    Its ``mod_revision`` in the store is the fencing token: the run is
    recorded only while the claim still has the revision its member wrote.
    """

    kind: ClassVar[str] = "claim"

    name: str  # the run id
    tool: str
    member: str
    slot: str
    trigger: str
    state: str
    claimed: str
    started: str | None = None

    def key_name(self) -> str:
        return f"{self.tool}/{self.name}"


@dataclass(frozen=True, slots=True)
class Run(Record):
    """A finished (or skipped) run (``runs/<tool>/<run-id>``)."""

    kind: ClassVar[str] = "run"

    id: str
    tool: str
    slot: str
    trigger: str
    member: str
    state: str
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    output_tail: str = ""
    detail: str = ""
    #: the data repository commit holding what the run wrote (main branch, or the
    #: failed/conflicts branch ``branch`` names); None when it wrote nothing
    commit: str | None = None
    #: what became of the commit: pushed, rebased, conflict, pending, disabled, local ("" = no commit)
    push: str = ""
    branch: str | None = None
    #: the image the run used, as the engine resolved it (repo@digest or image id)
    image: str | None = None
    #: spike detection after the run, one entry per metric: metric, point, value, baseline,
    #: deviation, score, spike (bool), points, skipped
    detection: tuple[dict[str, Any], ...] = ()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.id

    def key_name(self) -> str:
        return f"{self.tool}/{self.id}"

    def __post_init__(self) -> None:
        _check_choice(self.state, RUN_STATES, "run state")
        _check_choice(self.trigger, TRIGGERS, "run trigger")
        if not isinstance(self.detection, list | tuple) or not all(isinstance(d, dict) for d in self.detection):
            raise ValidationError("detection must be a list of objects")
        object.__setattr__(self, "detection", tuple(self.detection))


@dataclass(frozen=True, slots=True)
class Spike(Record):
    """A spike that detection found after a run (``spikes/<tool>/<run-id>.<metric>``)."""

    kind: ClassVar[str] = "spike"

    name: str  # <run-id>.<metric>
    tool: str
    metric: str
    run_id: str
    member: str
    point: str  # the point's label: its control file, or its time
    value: float
    baseline: float
    deviation: float | None  # (value - baseline) / |baseline|; None when the baseline is 0
    score: float
    detected: str  # ISO 8601 UTC

    def key_name(self) -> str:
        return f"{self.tool}/{self.name}"


@dataclass(frozen=True, slots=True)
class RunRequest(Record):
    """A run-now request from ``ctl`` (``requests/<run-id>``), until its run is recorded."""

    kind: ClassVar[str] = "request"

    name: str  # the run id
    tool: str
    on: str
    created: str
    by: str = ""
