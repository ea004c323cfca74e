"""``ctl tool runs`` and ``ctl tool run``, through the real entry points, on both backends.

What a daemon does with a run request is played by a thread in the test
that uses the Store API exactly as the protocol says (see
:mod:`maomao.cli.run_now`, :mod:`maomao.cli.follow`): claim ``claims/<tool>/<run-id>`` with a lease
(``claimed``, then ``running``), then in one transaction put
``runs/<tool>/<run-id>`` and delete the claim and the request.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from maomao.model import Claim, Member, Run, RunRequest
from maomao.store import Compare, Delete, Put, Store, run_inline
from tests.integration.test_cli_schedule import TOOL, Setup, details, make_setup, table
from tests.support.cli import finish, start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
RUN_FIELDS = {"id", "tool", "slot", "trigger", "member", "state", "started", "finished", "exit_code", "output_tail"}
PROCESS_TOOL = ["tool", "add", "echo", "Ada", "busybox", "/srv/git/d", "/srv/git/c", "pages", "--runtime", "process",
                "--command", 'sh -c "echo hello; exit 3"']  # fmt: skip


@pytest.fixture(params=["embedded", "etcd"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Setup:
    return make_setup(request.param, tmp_path, prefix, request)


def member(name: str = "lab-1", runtimes: tuple[str, ...] = ("container", "process")) -> Member:
    return Member(name, f"{name}.example.org", "0.1.0", runtimes, {"site": "lab"}, "2026-11-30T03:00:00Z")


@pytest.fixture
def live(setup: Setup) -> Iterator[int]:
    """Member lab-1 put by hand, bound to a lease as a daemon's record is; the lease, revoked after the test."""

    async def register(store: Store) -> int:
        lease = await store.grant(60)
        await store.put(setup.keys.member("lab-1"), member().to_value(), lease=lease)
        return lease

    lease = setup.store(register)
    yield lease
    setup.store(lambda store: store.revoke(lease))


def keys_under(setup: Setup, collection: str) -> dict[str, dict[str, object]]:
    """The records under ``collection`` (``runs``, ``requests``, ...) by key below it."""
    return setup.ctl.records(collection)


# -- tool runs ----------------------------------------------------------------------------------


def finished(run_id: str, state: str = "succeeded", code: int | None = 0, **more: object) -> Run:
    return Run(id=run_id, tool="tl-1", slot=run_id[:16], trigger="schedule", member="lab-1", state=state,
               started=f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:{run_id[11:13]}:{run_id[13:15]}Z",
               finished=f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:{run_id[11:13]}:59Z",
               exit_code=code, output_tail=f"tail of {run_id}\n", **more)  # type: ignore[arg-type]  # fmt: skip


def test_tool_runs_lists_finished_and_running_newest_first(setup: Setup) -> None:
    ctl = setup.ctl
    ctl(*TOOL).ok()
    runs = [
        finished("20261129T030000Z"),
        finished("20261130T030000Z", "failed", 2),
        finished("20261130T031500Z-0a1b2c", "timed_out", None, detail="timed out after 60s"),
    ]
    claims = [
        Claim("20261130T040000Z", "tl-1", "lab-2", "20261130T040000Z", "schedule", "running", "2026-11-30T04:00:01Z",
              "2026-11-30T04:00:02Z"),
        Claim("20261130T033000Z-ffeedd", "tl-1", "lab-1", "20261130T033000Z-ffeedd", "request", "claimed",
              "2026-11-30T03:30:01Z"),
    ]  # fmt: skip

    async def write(store: Store) -> None:
        lease = await store.grant(60)
        for run in runs:
            await store.put(setup.keys.run("tl-1", run.id), run.to_value())
        for claim in claims:
            await store.put(setup.keys.claim("tl-1", claim.name), claim.to_value(), lease=lease)
        # another tool's run, and a tool whose name extends this one's, stay out
        other = replace(finished("20261130T050000Z"), tool="tl-10")  # a run is filed under its own tool
        await store.put(setup.keys.run("tl-10", "20261130T050000Z"), other.to_value())

    setup.store(write)
    rows = table(ctl("tool", "runs", "tl-1").ok().stdout)
    assert rows[0] == ["ID", "STATE", "TRIGGER", "SLOT", "MEMBER", "STARTED", "DURATION", "EXIT", "COMMIT"]
    assert [r[0] for r in rows[1:]] == [
        "20261130T040000Z",
        "20261130T033000Z-ffeedd",
        "20261130T031500Z-0a1b2c",
        "20261130T030000Z",
        "20261129T030000Z",
    ]
    assert rows[1][:6] == [
        "20261130T040000Z", "running", "schedule", "20261130T040000Z", "lab-2", "2026-11-30T04:00:02Z"
    ]  # fmt: skip
    assert rows[1][6].endswith("+") and rows[1][7] == "-"
    assert rows[2][1:3] == ["claimed", "request"] and rows[2][5:8] == ["-", "-", "-"]
    assert rows[3][1] == "timed_out" and rows[3][6:] == ["59s", "-", "-"]
    assert rows[4][1] == "failed" and rows[4][6:] == ["59s", "2", "-"]
    assert rows[5][1] == "succeeded" and rows[5][7] == "0"

    listed = ctl("tool", "runs", "tl-1", "--json", entry="maomao").json()
    assert [r["id"] for r in listed] == [r[0] for r in rows[1:]]
    assert all(set(r) >= RUN_FIELDS for r in listed)
    assert listed[0]["state"] == "running" and listed[0]["finished"] is None and listed[0]["exit_code"] is None
    assert listed[2] == {**runs[2].to_dict()}
    assert listed[2]["output_tail"] == "tail of 20261130T031500Z-0a1b2c\n"

    limited = ctl("tool", "runs", "tl-1", "--limit", "2", "--json").json()
    assert [r["id"] for r in limited] == [r["id"] for r in listed[:2]]
    assert len(table(ctl("tool", "runs", "tl-1", "--limit", "3").ok().stdout)) == 4
    assert len(ctl("tool", "runs", "tl-1", "--limit", "0", "--json").json()) == 5

    # a tool without runs; a removed tool's runs stay readable; no tool, no runs: an error
    ctl("tool", "add", "quiet", "Ada", "busybox", "/a", "/b", "c").ok()
    empty = ctl("tool", "runs", "quiet").ok()
    assert empty.stdout == "" and empty.stderr == "no runs of tool quiet\n"
    assert ctl("tool", "runs", "quiet", "--json").json() == []
    assert [r["id"] for r in ctl("tool", "runs", "tl-10", "--json").json()] == ["20261130T050000Z"]
    assert "no tool named 'nope'" in ctl("tool", "runs", "nope").error(2)
    for bad in (["--limit", "-1"], ["--limit", "x"], ["--limit", "1.5"]):
        assert "--limit" in ctl("tool", "runs", "tl-1", *bad).error(2)
    assert "a/b" in ctl("tool", "runs", "a/b").error(2)


# -- tool run: through a member -----------------------------------------------------------------


def test_run_without_members_fails_at_once_and_writes_nothing(setup: Setup) -> None:
    ctl = setup.ctl
    ctl(*PROCESS_TOOL).ok()
    before = ctl.contents()
    began = time.monotonic()
    line = ctl("tool", "run", "echo").error(1)
    assert time.monotonic() - began < 5
    assert line == "error: no members are running: no one can run tool echo"
    assert ctl.contents() == before


def test_run_with_no_eligible_member_names_the_members(setup: Setup, live: int) -> None:
    ctl = setup.ctl
    ctl(*TOOL).ok()  # a container tool
    ctl(*PROCESS_TOOL).ok()

    async def add_member(store: Store) -> None:
        lease = await store.grant(60)
        await store.put(setup.keys.member("pc"), member("pc", ("process",)).to_value(), lease=lease)

    setup.store(add_member)
    before = ctl.contents()
    line = ctl("tool", "run", "echo", "--on", "lab-9").error(1)
    assert line == "error: no live member can run tool echo (runtime process, on lab-9); members: lab-1, pc"
    line = ctl("tool", "run", "echo", "--on", "site=elsewhere").error(1)
    assert "site=elsewhere" in line and "members: lab-1, pc" in line
    assert ctl.contents() == before
    # lab-1 runs containers, pc does not: --on pc for a container tool has nobody
    line = ctl("tool", "run", "tl-1", "--on", "pc").error(1)
    assert line == "error: no live member can run tool tl-1 (runtime container, on pc); members: lab-1, pc"


def test_run_nobody_claims_withdraws_the_request(setup: Setup, live: int) -> None:
    ctl = setup.ctl
    ctl(*PROCESS_TOOL).ok()
    began = time.monotonic()
    result = ctl("tool", "run", "echo", "--claim-timeout", "1")
    elapsed = time.monotonic() - began
    line = result.error(1)
    assert re.fullmatch(rf"error: no member took run {RUN_ID.pattern} of tool echo within 1s; request withdrawn", line)
    assert 1 <= elapsed < 8, elapsed
    assert re.fullmatch(rf"requested run {RUN_ID.pattern} of tool echo\n", result.stdout)
    assert keys_under(setup, "requests") == {} and keys_under(setup, "runs") == {}


def test_run_no_wait_leaves_the_request(setup: Setup, live: int) -> None:
    ctl = setup.ctl
    ctl(*PROCESS_TOOL).ok()
    result = ctl("tool", "run", "echo", "--no-wait", "--on", "lab-1").ok()
    run_id = result.stdout.strip()
    assert RUN_ID.fullmatch(run_id) and result.stdout == run_id + "\n"
    requests = keys_under(setup, "requests")
    assert set(requests) == {run_id}
    request = RunRequest.from_value(json.dumps(requests[run_id]).encode())
    assert (request.name, request.tool, request.on) == (run_id, "echo", "lab-1")
    assert re.fullmatch(r"[^@\s]+@[^@\s]+", request.by)
    assert request.created.replace("-", "").replace(":", "") == run_id[:16]  # the id starts with its time
    # and by label
    second = ctl("tool", "run", "echo", "--no-wait", "--on", "site=lab", entry="maomao").ok().stdout.strip()
    assert set(keys_under(setup, "requests")) == {run_id, second}


@dataclass
class FakeDaemon:
    """Takes the first run request of ``tool`` and plays a member's part of the protocol."""

    setup: Setup
    tool: str
    name: str = "lab-1"
    state: str = "succeeded"
    exit_code: int | None = 0
    tail: str = "collected 3 pages\n"
    #: give the claim up (its lease revoked) this many times before finishing a run
    give_up: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    run_id: str | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._main, daemon=True)
        thread.start()
        return thread

    def _main(self) -> None:
        store = self.setup.open_store()
        try:
            self._serve(store)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
        finally:
            run_inline(store.aclose())
            self.done.set()

    def _serve(self, store: Store) -> None:
        keys = self.setup.keys
        deadline = time.monotonic() + 30
        request = None
        while request is None:
            assert time.monotonic() < deadline, "no run request came"
            for kv in run_inline(store.range(keys.requests)).kvs:
                candidate = RunRequest.from_value(kv.value)
                if candidate.tool == self.tool:
                    request = candidate
            time.sleep(0.05)
        self.run_id = run_id = request.name
        request_key, claim_key = keys.request(run_id), keys.claim(self.tool, run_id)
        run_key = keys.run(self.tool, run_id)
        for attempt in range(self.give_up + 1):
            lease = run_inline(store.grant(30))
            claim = Claim(run_id, self.tool, self.name, run_id, "request", "claimed", "2026-11-30T03:05:12Z")
            claimed = run_inline(store.txn(
                [Compare(request_key, "version", ">", 0), Compare(claim_key, "create", "=", 0)],
                [Put(claim_key, claim.to_value(), lease)],
            ))  # fmt: skip
            assert claimed.succeeded
            time.sleep(0.3)
            running = Claim(**{**claim.to_dict(), "state": "running", "started": "2026-11-30T03:05:13Z"})
            revision = run_inline(store.put(claim_key, running.to_value(), lease=lease))
            time.sleep(0.3)
            if attempt < self.give_up:
                run_inline(store.revoke(lease))  # as if this member died: its claim goes with its lease
                time.sleep(0.5)
                continue
            run = Run(run_id, self.tool, run_id, "request", self.name, self.state, "2026-11-30T03:05:13Z",
                      "2026-11-30T03:05:20Z", self.exit_code, self.tail)  # fmt: skip
            recorded = run_inline(store.txn(
                [Compare(claim_key, "mod", "=", revision)],
                [Put(run_key, run.to_value()), Delete(claim_key), Delete(request_key)],
            ))  # fmt: skip
            assert recorded.succeeded
            run_inline(store.revoke(lease))


def run_with(setup: Setup, daemon: FakeDaemon, *args: str) -> tuple[str, int]:
    """``tool run`` against the fake daemon: its stdout and exit status (stderr must be empty)."""
    daemon.start()
    proc = start(setup.ctl.argv(["tool", "run", daemon.tool, *args]), env=setup.ctl.env, cwd=setup.ctl.home)
    result = finish(proc, timeout=60)
    assert daemon.done.wait(30) and not daemon.errors, daemon.errors
    assert result.stderr == "", str(result)
    return result.stdout, result.returncode


@pytest.mark.parametrize(("state", "code"), [("succeeded", 0), ("failed", 1)])
def test_run_through_a_member(setup: Setup, live: int, state: str, code: int) -> None:
    setup.ctl(*PROCESS_TOOL).ok()
    daemon = FakeDaemon(setup, "echo", state=state, exit_code=code * 4)
    stdout, status = run_with(setup, daemon)
    assert status == code
    lines = stdout.splitlines()
    assert lines[0] == f"requested run {daemon.run_id} of tool echo"
    assert lines[1:4] == ["claimed by lab-1", "running on lab-1", "succeeded" if code == 0 else "failed (exit 4)"]
    report = details("\n".join(lines[4:9]))
    assert report == {
        "run": str(daemon.run_id),
        "member": "lab-1",
        "started": "2026-11-30T03:05:13Z",
        "duration": "7s",
        "exit": str(code * 4),
    }
    assert lines[9:] == ["output:", "collected 3 pages"]
    # the member's transaction left the run and nothing else
    assert set(keys_under(setup, "runs")) == {f"echo/{daemon.run_id}"}
    assert keys_under(setup, "requests") == {} and keys_under(setup, "claims") == {}
    listed = setup.ctl("tool", "runs", "echo", "--json").json()
    assert [(r["id"], r["state"], r["trigger"]) for r in listed] == [(daemon.run_id, state, "request")]


def test_run_goes_back_to_waiting_when_its_member_dies(setup: Setup, live: int) -> None:
    setup.ctl(*PROCESS_TOOL).ok()
    daemon = FakeDaemon(setup, "echo", give_up=1)
    stdout, status = run_with(setup, daemon, "--claim-timeout", "5")
    assert status == 0, stdout
    lines = stdout.splitlines()
    assert lines[1:7] == [
        "claimed by lab-1",
        "running on lab-1",
        "lab-1 gave the run up (its lease ended); waiting for another member",
        "claimed by lab-1",
        "running on lab-1",
        "succeeded",
    ]


# -- tool run --here ----------------------------------------------------------------------------


def test_run_here(setup: Setup) -> None:
    ctl = setup.ctl
    remote = ctl.config.parent / "echo-data.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    ctl("tool", "add", "echo", "Ada", "busybox", str(remote), "/srv/git/c", "pages", "--runtime", "process",
        "--command", 'sh -c "echo hello; echo collected > out.txt; exit 3"').ok()  # fmt: skip
    result = ctl("tool", "run", "echo", "--here")
    assert result.returncode == 1 and result.stderr == "", str(result)
    lines = result.stdout.splitlines()
    match = re.fullmatch(rf"running ({RUN_ID.pattern}) of tool echo here, as ctl-host", lines[0])
    assert match, lines
    run_id = match[1]
    assert lines[1] == "failed (exit 3)"
    report = details("\n".join(lines[2:8]))
    assert report["run"] == run_id and report["member"] == "ctl-host" and report["exit"] == "3"
    # a failed run's output is committed to its own branch and pushed there
    assert report["commit"].endswith(f"(pushed on maomao/failed/{run_id})"), report
    assert lines[8:] == ["output:", "hello"]

    stored = keys_under(setup, "runs")
    assert set(stored) == {f"echo/{run_id}"}
    run = Run.from_value(json.dumps(stored[f"echo/{run_id}"]).encode())
    assert (run.id, run.slot, run.tool, run.trigger, run.member) == (run_id, run_id, "echo", "request", "ctl-host")
    assert (run.state, run.exit_code, run.output_tail) == ("failed", 3, "hello\n")
    assert run.started and run.finished and run.started <= run.finished
    assert run.branch == f"maomao/failed/{run_id}" and run.commit and report["commit"].startswith(run.commit)
    shown = subprocess.run(["git", "-C", str(remote), "show", f"{run.branch}:out.txt"], capture_output=True, text=True)
    assert shown.stdout == "collected\n"
    importdir = ctl.config.parent / "import"
    assert (importdir / ".maomao" / "logs" / "echo" / f"{run_id}.log").read_text() == "hello\n"
    assert (importdir / "echo" / ".git").is_dir()
    assert keys_under(setup, "requests") == {}


def test_run_here_with_no_container_engine_fails_and_records_why(setup: Setup) -> None:
    ctl = setup.ctl
    remote = ctl.config.parent / "tl-data.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    ctl("tool", "add", "tl-1", "Ada", "busybox", str(remote), "/srv/git/c", "pages").ok()
    ctl.extra_env["DOCKER_HOST"] = "unix:///nonexistent/maomao/engine.sock"
    result = ctl("tool", "run", "tl-1", "--here")
    assert result.returncode == 1, str(result)
    assert "/nonexistent/maomao/engine.sock" in result.stdout
    (run,) = [Run.from_value(json.dumps(v).encode()) for v in keys_under(setup, "runs").values()]
    assert run.state == "failed" and run.exit_code is None and "engine.sock" in run.detail
    assert run.commit is None  # nothing ran, nothing committed


BAD_RUNS = [
    (["tool", "run", "nope"], "'nope'"),
    (["tool", "run", "a/b"], "a/b"),
    (["tool", "run", "echo", "--on", "all"], "--on all"),
    (["tool", "run", "echo", "--on", "two words"], "two words"),
    (["tool", "run", "echo", "--claim-timeout", "0"], "--claim-timeout"),
    (["tool", "run", "echo", "--claim-timeout", "nan"], "--claim-timeout"),
    (["tool", "run", "echo", "--claim-timeout", "soon"], "--claim-timeout"),
    (["tool", "run", "echo", "--here", "--no-wait"], "--here"),
    (["tool", "run", "echo", "--here", "--on", "lab-1"], "--here"),
    (["tool", "run", "nope", "--here"], "'nope'"),
    (["tool", "run"], "NAME"),
]


def test_bad_run_input_fails_and_writes_nothing(setup: Setup, live: int) -> None:
    ctl = setup.ctl
    ctl(*PROCESS_TOOL).ok()
    before = ctl.contents()
    cases = BAD_RUNS if ctl.kind == "embedded" else BAD_RUNS[::3]
    results = ctl.many(*[(argv, "maomao" if i % 2 else "maoctl") for i, (argv, _) in enumerate(cases)])
    for (argv, named), result in zip(cases, results, strict=True):
        line = result.error(2)
        assert named in line, (argv, line)
    assert ctl.contents() == before
