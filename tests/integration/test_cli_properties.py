"""Bad input, generated: the real CLI against an embedded store, compared with the model.

Hypothesis generates names, images, repository URLs, free text and ``--env``
pairs, from valid-looking shapes and from arbitrary text (no NUL: argv
cannot hold one).  For every command line the real ``maoctl`` subprocess
must: never print a traceback; exit 0 or 2; on 2 print exactly one line
``error: ...`` and leave the store as it was; and agree with the model's own
validation functions called in-process, down to the message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from maomao.errors import ValidationError
from maomao.model import Dataset, Tool, check_image, check_name, check_repo_url, check_text, parse_env_pairs
from maomao.store import inline, run_inline
from maomao.store.embedded import EmbeddedStore
from tests.support.cli import MAOCTL, Result, Snapshot, clean_env, embedded_contents, embedded_put, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROPERTY = settings(
    max_examples=35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies -------------------------------------------------------------------------------

#: any character argv can carry (no NUL, no lone surrogate: they are not text)
CHAR = st.characters(codec="utf-8", exclude_characters="\x00")
ARBITRARY = st.text(CHAR, max_size=30)


def shaped(regex: str) -> st.SearchStrategy[str]:
    return st.from_regex(regex, fullmatch=True, alphabet=CHAR)


NAMES = st.one_of(
    shaped(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,70}"),
    shaped(r"[.-][A-Za-z0-9._-]{0,5}"),
    ARBITRARY,
    st.sampled_from(["-x", "--help", "--", "-", "", ".", "..", "a/b", "../a", "x" * 64, "x" * 65, "ab\n"]),
)
IMAGES = st.one_of(
    shaped(
        r"(([a-zA-Z0-9-]{1,8}\.)?[a-zA-Z0-9-]{1,8}(:[0-9]{1,5})?/)?[a-z0-9]{1,6}([._-]{1,2}[a-z0-9]{1,4}){0,2}"
        r"(/[a-z0-9]{1,5}){0,2}(:[\w][\w.-]{0,8})?(@sha256:[0-9a-f]{64})?"
    ),
    shaped(r"[A-Za-z0-9._/:@-]{0,25}"),
    ARBITRARY,
    st.sampled_from(["busybox", "Busybox", ":tag", "a/", "a b", "", "busybox:", "a@sha256:abc", "/a"]),
)
URLS = st.one_of(
    shaped(r"(https?|ssh|file|ftp|git|ext)://[^\x00]{0,20}"),
    shaped(r"/[^\x00]{0,20}"),
    shaped(r"[a-z_-]{1,5}@[a-zA-Z0-9.-]{0,8}:[^\x00]{0,12}"),
    ARBITRARY,
    st.sampled_from(
        [
            "ext::sh -c touch% /tmp/x",
            "-oProxyCommand=x",
            "ssh://-oProxyCommand=x/y",
            "ssh://[::1]/r",
            "relative/path",
            "./rel",
            "file://host/x",
            "file:///srv/x",
            "https://",
            "https://h:99999/x",
            "git@h:-x",
        ]
    ),
)
TEXT = st.one_of(shaped(r"[A-Za-z][A-Za-z ,.]{0,20}"), ARBITRARY, st.just(""))
ENV_PAIRS = st.lists(
    st.one_of(
        shaped(r"[A-Za-z_][A-Za-z0-9_]{0,8}=[^\x00]{0,10}"),
        ARBITRARY,
        st.sampled_from(["MAOMAO_X=1", "BAD-KEY=1", "=x", "NOEQUALS", "A=1", "A=", "1A=x", "A=b=c"]),
    ),
    max_size=3,
)

#: values of the shape each field takes, most of them valid
VALID_NAME = shaped(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}")
VALID_IMAGE = shaped(
    r"([a-z0-9-]{1,8}\.[a-z]{2,3}(:[0-9]{2,4})?/)?[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,8})?"
)
VALID_URL = st.one_of(
    shaped(r"https?://[a-z0-9-]{1,8}(\.[a-z]{2,3})?(:[0-9]{2,4})?/[A-Za-z0-9._/~-]{0,12}"),
    shaped(r"/[A-Za-z0-9._/-]{0,12}"),
    shaped(r"git@[a-z0-9]{1,8}\.[a-z]{2,3}:[a-z0-9/._-]{1,10}"),
    shaped(r"ssh://([a-z]{1,5}@)?[a-z0-9.]{1,8}(:[0-9]{2,4})?/[a-z/.]{0,8}"),
    shaped(r"file:///[a-z/.]{0,10}"),
)
VALID_TEXT = shaped(r"[A-Za-z\u00c0-\u024f][A-Za-z\u00c0-\u024f ,.'()-]{0,20}")
VALID_ENV = st.lists(shaped(r"[A-Za-z_][A-Za-z0-9_]{0,8}=[^\x00]{0,10}"), max_size=2)

TOOL_FIELDS = {
    "name": (VALID_NAME, NAMES),
    "author": (VALID_TEXT, TEXT),
    "image": (VALID_IMAGE, IMAGES),
    "data": (VALID_URL, URLS),
    "code": (VALID_URL, URLS),
    "artefact": (VALID_TEXT, TEXT),
    "env": (VALID_ENV, ENV_PAIRS),
}
DATASET_FIELDS = {"name": (VALID_NAME, NAMES), "url": (VALID_URL, URLS), "description": (VALID_TEXT, TEXT)}


@st.composite
def arguments(draw: st.DrawFn, fields: dict[str, tuple[st.SearchStrategy[Any], ...]]) -> dict[str, Any]:
    """Every field of a valid shape, but for up to two drawn from anything."""
    loose = draw(st.sets(st.sampled_from(sorted(fields)), max_size=2))
    return {key: draw(fields[key][key in loose]) for key in fields}


# -- the CLI under test -----------------------------------------------------------------------


@dataclass
class Cli:
    home: Path
    config: Path
    contents: Callable[[], Snapshot]
    put: Callable[[str, bytes], None]
    path: Path

    def forget(self, key: str) -> None:
        """Delete ``key`` without the CLI, so that a name drawn again can be added again."""
        store = EmbeddedStore(self.path, offload=inline)
        try:
            run_inline(store.delete(key))
        finally:
            run_inline(store.aclose())

    def __call__(self, *words: str) -> Result:
        """``maoctl NOUN VERB --config C [options] -- [positionals]`` (words[2:] as given)."""
        return run([MAOCTL, *words[:2], "--config", self.config, *words[2:]], env=clean_env(self.home), cwd=self.home)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    root = tmp_path_factory.mktemp("cli-properties")
    (root / "home").mkdir()
    config = root / "config.ini"
    config.write_text(f"[store]\nbackend = embedded\npath = {root}/store.db\n")
    db = root / "store.db"
    return Cli(root / "home", config, embedded_contents(db), embedded_put(db), db)


def one_line(message: str) -> str:
    return " ".join(message.split())


def verdict(*checks: Callable[[], object]) -> str | None:
    """The model's verdict, in the order the CLI checks: ``None`` or the first error message."""
    try:
        for check in checks:
            check()
    except ValidationError as exc:
        return str(exc)
    return None


def check_outcome(result: Result, before: Snapshot, after: Snapshot, expected_error: str | None) -> None:
    """The rules every generated command line must keep."""
    event(f"exit {result.returncode}")
    assert result.returncode in (0, 2), str(result)
    if result.returncode == 2:
        assert result.stdout == "", str(result)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and result.stderr.endswith("\n"), str(result)
        assert after == before, f"{result}\nthe store changed on a failed command"
    if expected_error is None:
        assert result.returncode == 0, f"{result}\nthe model accepts this"
    else:
        assert result.stderr == f"error: {one_line(expected_error)}\n", f"{result}\nthe model says {expected_error!r}"


# -- properties -------------------------------------------------------------------------------


def _tool_add(
    cli: Cli, name: str, author: str, image: str, data: str, code: str, artefact: str, env: list[str], fresh: bool
) -> None:
    key = f"/maomao/tools/{name}"
    if fresh:
        cli.forget(key)
    before = cli.contents()
    expected = verdict(
        lambda: parse_env_pairs(env),
        lambda: check_name(name, "tool name"),
        lambda: check_text(author, "author"),
        lambda: check_image(image),
        lambda: check_repo_url(data, "data_repo"),
        lambda: check_repo_url(code, "code_repo"),
        lambda: check_text(artefact, "artefact"),
    )
    if expected is None and key in before:
        expected = f"tool {name!r} exists; use --replace to overwrite it"
    options = [f"--env={pair}" for pair in env]
    result = cli("tool", "add", *options, "--", name, author, image, data, code, artefact)
    after = cli.contents()
    check_outcome(result, before, after, expected)
    if result.returncode == 0:
        assert result.stdout == f"tool {name} added\n"
        tool = Tool(name, author, image, data, code, artefact, env=parse_env_pairs(env))
        assert Tool.from_value(after[key][0]) == tool
        assert {k: v for k, v in after.items() if k != key} == before


@settings(PROPERTY, max_examples=40)
@given(args=arguments(TOOL_FIELDS), fresh=st.booleans())
def test_tool_add(cli: Cli, args: dict[str, Any], fresh: bool) -> None:
    _tool_add(cli, **args, fresh=fresh)


@settings(PROPERTY, max_examples=30)
@given(
    name=ARBITRARY,
    author=ARBITRARY,
    image=ARBITRARY,
    data=ARBITRARY,
    code=ARBITRARY,
    artefact=ARBITRARY,
    env=st.lists(ARBITRARY, max_size=2),
)
def test_tool_add_arbitrary_text(cli: Cli, name: str, author: str, image: str, data: str, code: str,
                                 artefact: str, env: list[str]) -> None:  # fmt: skip
    _tool_add(cli, name, author, image, data, code, artefact, env, fresh=False)


@settings(PROPERTY, max_examples=30)
@given(name=VALID_NAME, env=st.one_of(ENV_PAIRS, VALID_ENV))
def test_tool_add_env_pairs(cli: Cli, name: str, env: list[str]) -> None:
    _tool_add(cli, name, "Ada", "busybox:1.36", "/srv/git/data", "https://example.org/code.git", "pages", env, True)


@PROPERTY
@given(args=arguments(DATASET_FIELDS), fresh=st.booleans())
def test_dataset_add(cli: Cli, args: dict[str, Any], fresh: bool) -> None:
    name, url, description = args["name"], args["url"], args["description"]
    key = f"/maomao/datasets/{name}"
    if fresh:
        cli.forget(key)
    before = cli.contents()
    expected = verdict(
        lambda: check_name(name, "dataset name"),
        lambda: check_repo_url(url, "url"),
        lambda: check_text(description, "description", limit=1024, empty=True),
    )
    if expected is None and key in before:
        expected = f"dataset {name!r} exists; use --replace to overwrite it"
    result = cli("dataset", "add", f"--description={description}", "--", name, url)
    after = cli.contents()
    check_outcome(result, before, after, expected)
    if result.returncode == 0:
        assert result.stdout == f"dataset {name} added\n"
        assert Dataset.from_value(after[key][0]) == Dataset(name, url, description)


@settings(PROPERTY, max_examples=25)
@given(name=NAMES, exists=st.booleans())
def test_dataset_remove(cli: Cli, name: str, exists: bool) -> None:
    key = f"/maomao/datasets/{name}"
    expected = verdict(lambda: check_name(name, "dataset name"))
    if exists and expected is None:
        cli.put(key, Dataset(name, "/srv/git/d").to_value())
    before = cli.contents()
    if expected is None and key not in before:
        expected = f"no dataset named {name!r}"
    result = cli("dataset", "remove", "--", name)
    after = cli.contents()
    check_outcome(result, before, after, expected)
    if result.returncode == 0:
        assert key not in after and {**after, key: before[key]} == before
