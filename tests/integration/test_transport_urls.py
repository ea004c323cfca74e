"""Repository URLs that try another transport, or smuggle an option into one.

git runs commands for some URLs (``ext::sh -c ...``, ``--upload-pack=...``
read as an option, ``ssh://-oProxyCommand=...`` read as an option of ssh,
``fd::17``, ``transport::...`` remote helpers).  maomao takes only
``https://``, ``http://``, ``ssh://``, ``user@host:path``, ``file://`` and
absolute paths, and refuses anything else:

* at registration: ``tool add`` (data_repo and code_repo), ``tool add
  --replace`` (the way a tool is edited), ``dataset add`` and ``dataset add
  --replace``: exit 2, one ``error:`` line, nothing written;
* after registration, for records written straight into the store past that
  validation: ``dataset clone`` and ``tool run --here`` exit 1 with one line
  naming the key, and nothing is executed; a git data repository or clone
  given such a URL (below the records) refuses it before any transport runs.

Each URL's payload would create a marker file of the test's: it never appears.
(The daemon's side, a real daemon meeting such a tool record, is in
tests/daemon/test_corrupt_records.py.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from maomao.errors import MaomaoError
from maomao.model import Dataset, Tool, check_repo_url
from maomao.store.keys import Keys
from tests.support.cli import MAOCTL, clean_env, run
from tests.support.inprocess import Embedded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEYS = Keys("/maomao/")
MARKER = Path(f"/tmp/pwned-{uuid.uuid4().hex}")


def hostile_urls(marker: Path) -> list[str]:
    """URLs that would run ``touch marker`` (or pass an option) if a transport took them."""
    return [
        f"ext::sh -c touch% {marker}",
        f"ext::sh -c 'touch {marker}'",
        f"--upload-pack=touch {marker}",
        f"--upload-pack=touch%20{marker}",
        f"-u touch {marker}",
        f"-utouch {marker}",
        "fd::17",
        "fd::17/x",
        f"transport::touch {marker}",
        f"ssh://-oProxyCommand=touch%20{marker}/x",
        f"ssh://-oProxyCommand=touch {marker}/x",
        f"ssh://-oProxyCommand=touch%20{marker}@h.example.org/x",  # the user part is ssh's argument too
        "ssh://%2DoProxyCommand=x@h.example.org/x",
        f"git@-oProxyCommand=touch {marker}:y",
        "git@h.example.org:--upload-pack=x",  # a path that is an option on the remote side
        "-oProxyCommand=x@h:y",
        f"https://h.example.org/x\n--upload-pack=touch {marker}",
        f"/srv/x\ntouch {marker}",
        f"file:///srv/x\x00{marker}",
        "ssh://h.example.org/x%0a--upload-pack=y",
        "https://h.example.org/x%00",
        "file://evil.example.org/srv/x",
        "file://-oProxyCommand=x/srv/x",
        "file:srv/x",
        "git+ssh://h.example.org/x",
        "ssh://[-oProxyCommand=x]/y",
        "relative/path",
        "",
    ]


URLS = hostile_urls(MARKER)
IDS = [f"url{i}" for i in range(len(URLS))]


@pytest.fixture(autouse=True)
def nothing_ran() -> Iterator[None]:
    yield
    assert not MARKER.exists(), f"{MARKER} was created: a URL's command ran"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Embedded:
    embedded = Embedded(tmp_path_factory.mktemp("transport"))
    embedded("tool", "add", "kept", "Ada", "busybox", "/srv/git/kept.git", "/srv/git/code.git", "x").ok()
    embedded("dataset", "add", "kept", "/srv/git/kept.git").ok()
    return embedded


def test_the_model_refuses_every_one() -> None:
    for url in URLS:
        with pytest.raises(MaomaoError):
            check_repo_url(url)


@pytest.mark.parametrize("url", URLS, ids=IDS)
def test_registration_refuses_it(store: Embedded, url: str) -> None:
    before = store.contents()
    commands = [
        ["tool", "add", "new", "Ada", "busybox", url, "/srv/git/code.git", "x"],
        ["tool", "add", "new", "Ada", "busybox", "/srv/git/data.git", url, "x"],
        ["tool", "add", "kept", "Ada", "busybox", url, "/srv/git/code.git", "x", "--replace"],
        ["tool", "add", "--replace", "kept", "Ada", "busybox", "--", url, "/srv/git/code.git", "x"],
        ["dataset", "add", "new", url],
        ["dataset", "add", "new", "--", url],
        ["dataset", "add", "kept", url, "--replace"],
    ]
    for args in commands:
        line = store(*args).error(2)
        if "--" in args or not url.startswith("-"):  # else cyclopts refuses it first, as an unknown option
            assert "repo" in line or "url" in line, line
    assert store.contents() == before


def test_registration_refuses_it_through_the_real_entry_point(store: Embedded) -> None:
    env = clean_env(store.home)
    before = store.contents()
    for url in (URLS[0], URLS[2], URLS[11], URLS[13]):
        for args in (
            ["tool", "add", "--config", str(store.config), "new", "Ada", "busybox", "--", url, "/srv/c.git", "x"],
            ["dataset", "add", "--config", str(store.config), "--", "new", url],
        ):
            run([MAOCTL, *args], env=env, cwd=store.home).error(2)
    assert store.contents() == before


def raw_tool(name: str, url: str) -> bytes:
    fields = json.loads(Tool(name, "Ada", "busybox", "/srv/git/ok.git", "/srv/git/code.git", "x",
                             command=f"touch {MARKER}", runtime="process").to_value())
    return json.dumps({**fields, "data_repo": url}).encode()


@pytest.mark.parametrize("url", URLS, ids=IDS)
def test_a_hand_written_record_is_not_cloned_nor_run(store: Embedded, url: str) -> None:
    """``dataset clone`` and ``tool run --here`` of records written past ctl's validation: exit 1 naming
    the key; nothing ran, no clone was made."""
    dataset_key, tool_key = KEYS.dataset("planted"), KEYS.tool("planted")
    store.put_raw(dataset_key, json.dumps({"v": 1, "name": "planted", "url": url}).encode())
    store.put_raw(tool_key, raw_tool("planted", url))
    try:
        before = store.contents()
        line = store("dataset", "clone", "planted").error(1)
        assert dataset_key in line and "url" in line, line
        line = store("tool", "run", "planted", "--here").error(1)
        assert tool_key in line and "data_repo" in line, line
        assert store.contents() == before
        assert not (store.importdir / "planted").exists()
    finally:
        store.delete(dataset_key)
        store.delete(tool_key)


def test_below_the_records_a_data_repository_refuses_it_too(tmp_path: Path) -> None:
    """Defence in depth: gitdata's DataRepo and clone_dataset check the URL again, before any transport runs,
    for a record that somehow skipped its own validation."""
    from maomao.clones import clone_dataset
    from maomao.config import load_config
    from maomao.gitdata import DataRepo

    config_path = tmp_path / "config.ini"
    config_path.write_text(f"[maomao]\nimportdir = {tmp_path}/import\n[store]\nbackend = embedded\n"
                           f"path = {tmp_path}/store.db\n")
    config = load_config(config_path)
    for i, url in enumerate(URLS):
        with pytest.raises(MaomaoError):
            DataRepo(tmp_path / f"repo{i}", url, author_name="t", author_email="t@example.org").ensure()
        smuggled = object.__new__(Dataset)
        for field, value in (("name", f"d{i}"), ("url", url), ("description", "")):
            object.__setattr__(smuggled, field, value)
        with pytest.raises(MaomaoError):
            clone_dataset(smuggled, config)
        assert not (tmp_path / f"repo{i}").exists() and not (tmp_path / "import" / f"d{i}").exists()
