"""The CLI run inside the test's own process, on an embedded store of the test's.

``maomao.cli.main`` is called with the argv a shell would give it; stdout is a
text stream over a byte buffer with strict UTF-8 (as the real entry point
runs with ``PYTHONIOENCODING=utf-8``: a character that cannot be encoded must
show as a failure, not be escaped), stderr the same with
``backslashreplace``, as Python's stderr always has, and the ``SystemExit`` it
ends with is caught.  Every run asserts the rule that holds for every
command: no traceback and no "internal error", ever.

Used by the hostile-input tests: a subprocess start costs a quarter of a
second, an in-process run a few milliseconds.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from maomao.cli import main
from maomao.store import inline, run_inline
from maomao.store.embedded import EmbeddedStore
from tests.support.cli import Result, Snapshot, embedded_contents

#: nouns whose verbs take ``--config`` after the verb (``status`` takes it at once)
NOUNS = ("tool", "dataset", "member", "spikes")


def _stream(errors: str = "strict") -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, newline="\n")


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("utf-8", "backslashreplace")


@contextmanager
def clean_environment(home: Path) -> Iterator[None]:
    """No ``MAOMAO_*`` variable of the caller's; HOME and the working directory in ``home``."""
    saved = dict(os.environ)
    cwd = os.getcwd()
    for key in list(os.environ):
        if key.startswith("MAOMAO_") or key in ("STATE_DIRECTORY", "XDG_CONFIG_HOME", "NOTIFY_SOCKET"):
            del os.environ[key]
    os.environ["HOME"] = str(home)
    os.environ["XDG_STATE_HOME"] = str(home / "state")
    os.chdir(home)
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


def call(argv: Sequence[str]) -> Result:
    """``maomao ARGV`` in this process: its exit status and what it wrote."""
    out, err = _stream(), _stream("backslashreplace")  # Python's stderr always escapes
    saved = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr = out, err
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    code: object = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved
    if code is None:
        code = 0
    assert isinstance(code, int), f"{argv!r} exited with {code!r}"
    result = Result(list(argv), code, _text(out), _text(err))
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, str(result)
    assert "internal error" not in result.stderr, str(result)
    return result


@dataclass
class Embedded:
    """An embedded store in ``root`` and a config file naming it (and an importdir beside it)."""

    root: Path

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "store.db"
        self.importdir = self.root / "import"
        self.config = self.root / "config.ini"
        self.config.write_text(
            f"[maomao]\nmember = fuzz\nimportdir = {self.importdir}\n\n"
            f"[store]\nbackend = embedded\npath = {self.db}\n\n"
            # no container engine: a --pin or a container run fails at once, asking nothing of anyone
            f"[runner]\ndocker_host = unix://{self.root}/no-engine.sock\n"
        )
        self.prefix = "/maomao/"
        self._contents = embedded_contents(self.db)

    def argv(self, args: Sequence[str]) -> list[str]:
        """``ctl NOUN VERB --config FILE REST`` (``ctl status --config FILE REST``)."""
        words = list(args)
        if words and words[0] in NOUNS and len(words) >= 2:
            return ["ctl", *words[:2], "--config", str(self.config), *words[2:]]
        if words and words[0] == "status":
            return ["ctl", "status", "--config", str(self.config), *words[1:]]
        return ["ctl", *words]

    def __call__(self, *args: str) -> Result:
        with clean_environment(self.home):
            return call(self.argv(args))

    def contents(self) -> Snapshot:
        return self._contents()

    def revision(self) -> int:
        store = EmbeddedStore(self.db, offload=inline)
        try:
            return run_inline(store.range("/")).revision
        finally:
            run_inline(store.aclose())

    def put_raw(self, key: str, value: bytes) -> None:
        store = EmbeddedStore(self.db, offload=inline)
        try:
            run_inline(store.put(key, value))
        finally:
            run_inline(store.aclose())

    def put_json(self, key: str, value: object) -> None:
        self.put_raw(key, json.dumps(value).encode())

    def delete(self, key: str) -> None:
        store = EmbeddedStore(self.db, offload=inline)
        try:
            run_inline(store.delete(key))
        finally:
            run_inline(store.aclose())
