"""The container runtime on a real engine: Podman's Docker Engine API, with busybox images built here.

Each test runs real containers through :class:`ContainerRunner` and checks
what the tool saw (its output, environment, limits, file systems) and what
is left afterwards (no container).  There is no registry: a missing image
cannot be pulled, which is what the pull failures test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from maomao.config import RunnerConfig
from maomao.errors import MaomaoError
from maomao.model import Tool
from maomao.runner import Confinement, RunnerUnavailable, RunOutcome, RunSpec, read_tail
from maomao.runner import container as container_module
from maomao.runner.container import (
    ContainerRunner,
    ImageError,
    connect,
    container_name,
    engine_url,
    resolve_digest,
)
from tests.support.podman import Podman

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
T = TypeVar("T")

IMAGE = "localhost/maomao-test/busybox:1"
MISSING = "localhost/maomao-test/nope:1"
ISOLATED = Confinement(network="none")


def runner_config(url: str | None, pull_timeout: float = 30, **overrides: Any) -> RunnerConfig:
    values: dict[str, Any] = {
        "docker_host": url, "memory": None, "cpus": None, "pids": None,
        "network": "none", "read_only": False, "pull_timeout": pull_timeout,
    }
    values.update(overrides)
    return RunnerConfig(**values)


@pytest.fixture(scope="module")
def image(podman: Podman) -> str:
    podman.build_image(IMAGE, cmd=["sh", "-c", "echo default command"], workdir="/usr/src/app")
    return IMAGE


@pytest.fixture(scope="module")
def client(podman: Podman) -> Iterator[Any]:
    engine = podman.client()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def shared_runner(podman: Podman) -> Iterator[ContainerRunner]:
    made = ContainerRunner(runner_config(podman.url))
    yield made
    made.close()


@pytest.fixture
def runner(shared_runner: ContainerRunner, image: str) -> ContainerRunner:
    """One runner for the module: it connects once (asking Podman its API version takes most of a second)."""
    return shared_runner


def make_spec(
    tmp_path: Path,
    command: str | None,
    image: str = IMAGE,
    timeout: float = 30,
    confinement: Confinement = ISOLATED,
    digest: str | None = None,
    **env: str,
) -> RunSpec:
    tool = Tool("collector", "me", image, "/d", "/c", "web", command=command, env=env, digest=digest)
    run_id = f"20261130T030512Z-{uuid.uuid4().hex[:6]}"
    return RunSpec(
        tool=tool, run_id=run_id, slot="2026-11-30T03:05:00Z", member="lab-1", workdir=tmp_path / "data",
        log_path=tmp_path / "logs" / f"{run_id}.log", timeout=timeout, kill_grace=1, confinement=confinement,
    )


def containers_of(client: Any, spec: RunSpec) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"maomao.run={spec.run_id}"}))


def container_ids(client: Any, spec: RunSpec) -> list[str]:
    """The ids of the run's containers, from the listing alone (no inspect of each, which fails with
    a 500 on Podman for a container removed between the listing and the inspect)."""
    found = client.api.containers(all=True, quiet=True, filters={"label": f"maomao.run={spec.run_id}"})
    return [str(entry["Id"]) for entry in found]


async def assert_removed(client: Any, spec: RunSpec) -> None:
    """The run's container is gone within 15 s (the runner removes it after the run returned)."""
    await poll(lambda: container_ids(client, spec) == [])


def log_of(spec: RunSpec) -> str:
    return spec.log_path.read_text(errors="replace")


async def poll(check: Callable[[], T | None]) -> T:
    """``check()``'s first truthy value, asked every 50 ms; fails the test after 15 s."""
    with trio.fail_after(15):
        while True:
            value = check()
            if value:
                return value
            await trio.sleep(0.05)


# -- runs --------------------------------------------------------------------------------------


async def test_success_output_environment_and_data_mount(
    runner: ContainerRunner, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "do not leak")
    command = (
        "sh -c 'echo out; echo err >&2; env > /usr/src/app/data/env.txt; "
        "echo collected > /usr/src/app/data/result.csv; pwd'"
    )
    # the default network (bridge) once; the other tests run without one, which is quicker
    spec = make_spec(tmp_path, command, confinement=Confinement(), TARGET="example.org")
    outcome = await runner.run(spec)
    assert (outcome.state, outcome.exit_code, outcome.detail) == ("succeeded", 0, "")
    assert "out\n" in outcome.output_tail and "err\n" in outcome.output_tail
    assert "out\n" in log_of(spec) and "/usr/src/app\n" in log_of(spec)  # the image's WORKDIR
    env = dict(line.split("=", 1) for line in (tmp_path / "data" / "env.txt").read_text().splitlines())
    assert env["MAOMAO_TOOL"] == "collector" and env["MAOMAO_RUN_ID"] == spec.run_id
    assert env["MAOMAO_SLOT"] == spec.slot and env["MAOMAO_MEMBER"] == "lab-1"
    assert env["TARGET"] == "example.org"
    assert "SECRET_TOKEN" not in env
    assert (tmp_path / "data" / "result.csv").read_text() == "collected\n"
    await assert_removed(client, spec)
    digest = resolve_digest(client, IMAGE, 10)
    assert outcome.image == f"localhost/maomao-test/busybox@{digest}"
    assert outcome.started <= outcome.finished


async def test_image_default_command(runner: ContainerRunner, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, None)
    outcome = await runner.run(spec)
    assert outcome.state == "succeeded"
    assert "default command" in outcome.output_tail


async def test_exit_code_is_a_failed_run(runner: ContainerRunner, client: Any, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "sh -c 'echo failing; exit 1'")
    outcome = await runner.run(spec)
    assert (outcome.state, outcome.exit_code, outcome.detail) == ("failed", 1, "")
    assert "failing" in outcome.output_tail
    await assert_removed(client, spec)


async def test_removal_in_the_foreground_is_done_when_the_run_returns(
    runner: ContainerRunner, client: Any, tmp_path: Path
) -> None:
    runner.remove_in_background = False
    spec = make_spec(tmp_path, "sh -c 'exit 4'")
    outcome = await runner.run(spec)
    assert (outcome.state, outcome.exit_code) == ("failed", 4)
    assert container_ids(client, spec) == []


async def test_all_output_once_in_order_though_the_run_does_not_wait_for_the_stream(
    runner: ContainerRunner, tmp_path: Path
) -> None:
    # output written right up to the exit, on both streams: the log has all of it, once, each stream
    # in order (stdout and stderr are separate pipes: the engine may record a stderr chunk inside a
    # stdout line, as `podman logs` shows it too)
    spec = make_spec(tmp_path, "sh -c 'seq 1 20000; echo last-out; echo last-err >&2'")
    outcome = await runner.run(spec)
    assert outcome.state == "succeeded", outcome
    text = log_of(spec)
    assert text.count("last-err\n") == 1
    assert text.replace("last-err\n", "") == "".join(f"{n}\n" for n in range(1, 20001)) + "last-out\n"


async def test_missing_program_is_a_failed_run(runner: ContainerRunner, client: Any, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "/nonexistent/collector --now")
    outcome = await runner.run(spec)
    assert (outcome.state, outcome.exit_code) == ("failed", None)
    assert "refused to start the container" in outcome.detail and "/nonexistent/collector" in outcome.detail
    assert outcome.detail in log_of(spec)
    await assert_removed(client, spec)


async def test_output_reaches_the_log_while_running(runner: ContainerRunner, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "sh -c 'echo first; sleep 2; echo second'")
    seen: list[str] = []

    def first_line_seen() -> str | None:
        text = read_tail(spec.log_path)
        return text if "first" in text else None

    async def watch() -> None:
        seen.append(await poll(first_line_seen))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        outcome = await runner.run(spec)
    assert outcome.state == "succeeded"
    assert seen and "second" not in seen[0]
    assert "second" in outcome.output_tail


async def test_timeout_stops_and_removes_the_container(
    runner: ContainerRunner, client: Any, tmp_path: Path
) -> None:
    # PID 1 ignores SIGTERM: the engine kills it after the grace
    spec = make_spec(tmp_path, "sh -c 'trap \"\" TERM; echo started; sleep 30'", timeout=1.5)
    begun = time.monotonic()
    outcome = await runner.run(spec)
    elapsed = time.monotonic() - begun
    assert outcome.state == "timed_out"
    assert elapsed < 1.5 + 1 + 6
    assert "started" in outcome.output_tail
    assert "maomao: timed out after 1.5s" in log_of(spec)
    await assert_removed(client, spec)


async def test_memory_limit_kills_the_tool(runner: ContainerRunner, client: Any, tmp_path: Path) -> None:
    # the shell doubles a variable until it is over the limit (16m, swap included)
    spec = make_spec(
        tmp_path, "sh -c 'x=0123456789abcdef; while true; do x=$x$x; done'",
        confinement=Confinement(memory="16m", network="none"),
    )
    outcome = await runner.run(spec)
    assert (outcome.state, outcome.exit_code) == ("failed", 137)
    assert outcome.detail == "memory limit 16m exceeded (killed)"
    assert "memory limit 16m exceeded" in log_of(spec)
    await assert_removed(client, spec)


async def test_memory_under_the_limit_succeeds(runner: ContainerRunner, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "sh -c 'x=0123456789abcdef; echo $x'", confinement=Confinement(memory="64m"))
    outcome = await runner.run(spec)
    assert (outcome.state, outcome.detail) == ("succeeded", "")


async def test_pids_limit(runner: ContainerRunner, tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path, "sh -c 'for i in $(seq 1 40); do sleep 30 & done; echo all-started'",
        confinement=Confinement(pids=8, network="none"),
    )
    outcome = await runner.run(spec)
    assert outcome.state == "failed"
    assert "can't fork" in outcome.output_tail
    assert "all-started" not in outcome.output_tail


async def test_cpu_limit_is_applied(runner: ContainerRunner, tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path, "sh -c 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
        "2>/dev/null || cat /sys/fs/cgroup/cpu.max'",
        confinement=Confinement(cpus=0.5, network="none"),
    )
    outcome = await runner.run(spec)
    assert outcome.state == "succeeded"
    numbers = [int(word) for word in outcome.output_tail.split() if word.isdigit()]
    assert len(numbers) == 2 and numbers[0] * 2 == numbers[1]


async def test_no_network_but_loopback(runner: ContainerRunner, tmp_path: Path) -> None:
    outcome = await runner.run(make_spec(tmp_path, "ls /sys/class/net"))
    assert outcome.state == "succeeded"
    assert outcome.output_tail.split() == ["lo"]


async def test_read_only_root_keeps_data_and_tmp_writable(runner: ContainerRunner, tmp_path: Path) -> None:
    command = (
        "sh -c 'touch /root-file && echo root-writable; touch /tmp/t && echo tmp-writable; "
        "echo kept > /usr/src/app/data/out && echo data-writable'"
    )
    spec = make_spec(tmp_path, command, confinement=Confinement(network="none", read_only=True))
    outcome = await runner.run(spec)
    assert outcome.state == "succeeded"
    assert "Read-only file system" in outcome.output_tail
    assert "root-writable" not in outcome.output_tail
    assert "tmp-writable" in outcome.output_tail and "data-writable" in outcome.output_tail
    assert (tmp_path / "data" / "out").read_text() == "kept\n"


async def test_no_capabilities_and_no_new_privileges(runner: ContainerRunner, tmp_path: Path) -> None:
    outcome = await runner.run(make_spec(tmp_path, "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status"))
    assert outcome.state == "succeeded"
    fields = dict(line.split(":") for line in outcome.output_tail.splitlines())
    assert {k: v.strip() for k, v in fields.items()} == {
        "CapEff": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1",
    }


async def test_engine_settings_of_the_container(runner: ContainerRunner, client: Any, tmp_path: Path) -> None:
    """What the engine was asked for, read back while the container runs."""
    spec = make_spec(
        tmp_path, "sleep 30", confinement=Confinement(memory="32m", cpus=0.25, pids=50, network="none"),
    )
    inspected: list[dict[str, Any]] = []

    def running() -> dict[str, Any] | None:
        found = containers_of(client, spec)
        return found[0].attrs if found and found[0].status == "running" else None

    async def look() -> None:
        inspected.append(await poll(running))
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(look)
        await runner.run(spec)
    assert inspected, "the container never ran"
    attrs = inspected[0]
    host = attrs["HostConfig"]
    assert attrs["Name"].lstrip("/") == container_name("collector", spec.run_id)
    labels = {"maomao.tool": "collector", "maomao.run": spec.run_id, "maomao.member": "lab-1"}
    assert attrs["Config"]["Labels"] == labels
    limits = (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"])
    assert limits == (32 << 20, 32 << 20, 25 * 10**7, 50)
    assert host["Privileged"] is False
    assert not host.get("Devices")
    assert not attrs["Config"].get("OpenStdin") and not attrs["Config"].get("Tty")
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(mounts) == {"/usr/src/app/data"}
    assert mounts["/usr/src/app/data"]["Source"] == str((tmp_path / "data").resolve())
    assert mounts["/usr/src/app/data"]["RW"] is True
    await assert_removed(client, spec)


async def test_pinned_digest_runs_the_old_image_after_the_tag_moved(
    runner: ContainerRunner, podman: Podman, client: Any, tmp_path: Path
) -> None:
    tag = "localhost/maomao-test/pinned:1"
    podman.build_image(tag, files={"/version": "old\n"})
    old = resolve_digest(client, tag, 10)
    podman.build_image(tag, files={"/version": "new\n"})
    new = resolve_digest(client, tag, 10)
    assert old != new and old.startswith("sha256:")
    pinned = await runner.run(make_spec(tmp_path / "a", "cat /version", image=tag, digest=old))
    assert (pinned.state, pinned.output_tail) == ("succeeded", "old\n")
    assert pinned.image == f"localhost/maomao-test/pinned@{old}"
    moving = await runner.run(make_spec(tmp_path / "b", "cat /version", image=tag))
    assert (moving.state, moving.output_tail) == ("succeeded", "new\n")
    assert moving.image == f"localhost/maomao-test/pinned@{new}"


async def test_missing_image_fails_quickly(runner: ContainerRunner, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "true", image=MISSING)
    begun = time.monotonic()
    outcome = await runner.run(spec)
    assert time.monotonic() - begun < 15
    assert (outcome.state, outcome.exit_code) == ("failed", None)
    assert outcome.detail.startswith(f"image {MISSING} is not in the engine and could not be pulled: ")
    assert "\n" not in outcome.detail
    text = log_of(spec)
    assert f"maomao: pulling {MISSING}" in text and outcome.detail in text


async def test_pull_is_bounded_by_pull_timeout(podman: Podman, image: str, tmp_path: Path) -> None:
    # Podman retries a refused registry for about 3 s; the pull timeout ends the wait first
    runner = ContainerRunner(runner_config(podman.url, pull_timeout=0.5))
    begun = time.monotonic()
    outcome = await runner.run(make_spec(tmp_path, "true", image="localhost/maomao-test/nope:2"))
    runner.close()
    assert time.monotonic() - begun < 2.5
    assert outcome.state == "failed"
    assert outcome.detail.endswith("could not be pulled: no answer within 0.5s")


async def test_cancellation_stops_and_removes_the_container(
    runner: ContainerRunner, client: Any, tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, "sh -c 'trap \"\" TERM; echo started; sleep 30'")
    reached_after_run: list[RunOutcome] = []
    with trio.move_on_after(20) as scope:
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                reached_after_run.append(await runner.run(spec))

            nursery.start_soon(run)
            await poll(lambda: "started" in read_tail(spec.log_path))
            begun = time.monotonic()
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught, "the run did not start in time"
    assert reached_after_run == [], "run() returned instead of re-raising Cancelled"
    assert time.monotonic() - begun < 1 + 6  # the grace, and some slack
    assert "maomao: cancelled" in log_of(spec)
    await assert_removed(client, spec)


async def test_remove_orphans(runner: ContainerRunner, client: Any, image: str) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:6]}"
    other = f"other-{uuid.uuid4().hex[:6]}"
    made = [
        client.containers.create(image, ["sleep", "30"], labels={"maomao.member": ghost}, network_mode="none"),
        client.containers.create(image, ["sleep", "30"], labels={"maomao.member": ghost}, network_mode="none"),
        client.containers.create(image, ["sleep", "30"], labels={"maomao.member": other}, network_mode="none"),
    ]
    made[0].start()
    assert await runner.remove_orphans(ghost) == 2
    assert client.containers.list(all=True, filters={"label": f"maomao.member={ghost}"}) == []
    assert [c.id for c in client.containers.list(all=True, filters={"label": f"maomao.member={other}"})] == [made[2].id]
    assert await runner.remove_orphans(other) == 1
    assert await runner.remove_orphans(other) == 0


# -- the engine --------------------------------------------------------------------------------


async def test_unreachable_engine_is_runner_unavailable(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-engine.sock"
    runner = ContainerRunner(runner_config(url))
    with pytest.raises(RunnerUnavailable, match=r"no-engine\.sock"):
        await runner.run(make_spec(tmp_path, "true"))
    with pytest.raises(RunnerUnavailable, match=r"no-engine\.sock"):
        await runner.remove_orphans("lab-1")
    with pytest.raises(RunnerUnavailable, match=r"no-engine\.sock"):
        connect(url, 2)


async def test_engine_going_away_mid_run_fails_the_run_then_reconnects(tmp_path: Path) -> None:
    own = Podman()  # in /tmp: Podman refuses a runroot path longer than 50 characters
    try:
        own.start()
        own.build_image(IMAGE)
        runner = ContainerRunner(runner_config(own.url))
        spec = make_spec(tmp_path / "one", "sh -c 'echo started; sleep 30'")

        async def kill_engine() -> None:
            await poll(lambda: "started" in read_tail(spec.log_path))
            assert own.process is not None
            own.process.kill()
            own.process.wait()

        begun = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_engine)
            outcome = await runner.run(spec)
        assert time.monotonic() - begun < 15
        assert (outcome.state, outcome.exit_code) == ("failed", None)
        assert outcome.detail.startswith(f"container engine {own.url} went away")
        with pytest.raises(RunnerUnavailable, match=r"podman\.sock"):
            await runner.run(make_spec(tmp_path / "two", "true"))
        own.start()
        again = await runner.run(make_spec(tmp_path / "three", "echo back"))
        assert (again.state, again.output_tail) == ("succeeded", "back\n")
        runner.close()
    finally:
        own.stop()


def test_engine_url_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = runner_config("unix:///run/configured.sock")
    unset = runner_config(None)
    assert engine_url(configured, {"DOCKER_HOST": "unix:///env.sock"}) == "unix:///run/configured.sock"
    assert engine_url(unset, {"DOCKER_HOST": "tcp://10.0.0.1:2375"}) == "tcp://10.0.0.1:2375"
    first, second = tmp_path / "docker.sock", tmp_path / "podman.sock"
    monkeypatch.setattr(container_module, "DEFAULT_SOCKETS", (str(first), str(second)))
    runtime = tmp_path / "xdg"
    with pytest.raises(RunnerUnavailable) as caught:
        engine_url(unset, {"XDG_RUNTIME_DIR": str(runtime)})
    message = str(caught.value)
    assert message.startswith("no container engine: set [runner] docker_host or DOCKER_HOST (tried ")
    assert str(first) in message and str(runtime / "podman" / "podman.sock") in message
    (runtime / "podman").mkdir(parents=True)
    (runtime / "podman" / "podman.sock").touch()
    assert engine_url(unset, {"XDG_RUNTIME_DIR": str(runtime)}) == f"unix://{runtime}/podman/podman.sock"
    second.touch()
    assert engine_url(unset, {"XDG_RUNTIME_DIR": str(runtime)}) == f"unix://{second}"


# -- digests -----------------------------------------------------------------------------------


def test_resolve_digest(client: Any, image: str) -> None:
    digest = resolve_digest(client, image, 10)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert f"localhost/maomao-test/busybox@{digest}" in client.images.get(image).attrs["RepoDigests"]
    # a pinned reference resolves to its own digest
    assert resolve_digest(client, f"localhost/maomao-test/busybox@{digest}", 10) == digest


def test_resolve_digest_of_a_missing_image(client: Any) -> None:
    lines: list[str] = []
    with pytest.raises(ImageError) as caught:
        resolve_digest(client, MISSING, 10, lines.append)
    error = caught.value
    assert isinstance(error, MaomaoError) and error.exit_code == 1
    assert str(error).startswith(f"image {MISSING} is not in the engine and could not be pulled: ")
    assert "\n" not in str(error)

