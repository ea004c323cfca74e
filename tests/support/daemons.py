"""Real ``maomao daemon`` processes for integration tests.

Each daemon runs as ``.venv/bin/maomao daemon --config FILE`` with a config
file, a home, a state directory and an import directory of its own, its
stderr in a file, and ``NOTIFY_SOCKET`` pointing at a datagram socket the
test binds and reads, as systemd would.  :class:`Daemons` starts several on
one store, waits for their ``READY=1``, stops them (SIGTERM) or kills them
(SIGKILL), and reads what they recorded through the Store API.

Every wait here is a poll with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from maomao.model import Claim, Member, Record, Run, RunRequest, Schedule, Tool, utc_iso
from maomao.store import Store, inline, run_inline
from maomao.store.embedded import EmbeddedStore
from maomao.store.etcd import EtcdStore
from maomao.store.keys import Keys
from tests.support.cli import MAOCTL, MAOMAO

T = TypeVar("T")
R = TypeVar("R", bound=Record)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def now_iso() -> str:
    return utc_iso(datetime.now(UTC))


# -- the store, from the test's side -------------------------------------------------


@dataclass
class StoreSpec:
    """Where the daemons' store is: the ``[store]`` section and a Store for the test."""

    backend: str  # "etcd" or "embedded"
    prefix: str
    endpoints: tuple[str, ...] = ()
    path: Path | None = None
    ttl: int = 4
    timeout: float = 2.0

    def section(self) -> str:
        lines = ["[store]", f"backend = {self.backend}", f"prefix = {self.prefix}", f"ttl = {self.ttl}",
                 f"timeout = {self.timeout:g}"]
        if self.backend == "etcd":
            lines.append("endpoints = " + ", ".join(self.endpoints))
        else:
            assert self.path is not None
            lines.append(f"path = {self.path}")
        return "\n".join(lines) + "\n"

    def open(self) -> Store:
        """A store for synchronous use from the test (offload inline, driven by run_inline)."""
        if self.backend == "etcd":
            return EtcdStore(self.endpoints, timeout=self.timeout, offload=inline)
        assert self.path is not None
        return EmbeddedStore(self.path, offload=inline)


def etcd_spec(endpoints: list[str], prefix: str, ttl: int = 4) -> StoreSpec:
    return StoreSpec("etcd", prefix, endpoints=tuple(endpoints), ttl=ttl)


def embedded_spec(root: Path, ttl: int = 4) -> StoreSpec:
    return StoreSpec("embedded", "/maomao/", path=root / "store" / "store.db", ttl=ttl)


class Records:
    """Synchronous reads and writes of records under one prefix."""

    def __init__(self, spec: StoreSpec, remotes: Path | None = None) -> None:
        self.spec = spec
        self.keys = Keys(spec.prefix)
        self.store = spec.open()
        #: where add_tool makes each tool's bare data remote (None: an unreachable https URL)
        self.remotes = remotes

    def close(self) -> None:
        run_inline(self.store.aclose())

    def put(self, key: str, record: Record, lease: int = 0) -> None:
        run_inline(self.store.put(key, record.to_value(), lease=lease))

    def delete(self, key: str) -> None:
        run_inline(self.store.delete(key))

    def get(self, key: str, kind: type[R]) -> R | None:
        kv = run_inline(self.store.get(key))
        return kind.from_value(kv.value) if kv is not None else None

    def all(self, prefix: str, kind: type[R]) -> dict[str, R]:
        """Every record under ``prefix``, by key."""
        result = run_inline(self.store.range(prefix))
        return {kv.key: kind.from_value(kv.value) for kv in result.kvs}

    # -- the records the daemon tests use

    def data_remote(self, name: str) -> str:
        """A bare git repository for ``name``'s data (made on first use)."""
        if self.remotes is None:
            return "https://git.example.org/data.git"
        path = self.remotes / f"{name}.git"
        if not path.exists():
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
        return str(path)

    def add_tool(self, name: str, command: str, **fields: object) -> Tool:
        fields.setdefault("data_repo", self.data_remote(name))
        fields.setdefault("image", "example.org/test/tool:1")
        fields.setdefault("runtime", "process")
        tool = Tool(
            name=name, author="Test Author", code_repo="https://git.example.org/code.git",
            artefact="test data", command=command, **fields,  # type: ignore[arg-type]
        )
        self.put(self.keys.tool(name), tool)
        return tool

    def schedule(self, name: str, expression: str, created: str | None = None, **fields: object) -> Schedule:
        """Schedule a tool; created now unless ``created`` says otherwise."""
        schedule = Schedule(
            name=name, expression=expression, created=created or now_iso(), **fields  # type: ignore[arg-type]
        )
        self.put(self.keys.schedule(name), schedule)
        return schedule

    def request(self, run_id: str, tool: str, on: str = "any") -> RunRequest:
        request = RunRequest(name=run_id, tool=tool, on=on, created=now_iso(), by="test")
        self.put(self.keys.request(run_id), request)
        return request

    def runs(self, tool: str | None = None) -> list[Run]:
        prefix = self.keys.runs(tool) if tool else self.keys.all_runs
        return list(self.all(prefix, Run).values())

    def claims(self, tool: str | None = None) -> dict[str, Claim]:
        prefix = self.keys.claims_of(tool) if tool else self.keys.claims
        return self.all(prefix, Claim)

    def members(self) -> dict[str, Member]:
        return {m.name: m for m in self.all(self.keys.members, Member).values()}


# -- sd_notify, from systemd's side -------------------------------------------------------


@dataclass
class Datagram:
    """One notify message: when it came and its ``KEY=VALUE`` lines."""

    at: float
    fields: list[tuple[str, str]]

    def has(self, key: str, value: str | None = None) -> bool:
        return any(k == key and (value is None or v == value) for k, v in self.fields)

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)


class NotifySocket:
    """A bound AF_UNIX datagram socket, read like systemd reads ``NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.received: list[Datagram] = []
        #: where :meth:`wait` looks from: past what it returned and what :meth:`mark` passed over
        self.cursor = 0

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)

    def drain(self, wait: float = 0.0) -> list[Datagram]:
        """Read what has arrived (waiting up to ``wait`` for the first); return the new ones."""
        new: list[Datagram] = []
        deadline = time.monotonic() + wait
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if new or remaining <= 0:
                    break
                select.select([self.sock], [], [], remaining)
                continue
            fields = [tuple(line.split("=", 1)) for line in data.decode().split("\n") if "=" in line]
            new.append(Datagram(time.monotonic(), fields))  # type: ignore[arg-type]
        self.received.extend(new)
        return new

    def mark(self) -> None:
        """Read what has arrived and make :meth:`wait` look only at what comes after."""
        self.drain()
        self.cursor = len(self.received)

    def wait(self, key: str, value: str | None = None, timeout: float = 30.0,
             alive: Callable[[], str | None] | None = None) -> Datagram:
        """The next datagram (after the cursor) holding ``key`` (= ``value``); fail after ``timeout``.

        ``alive`` returns a reason to stop waiting early (the daemon exited).
        """
        deadline = time.monotonic() + timeout
        while True:
            self.drain(wait=min(0.2, max(0.0, deadline - time.monotonic())))
            for index in range(self.cursor, len(self.received)):
                if self.received[index].has(key, value):
                    self.cursor = index + 1
                    return self.received[index]
            if alive is not None and (reason := alive()):
                raise AssertionError(f"while waiting for {key}={value or '*'}: {reason}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {key}={value or '*'} within {timeout:g}s")

    def statuses(self) -> list[str]:
        return [v for m in self.received for k, v in m.fields if k == "STATUS"]


# -- daemons -----------------------------------------------------------------------


def daemon_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without maomao's variables, homed in ``home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAOMAO_", "NOTIFY_", "WATCHDOG_")) and k not in ("STATE_DIRECTORY", "XDG_CONFIG_HOME")
    }
    # MAOMAO_LOG=stderr: the tests read a daemon's log from its stderr, even with a journald running
    env.update(
        HOME=str(home), XDG_STATE_HOME=str(home / "state"), LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1",
        MAOMAO_LOG="stderr",
    )
    env.pop("PYTHONWARNINGS", None)
    if extra:
        env.update(extra)
    return env


@dataclass
class Daemon:
    """One ``maomao daemon`` subprocess and everything of its own."""

    name: str
    root: Path
    config_path: Path
    notify: NotifySocket
    process: subprocess.Popen[bytes] | None = None
    daemon_keys: dict[str, str] = field(default_factory=dict)
    #: more environment for the daemon process
    env: dict[str, str] = field(default_factory=dict)

    @property
    def importdir(self) -> Path:
        return self.root / "import"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def stderr_path(self) -> Path:
        return self.root / "stderr.log"

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def exited(self) -> str | None:
        """Why the daemon is not running, or None while it runs."""
        if self.process is None:
            return f"daemon {self.name} was never started"
        code = self.process.poll()
        if code is None:
            return None
        return f"daemon {self.name} exited with {code}; stderr:\n{self.stderr()[-3000:]}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> Datagram:
        return self.notify.wait("READY", "1", timeout, alive=self.exited)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit (SIGKILL if it does not come); the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"daemon {self.name} did not stop within {timeout:g}s of SIGTERM") from None

    def kill(self) -> None:
        """SIGKILL: the daemon dies with no chance to clean up (its children live on)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def write_config(self, store: StoreSpec) -> None:
        daemon = "\n".join(f"{k} = {v}" for k, v in self.daemon_keys.items())
        self.config_path.write_text(
            f"[maomao]\nmember = {self.name}\nimportdir = {self.importdir}\n\n"
            f"{store.section()}\n[daemon]\nstate_dir = {self.state_dir}\n{daemon}\n"
        )


#: [daemon] keys every test daemon gets unless the test says otherwise
DEFAULT_DAEMON_KEYS = {"claim_grace": "1", "shutdown_grace": "10", "kill_grace": "2", "max_parallel": "8"}


class Daemons:
    """Daemons on one store; :meth:`close` ends every one still running."""

    def __init__(self, root: Path, store: StoreSpec) -> None:
        self.root = root
        self.store = store
        self.records = Records(store, root / "remotes")
        # socket paths must fit in sun_path (108 bytes): not under pytest's long tmp_path
        self.sockets = Path(tempfile.mkdtemp(prefix="mao-nfy-", dir="/tmp"))
        self.daemons: dict[str, Daemon] = {}
        self.shared = root / "shared"
        self.shared.mkdir(parents=True, exist_ok=True)

    def make(self, name: str, env: Mapping[str, str] | None = None, **daemon_keys: object) -> Daemon:
        """Set a daemon up (its directories, config file and notify socket) without starting it.

        ``daemon_keys`` go to its ``[daemon]`` section, ``env`` to its environment.
        """
        number = len(self.daemons)
        base = self.root / f"{name}-{number}"
        base.mkdir(parents=True)
        (base / "home").mkdir()
        keys = {**DEFAULT_DAEMON_KEYS, **{k: str(v) for k, v in daemon_keys.items()}}
        notify = NotifySocket(self.sockets / f"{number}.sock")
        daemon = Daemon(name, base, base / "config.ini", notify, daemon_keys=keys, env=dict(env or {}))
        daemon.write_config(self.store)
        self.daemons[name if name not in self.daemons else f"{name}#{number}"] = daemon
        return daemon

    def launch(self, daemon: Daemon) -> Daemon:
        env = daemon_env(daemon.root / "home", {**daemon.env, "NOTIFY_SOCKET": str(daemon.notify.path)})
        with daemon.stderr_path.open("ab") as stderr:
            daemon.process = subprocess.Popen(
                [str(MAOMAO), "daemon", "--config", str(daemon.config_path)],
                env=env, cwd=daemon.root, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
            )
        return daemon

    def start(
        self, name: str, *, ready: bool = True, timeout: float = 30.0, env: Mapping[str, str] | None = None,
        **daemon_keys: object,
    ) -> Daemon:
        daemon = self.launch(self.make(name, env, **daemon_keys))
        if ready:
            daemon.wait_ready(timeout)
        return daemon

    def start_many(
        self, names: list[str], timeout: float = 60.0, env: Mapping[str, str] | None = None, **daemon_keys: object
    ) -> list[Daemon]:
        """Start several at once, then wait for each one's READY=1."""
        started = [self.launch(self.make(name, env, **daemon_keys)) for name in names]
        for daemon in started:
            daemon.wait_ready(timeout)
        return started

    def ctl(
        self, *args: str, timeout: float = 60.0, env: Mapping[str, str] | None = None, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``maoctl ARGS --config FILE`` on the daemons' store, from a home of its own (plus ``env``).

        ``config``: a daemon's config file instead (ctl on that member's machine: its importdir, its name).
        """
        home = self.root / "ctl"
        if config is None:
            config = home / "config.ini"
        if not config.exists():
            home.mkdir(parents=True, exist_ok=True)
            config.write_text(self.store.section())
        home.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [str(MAOCTL), *args, "--config", str(config)], env=daemon_env(home, env), cwd=home,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )

    def __iter__(self) -> Iterator[Daemon]:
        return iter(self.daemons.values())

    def logs(self) -> str:
        """Every daemon's stderr (the tail of each), for a failure report."""
        parts = []
        for key, daemon in self.daemons.items():
            state = daemon.exited() or "running"
            parts.append(f"----- daemon {key} ({state.splitlines()[0]}) -----\n{daemon.stderr()[-6000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for daemon in self.daemons.values():
            if daemon.running:
                assert daemon.process is not None
                daemon.process.kill()
                daemon.process.wait(10)
            daemon.notify.close()
        kill_tools_under(self.root)
        self.records.close()
        shutil.rmtree(self.sockets, ignore_errors=True)


def kill_tools_under(root: Path) -> None:
    """SIGKILL what tools left running in ``root`` (a daemon killed with -9 orphans its runs)."""
    prefix = str(root.resolve()) + os.sep
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if (cwd + os.sep).startswith(prefix):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
