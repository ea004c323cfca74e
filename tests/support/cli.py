"""Running the real ``maomao`` / ``maoctl`` entry points as subprocesses.

Every run gets a clean environment: ``HOME`` and ``XDG_STATE_HOME`` point
into the test's temporary directory, no ``MAOMAO_*`` variable leaks in from
the caller, and the working directory is the temporary directory too (so a
``./config.ini`` of the checkout is never picked up).  Every run asserts the
one rule that holds for every command: no traceback, ever.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from maomao.store import inline, run_inline
from maomao.store.embedded import EmbeddedStore

BIN = Path(sys.prefix) / "bin"
MAOMAO = BIN / "maomao"
MAOCTL = BIN / "maoctl"
PYTHON = BIN / "python"

#: the ctl commands of this issue, as (noun, verb)
COMMANDS = [(noun, verb) for noun in ("tool", "dataset") for verb in ("get", "add", "remove")]


@dataclass(frozen=True)
class Result:
    """What one run of the CLI did."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"{self.argv!r} -> {self.returncode}\nstdout: {self.stdout!r}\nstderr: {self.stderr!r}"

    def ok(self) -> Result:
        """Assert it succeeded; return itself."""
        assert self.returncode == 0, str(self)
        return self

    def error(self, code: int = 2) -> str:
        """Assert it failed with ``code`` and exactly one ``error: `` line; return that line."""
        assert self.returncode == code, str(self)
        lines = self.stderr.splitlines()
        assert len(lines) == 1 and self.stderr.endswith("\n"), str(self)
        assert lines[0].startswith("error: "), str(self)
        assert len(lines[0]) > len("error: ") + 5, str(self)
        return lines[0]

    def json(self) -> list[dict[str, object]]:
        value = json.loads(self.ok().stdout)
        assert isinstance(value, list), str(self)
        return value


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without maomao's variables, homed in ``home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MAOMAO_") and k not in ("STATE_DIRECTORY", "XDG_CONFIG_HOME", "NOTIFY_SOCKET")
    }
    env.update(
        HOME=str(home),
        XDG_STATE_HOME=str(home / "state"),
        LANG="C.UTF-8",
        LC_ALL="C.UTF-8",
        PYTHONIOENCODING="utf-8",  # strict: an unencodable character must show, not be escaped
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("PYTHONWARNINGS", None)
    if extra:
        env.update(extra)
    return env


def run(argv: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str], cwd: Path, timeout: float = 60) -> Result:
    """Run one command; assert it printed no traceback."""
    args = [os.fspath(a) for a in argv]
    proc = subprocess.run(
        args, env=dict(env), cwd=cwd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    result = Result(
        args,
        proc.returncode,
        proc.stdout.decode("utf-8", "backslashreplace"),
        proc.stderr.decode("utf-8", "backslashreplace"),
    )
    assert "Traceback" not in result.stderr, str(result)
    assert "Traceback" not in result.stdout, str(result)
    return result


def start(argv: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start one command without waiting (for races)."""
    return subprocess.Popen(
        [os.fspath(a) for a in argv],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> Result:
    out, err = proc.communicate(timeout=timeout)
    assert isinstance(proc.args, list)
    result = Result(
        [str(a) for a in proc.args],
        proc.returncode,
        out.decode("utf-8", "backslashreplace"),
        err.decode("utf-8", "backslashreplace"),
    )
    assert "Traceback" not in result.stderr, str(result)
    return result


def run_many(
    argvs: Sequence[Sequence[str | os.PathLike[str]]], *, env: Mapping[str, str], cwd: Path, width: int = 4
) -> list[Result]:
    """Run independent commands a few at a time (they are CPU-bound start-ups); results in order."""
    results: list[Result] = []
    for i in range(0, len(argvs), width):
        procs = [start(argv, env=env, cwd=cwd) for argv in argvs[i : i + width]]
        results.extend(finish(proc) for proc in procs)
    return results


Snapshot = dict[str, tuple[bytes, int]]


def embedded_contents(path: Path) -> Callable[[], Snapshot]:
    """Every key of an embedded store file with its value and mod revision."""

    def read() -> Snapshot:
        store = EmbeddedStore(path, offload=inline)
        try:
            result = run_inline(store.range("/"))
        finally:
            run_inline(store.aclose())
        return {kv.key: (kv.value, kv.mod_revision) for kv in result.kvs}

    return read


def embedded_put(path: Path) -> Callable[[str, bytes], None]:
    def put(key: str, value: bytes) -> None:
        store = EmbeddedStore(path, offload=inline)
        try:
            run_inline(store.put(key, value))
        finally:
            run_inline(store.aclose())

    return put


def etcd_contents(etcdctl: Callable[..., str], prefix: str) -> Callable[[], Snapshot]:
    """Every key under ``prefix`` in etcd, read with etcdctl (not with maomao's code)."""

    def read() -> Snapshot:
        answer = json.loads(etcdctl("get", "--prefix", prefix, "-w", "json"))
        return {
            base64.b64decode(kv["key"]).decode(): (
                base64.b64decode(kv.get("value", "")),
                int(kv["mod_revision"]),
            )
            for kv in answer.get("kvs", [])
        }

    return read


@dataclass
class Ctl:
    """One configured CLI: which store, how the config is passed, where it runs."""

    kind: str
    home: Path
    config: Path
    #: what the store holds, read without the CLI
    contents: Callable[[], Snapshot]
    #: write a raw value under a key, without the CLI (for records it could not write)
    put_raw: Callable[[str, bytes], None]
    #: pass the config as ``--config`` (else through ``$MAOMAO_CONFIG``)
    flag: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    #: the store key prefix the records live under
    prefix: str = "/maomao/"

    @property
    def env(self) -> dict[str, str]:
        extra = dict(self.extra_env)
        if not self.flag:
            extra["MAOMAO_CONFIG"] = str(self.config)
        return clean_env(self.home, extra)

    def argv(self, args: Sequence[str], entry: str = "maoctl") -> list[str]:
        words = list(args)
        if not self.flag or len(words) < 2 or words[0] not in ("tool", "dataset", "spikes"):
            tail = words
        else:
            tail = [*words[:2], "--config", str(self.config), *words[2:]]
        if entry == "maoctl":
            return [str(MAOCTL), *tail]
        return [str(MAOMAO), "ctl", *tail]

    def __call__(self, *args: str, entry: str = "maoctl") -> Result:
        return run(self.argv(args, entry), env=self.env, cwd=self.home)

    def many(self, *commands: tuple[Sequence[str], str]) -> list[Result]:
        """Run independent commands, each ``(args, entry)``, a few at a time."""
        return run_many([self.argv(args, entry) for args, entry in commands], env=self.env, cwd=self.home)

    def records(self, kind: str) -> dict[str, dict[str, object]]:
        """The stored records of one kind (``tools``/``datasets``) as JSON objects."""
        prefix = f"{self.prefix}{kind}/"
        found = {}
        for key, (value, _rev) in self.contents().items():
            if key.startswith(prefix):
                found[key[len(prefix) :]] = json.loads(value)
        return found


def embedded_ctl(tmp_path: Path, *, flag: bool = True) -> Ctl:
    """The CLI on an embedded store in ``tmp_path`` (config passed with ``--config``, or via
    ``$MAOMAO_CONFIG`` when ``flag`` is false)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = tmp_path / "embedded.ini"
    config.write_text(f"[store]\nbackend = embedded\npath = {tmp_path}/store.db\n")
    db = tmp_path / "store.db"
    return Ctl("embedded", home, config, embedded_contents(db), embedded_put(db), flag=flag)
