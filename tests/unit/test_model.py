"""Records and the validation of every field they hold."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maomao.errors import MaomaoError, UsageError, ValidationError
from maomao.model import (
    NAME_RULE,
    SCHEMA_VERSION,
    Dataset,
    Limits,
    Tool,
    check_env,
    check_image,
    check_name,
    check_repo_url,
    check_text,
    parse_env_pairs,
    valid_name,
)

pytestmark = pytest.mark.timeout(60)

HEX64 = "0123456789abcdef" * 4


def tool(**changes: object) -> Tool:
    fields: dict[str, object] = {
        "name": "crawler",
        "author": "Ada Lovelace",
        "image": "ghcr.io/lab/crawler:1.2",
        "data_repo": "https://git.example.org/lab/data.git",
        "code_repo": "git@git.example.org:lab/crawler.git",
        "artefact": "web pages",
    }
    fields.update(changes)
    return Tool(**fields)  # type: ignore[arg-type]


# -- names ----------------------------------------------------------------------------------

GOOD_NAMES = ["a", "A", "0", "_x", "tool-1", "tool_1", "tool.v2", "a..b", "a-", "x" * 64, "Crawler.2024_v-1"]
BAD_NAMES = ["", ".a", "-a", ".", "..", "a/b", "a b", "a:b", "x" * 65, "ä", "a\n", "a\x00", "a@b", "a+b", "\uff41"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names(name: str) -> None:
    assert valid_name(name)
    assert check_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(name: str) -> None:
    assert not valid_name(name)
    with pytest.raises(ValidationError) as caught:
        check_name(name, "tool name")
    assert str(caught.value) == f"tool name {name!r} is not allowed: {NAME_RULE}"
    assert caught.value.exit_code == 2


@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", fullmatch=True))
def test_every_name_of_the_rule_is_valid(name: str) -> None:
    assert valid_name(name)


@given(st.text(max_size=70))
def test_name_rule_as_stated(name: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    expected = 1 <= len(name) <= 64 and set(name) <= allowed and name[0] not in ".-"
    assert valid_name(name) == expected


# -- images ---------------------------------------------------------------------------------

GOOD_IMAGES = [
    "busybox",
    "busybox:1.36",
    "busybox:latest",
    "library/busybox",
    "ghcr.io/org/tool:v1",
    "ghcr.io/org/sub/tool:v1.2.3-rc_1",
    "localhost/a",
    "localhost:5000/a/b",
    "registry.example.org:443/team/tool",
    "[::1]:5000/a",
    "a@sha256:" + HEX64,
    "ghcr.io/org/tool:v1@sha256:" + HEX64,
    "a_b/c__d/e-f/g--h/i.j",
    "a:" + "t" * 128,
]
BAD_IMAGES = [
    "",
    "Busybox",
    "ghcr.io/Org/tool",
    "org/Tool:1",
    ":tag",
    "busybox:",
    "busybox :1",
    "busy box",
    " busybox",
    "busybox\n",
    "a/",
    "/a",
    "a//b",
    "a:b:c",
    "a@sha256:abc",
    "a@" + HEX64,
    "a:" + "t" * 129,
    "a:-tag",
    "a/-b",
    "a_/b",
    "a___b",
    "a" * 256,
    "\uff42usybox",
]


@pytest.mark.parametrize("image", GOOD_IMAGES)
def test_good_images(image: str) -> None:
    assert check_image(image) == image


@pytest.mark.parametrize("image", BAD_IMAGES)
def test_bad_images(image: str) -> None:
    with pytest.raises(ValidationError, match=r"^image .* is not a Docker image reference"):
        check_image(image)


# -- repository URLs --------------------------------------------------------------------------

GOOD_URLS = [
    "https://git.example.org/lab/data.git",
    "http://10.0.0.1:3000/lab/data",
    "https://user@git.example.org/lab/data.git",
    "ssh://git@git.example.org:2222/lab/data.git",
    "ssh://git.example.org/lab/data",
    "ssh://[::1]/r",
    "git@git.example.org:lab/data.git",
    "deploy_1@host:path/to/repo",
    "file:///srv/git/data.git",
    "file://localhost/srv/git/data.git",
    "/srv/git/data.git",
    "/",
]
BAD_URLS = [
    "",
    "ext::sh -c touch% /tmp/pwned",
    "ext::sh",
    "-oProxyCommand=x",
    "--upload-pack=touch /tmp/x",
    "ssh://-oProxyCommand=x/y",
    "ssh://user@-oProxyCommand=x/y",
    "relative/path",
    "./rel",
    "../rel",
    "data.git",
    "ftp://example.org/repo",
    "git://example.org/repo",
    "fd::17/foo",
    "https://",
    "https:///path",
    "https://h:99999/x",
    "https://h:port/x",
    "https://exa mple.org/x",
    "/srv/my repo",
    "/srv/repo\n",
    "/srv/\x85repo",
    "file://host/srv/x",
    "file:relative",
    "git@host",
    "git@-host:path",
    "user@host: path",
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_repo_urls(url: str) -> None:
    assert check_repo_url(url) == url


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_repo_urls(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_repo_url(url, "data_repo")
    assert str(caught.value).startswith(f"data_repo {url!r} ")
    assert "\n" not in str(caught.value)


@given(st.text(st.characters(exclude_characters="\x00"), max_size=40))
def test_only_the_documented_url_shapes_pass(url: str) -> None:
    try:
        check_repo_url(url)
    except ValidationError:
        return
    assert url.startswith(("https://", "http://", "ssh://", "file:///", "file://localhost/", "/")) or (
        "@" in url and ":" in url and "://" not in url
    ), url
    assert not url.startswith("-")
    assert " " not in url


# -- text and env ---------------------------------------------------------------------------


def test_text() -> None:
    assert check_text("Ada Lovelace, Zürich 日本", "author") == "Ada Lovelace, Zürich 日本"
    assert check_text("", "description", empty=True) == ""
    with pytest.raises(ValidationError, match="author must not be empty"):
        check_text("", "author")
    with pytest.raises(ValidationError, match="longer than 256"):
        check_text("x" * 257, "author")
    for bad in ["a\nb", "a\tb", "a\x1b[31m", "a\x7f", "a\x9b31m", "a\x85b", "a\u2028b", "a\udcffb"]:
        with pytest.raises(ValidationError, match="control characters"):
            check_text(bad, "author")
    with pytest.raises(ValidationError, match="must be text"):
        check_text(5, "author")  # type: ignore[arg-type]


def test_env_pairs() -> None:
    assert parse_env_pairs([]) == {}
    pairs = ["A=1", "_B=", "C_2=x=y", "D= spaced "]
    assert parse_env_pairs(pairs) == {"A": "1", "_B": "", "C_2": "x=y", "D": " spaced "}
    cases = {
        "BAD-KEY=1": "env name 'BAD-KEY' is not allowed",
        "1A=1": "env name '1A' is not allowed",
        "=1": "env name '' is not allowed",
        "A B=1": "env name 'A B' is not allowed",
        "MAOMAO_X=1": "env name 'MAOMAO_X' is reserved",
        "NOEQUALS": "--env 'NOEQUALS' is not KEY=VALUE",
        "A=\udcff": "env value of A holds NUL or undecodable bytes",
        "A=" + "x" * 4097: "longer than 4096",
    }
    for pair, message in cases.items():
        with pytest.raises(ValidationError) as caught:
            parse_env_pairs([pair])
        assert message in str(caught.value), (pair, str(caught.value))
    with pytest.raises(ValidationError, match="--env A is given twice"):
        parse_env_pairs(["A=1", "A=2"])
    with pytest.raises(ValidationError, match="text values"):
        check_env({"A": 1})  # type: ignore[dict-item]


# -- records ------------------------------------------------------------------------------------


def test_tool_json_round_trip() -> None:
    original = tool(
        command="sh -c 'date > data/now'",
        env={"A": "1"},
        timeout=90.5,
        limits=Limits(memory="512m", cpus=0.5, pids=64),
        metrics=("pages=data/*.csv:count",),
        digest="sha256:" + HEX64,
    )
    value = original.to_value()
    data = json.loads(value)
    assert data["v"] == SCHEMA_VERSION == 1
    assert data["name"] == "crawler" and data["limits"] == {"memory": "512m", "cpus": 0.5, "pids": 64}
    assert Tool.from_value(value) == original
    assert Tool.from_value(tool().to_value()) == tool()
    assert set(original.to_dict()) == {f.name for f in dataclasses.fields(Tool)}


def test_dataset_json_round_trip() -> None:
    original = Dataset("pages", "https://git.example.org/pages.git", "Crawled pages")
    data = json.loads(original.to_value())
    assert data == {"v": 1, "name": "pages", "url": "https://git.example.org/pages.git", "description": "Crawled pages"}
    assert Dataset.from_value(original.to_value()) == original
    assert Dataset.from_value(b'{"v": 1, "name": "d", "url": "/srv/d"}') == Dataset("d", "/srv/d", "")


def test_unknown_fields_are_ignored() -> None:
    data = json.loads(tool().to_value())
    data["schedule_hint"] = "hourly"
    data["limits"] = {"memory": "1g", "gpus": 2}
    loaded = Tool.from_value(json.dumps(data).encode())
    assert loaded.limits == Limits(memory="1g")
    assert loaded == tool(limits=Limits(memory="1g"))
    assert Dataset.from_value(b'{"v": 1, "name": "d", "url": "/srv/d", "mirror": "x"}') == Dataset("d", "/srv/d")


def test_newer_schema_is_rejected_clearly() -> None:
    data = {**json.loads(Dataset("d", "/srv/d").to_value()), "v": SCHEMA_VERSION + 1}
    with pytest.raises(MaomaoError) as caught:
        Dataset.from_value(json.dumps(data).encode())
    message = str(caught.value)
    assert message == (
        f"stored dataset 'd' has schema v{SCHEMA_VERSION + 1}; this maomao reads up to v{SCHEMA_VERSION}: upgrade it"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{not json", "tool is not JSON"),
        (b"\xff\xfe", "tool is not JSON"),
        (b"[1, 2]", "has no schema version"),
        (b'{"name": "crawler"}', "has no schema version"),
        (b'{"v": "1", "name": "crawler"}', "has no schema version"),
        (b'{"v": true, "name": "crawler"}', "has no schema version"),
        (b'{"v": 0, "name": "crawler"}', "has no schema version"),
        (b'{"v": 1, "name": "crawler"}', "tool 'crawler' is invalid"),
        (b'{"v": 1, "name": "a/b", "author": "x", "image": "busybox", "data_repo": "/a", "code_repo": "/b",'
         b' "artefact": "c"}', "tool 'a/b' is invalid: tool name"),
    ],
)
def test_bad_saved_values(value: bytes, message: str) -> None:
    with pytest.raises(MaomaoError) as caught:
        Tool.from_value(value)
    assert message in str(caught.value)
    assert not isinstance(caught.value, UsageError)  # what the store holds is not the user's input


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("author", 7, "author must be text"),
        ("env", ["A=1"], "env must be a mapping"),
        ("env", {"A": 1}, "env must map names to text values"),
        ("timeout", True, "timeout True"),
        ("timeout", "60", "timeout '60'"),
        ("limits", "512m", "limits must be an object"),
        ("limits", {"cpus": True}, "cpus True"),
        ("limits", {"pids": False}, "pids False"),
        ("limits", {"memory": 512}, "memory 512"),
        ("metrics", "pages=*.csv", "metrics must be a list"),
        ("metrics", [1], "metric 1"),
        ("digest", 5, "digest 5"),
    ],
)
def test_field_types_of_saved_records(field: str, value: object, message: str) -> None:
    data = {**json.loads(tool().to_value()), field: value}
    with pytest.raises(MaomaoError) as caught:
        Tool.from_value(json.dumps(data).encode())
    assert message in str(caught.value)


def test_tool_validation() -> None:
    assert tool(runtime="process", command="python collect.py").runtime == "process"
    cases: list[tuple[dict[str, object], str]] = [
        ({"name": "-x"}, "tool name '-x' is not allowed"),
        ({"author": ""}, "author must not be empty"),
        ({"image": "Bad"}, "image 'Bad'"),
        ({"data_repo": "ext::sh"}, "data_repo 'ext::sh'"),
        ({"code_repo": "rel"}, "code_repo 'rel'"),
        ({"artefact": "a\nb"}, "artefact"),
        ({"command": ""}, "command must not be empty"),
        ({"command": "   "}, "command must not be empty"),
        ({"command": "'unclosed"}, "does not parse"),
        ({"env": {"MAOMAO_RUN": "x"}}, "reserved"),
        ({"timeout": 0}, "timeout 0"),
        ({"timeout": float("nan")}, "timeout nan"),
        ({"timeout": float("inf")}, "timeout inf"),
        ({"timeout": 7 * 86400 + 1}, "at most a week"),
        ({"limits": {"memory": "0"}}, "memory '0'"),
        ({"metrics": ("nometric",)}, "NAME=GLOB"),
        ({"runtime": "vm"}, "runtime 'vm'"),
        ({"runtime": "process"}, "needs --command"),
        ({"digest": "sha256:xyz"}, "digest"),
    ]
    for changes, message in cases:
        with pytest.raises(ValidationError) as caught:
            tool(**changes)
        assert message in str(caught.value), (changes, str(caught.value))
        assert "\n" not in str(caught.value)


def test_limits() -> None:
    assert Limits() == Limits(None, None, None)
    assert Limits("2g", 1.5, 100).memory == "2g"
    for bad in [{"memory": "2x"}, {"cpus": 0}, {"cpus": float("nan")}, {"cpus": 1025}, {"pids": 0}, {"pids": 1.5}]:
        with pytest.raises(ValidationError):
            Limits(**bad)  # type: ignore[arg-type]


def test_dataset_validation() -> None:
    with pytest.raises(ValidationError, match="dataset name"):
        Dataset(".d", "/srv/d")
    with pytest.raises(ValidationError, match=r"^url 'ftp://x/y'"):
        Dataset("d", "ftp://x/y")
    with pytest.raises(ValidationError, match="description"):
        Dataset("d", "/srv/d", "x" * 1025)
    assert Dataset("d", "/srv/d", "x" * 1024).description == "x" * 1024


def test_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        tool().name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Dataset("d", "/srv/d").url = "/x"  # type: ignore[misc]


SAFE_TEXT = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=30)


@settings(max_examples=200)
@given(
    name=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", fullmatch=True),
    author=SAFE_TEXT,
    artefact=SAFE_TEXT,
    env=st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), st.text(max_size=10)),
    timeout=st.none() | st.floats(min_value=0.001, max_value=7 * 86400),
)
def test_round_trip_property(name: str, author: str, artefact: str, env: dict[str, str], timeout: float | None) -> None:
    env = {k: v.replace("\x00", "") for k, v in env.items() if not k.startswith("MAOMAO_")}
    env = {k: v for k, v in env.items() if not any(0xD800 <= ord(c) <= 0xDFFF for c in v)}
    original = tool(name=name, author=author, artefact=artefact, env=env, timeout=timeout)
    assert Tool.from_value(original.to_value()) == original


# -- container confinement fields (issue 4) ---------------------------------------------------


def test_network_read_only_and_data_mount() -> None:
    plain = tool()
    assert (plain.network, plain.read_only, plain.data_mount) == (None, None, "/usr/src/app/data")
    confined = tool(network="none", read_only=True, data_mount="/data/out")
    assert Tool.from_value(confined.to_value()) == confined
    # a record written before these fields existed reads with their defaults
    old = {k: v for k, v in plain.to_dict().items() if k not in ("network", "read_only", "data_mount")}
    assert Tool.from_dict(old) == plain


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"network": "wifi"}, ["network", "bridge, none, host"]),
        ({"read_only": "yes"}, ["read_only", "true or false"]),
        ({"data_mount": "data"}, ["data mount", "absolute"]),
        ({"data_mount": "/"}, ["data mount"]),
        ({"data_mount": "/usr/src/../../etc"}, ["data mount"]),
        ({"data_mount": "/proc"}, ["data mount"]),
        ({"data_mount": "/data//x"}, ["data mount"]),
        ({"data_mount": "/data/$HOME"}, ["data mount"]),
    ],
)
def test_bad_confinement_fields(changes: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        tool(**changes)
    for word in words:
        assert word in str(caught.value)


def test_run_records_carry_their_commit() -> None:
    from maomao.model import Run

    run = Run(
        id="r1", tool="t", slot="r1", trigger="request", member="m", state="failed", commit="ab" * 20,
        push="pending", branch="maomao/failed/r1", image="localhost/x@sha256:" + "c" * 64,
    )
    assert Run.from_value(run.to_value()) == run
    assert Run.from_dict({k: v for k, v in run.to_dict().items() if k not in ("commit", "push", "branch", "image")}) \
        == Run(id="r1", tool="t", slot="r1", trigger="request", member="m", state="failed")
