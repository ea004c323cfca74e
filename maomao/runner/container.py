"""The ``container`` runtime: a tool's image on the Docker Engine API (Docker, or Podman's service).

Where the engine is: ``[runner] docker_host``, else ``DOCKER_HOST``, else
the first socket that exists of the usual Docker and Podman ones
(:func:`engine_url`).  The runner connects on its first run, checks the
engine answers before each run and connects again when it went away; an
engine that does not answer is :class:`~maomao.runner.RunnerUnavailable`.

One run:

- the image is the tool's pinned ``repository@digest`` when it has one,
  else its reference; one the engine does not have is pulled (progress
  into the run's log), for at most ``[runner] pull_timeout`` seconds; one
  that cannot be pulled is a failed run saying why;
- the container gets the tool's command (or the image's), only the tool's
  env and ``MAOMAO_*`` (nothing of the daemon's), the tool's data
  directory read-write at its data mount (its ``.git`` covered by an empty
  read-only directory: a tool neither sees nor changes the repository's
  config, hooks, refs or objects), the memory (swap included),
  cpu and pids limits, the network mode, a read-only root (with a tmpfs
  on /tmp) when asked, no capabilities, ``no-new-privileges``, no devices,
  no engine socket, labels ``maomao.tool``/``maomao.run``/``maomao.member``;
- its stdout and stderr are copied into the run's log file as they come
  (``maomao ctl tool logs --follow`` tails that file), and settled from the
  engine's record of them once it has exited;
- its exit is seen by looking at its state (10 ms after the start, then
  twice as late each time, at most a second apart), not by the engine's
  wait, which Podman answers only after its clean-up;
- on timeout it is stopped (SIGTERM, the kill grace, SIGKILL) and the run
  is ``timed_out``; when the run's Trio scope is cancelled it is stopped
  the same way, shielded, and ``Cancelled`` goes on, as with host
  processes (:mod:`maomao.runner.process`);
- a tool that exits 137 under a memory limit (or that the engine says was
  OOM-killed: Podman 4.3 on cgroup v1 never does) failed for its memory;
- the container is always removed afterwards, after the run has returned
  (off its critical path; ``remove_in_background = False`` waits for it);
- an engine that fails during the run makes a failed run naming the engine.

Every blocking call to the engine runs in a worker thread.  Containers a
crashed daemon left behind are found by their ``maomao.member`` label
(:meth:`ContainerRunner.remove_orphans`).

:func:`connect` and :func:`resolve_digest` also serve ``maomao ctl tool
pin``: a tag's repository digest, pulled first when the engine lacks it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import shlex
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import trio

from maomao.errors import MaomaoError
from maomao.runner import RunnerUnavailable, RunOutcome, RunSpec, RunState, read_tail, split_reference

if TYPE_CHECKING:
    from maomao.config import RunnerConfig

logger = logging.getLogger(__name__)

#: sockets tried, in order, when neither ``[runner] docker_host`` nor ``DOCKER_HOST`` is set
DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
#: sockets under ``$XDG_RUNTIME_DIR`` tried after those (rootless Podman, rootless Docker)
RUNTIME_DIR_SOCKETS = ("podman/podman.sock", "docker.sock")
#: seconds an ordinary engine request (inspect, create, start, remove, ...) may take
REQUEST_TIMEOUT = 30.0
#: seconds the log copy may lag behind the container's exit before it is abandoned
LOG_DRAIN = 5.0
#: a progress line per layer at most this often while pulling (status changes always show)
PROGRESS_INTERVAL = 2.0

LABEL_TOOL = "maomao.tool"
LABEL_RUN = "maomao.run"
LABEL_MEMBER = "maomao.member"


class ImageError(MaomaoError):
    """An image the engine does not have and cannot pull, or one without a repository digest."""


# -- finding and connecting to the engine ------------------------------------------------------


def engine_url(config: RunnerConfig, environ: Mapping[str, str] | None = None) -> str:
    """The engine's address: ``[runner] docker_host``, ``DOCKER_HOST``, or the first socket that exists."""
    env = os.environ if environ is None else environ
    if config.docker_host:
        return config.docker_host
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"]
    candidates = list(DEFAULT_SOCKETS)
    if env.get("XDG_RUNTIME_DIR"):
        candidates += [os.path.join(env["XDG_RUNTIME_DIR"], name) for name in RUNTIME_DIR_SOCKETS]
    for path in candidates:
        if Path(path).exists():
            return f"unix://{path}"
    raise RunnerUnavailable(
        "no container engine: set [runner] docker_host or DOCKER_HOST (tried " + ", ".join(candidates) + ")"
    )


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong, without the docker SDK's URL noise where it can."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc) or type(exc).__name__
    return " ".join(text.split())


def connect(url: str, timeout: float | None = REQUEST_TIMEOUT, version: str | None = None) -> Any:
    """A ``docker.DockerClient`` on ``url`` that has answered; else :class:`RunnerUnavailable` naming ``url``.

    ``timeout`` bounds each request (``None``: no bound, for streams).
    ``version`` is the API version to speak; ``None`` asks the engine
    (``GET /version``, which takes Podman most of a second).
    """
    import docker
    import requests

    try:
        client = docker.DockerClient(base_url=url, timeout=timeout, version=version)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise RunnerUnavailable(f"container engine {url} is not reachable: {_reason(exc)}") from None
    try:
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        client.close()
        raise RunnerUnavailable(f"container engine {url} is not reachable: {_reason(exc)}") from None
    return client


# -- images ------------------------------------------------------------------------------------


def _repository_names(repository: str) -> set[str]:
    """The names an engine may give ``repository``: as given, Docker's canonical form, Podman's ``localhost/``."""
    names = {repository}
    first, _, rest = repository.partition("/")
    has_registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
    if not has_registry:
        names.add(f"localhost/{repository}")
        names.add(f"docker.io/{repository}" if rest else f"docker.io/library/{repository}")
    elif first in ("docker.io", "index.docker.io"):
        names.update({f"docker.io/{rest}", rest, rest.removeprefix("library/")})
    return names


def _repo_digest(attrs: Mapping[str, Any], image: str) -> str | None:
    """The ``repository@digest`` among the image's RepoDigests whose repository is ``image``'s."""
    repository, _, wanted = split_reference(image)
    names = _repository_names(repository)
    entries = [str(entry) for entry in attrs.get("RepoDigests") or []]
    matching = [entry for entry in entries if entry.partition("@")[0] in names]
    if wanted:
        exact = [entry for entry in matching if entry.endswith(f"@{wanted}")]
        return exact[0] if exact else None
    return matching[0] if matching else None


def _progress_lines(stream: Iterator[Mapping[str, Any]], stop: threading.Event | None) -> Iterator[str]:
    """Readable lines from a pull's JSON stream; raises :class:`ImageError` on an error line."""
    shown: dict[str, tuple[str, float]] = {}
    for line in stream:
        if stop is not None and stop.is_set():
            return
        error = line.get("error") or (line.get("errorDetail") or {}).get("message")
        if error:
            raise ImageError(" ".join(str(error).split()))
        status = str(line.get("status") or "")
        layer = str(line.get("id") or "")
        progress = str(line.get("progress") or "")
        now = time.monotonic()
        last = shown.get(layer)
        if last is not None and last[0] == status and now - last[1] < PROGRESS_INTERVAL:
            continue
        shown[layer] = (status, now)
        text = " ".join(part for part in (layer + ":" if layer else "", status, progress) if part)
        if text:
            yield text


def _pull(client: Any, image: str, log: Callable[[str], None], stop: threading.Event | None = None) -> None:
    """Pull ``image``, each progress line to ``log``; :class:`ImageError` with the engine's reason if it fails."""
    import docker
    import requests

    try:
        for text in _progress_lines(client.api.pull(image, stream=True, decode=True), stop):
            log(text)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise ImageError(_reason(exc)) from None


def _not_pulled(image: str, reason: str) -> str:
    return f"image {image} is not in the engine and could not be pulled: {reason}"


def _inspect_image(client: Any, image: str) -> dict[str, Any] | None:
    import docker

    try:
        attrs: dict[str, Any] = client.api.inspect_image(image)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code in (400, 404):  # an invalid reference: nothing to pull either
            raise ImageError(f"image {image}: {_reason(exc)}") from None
        raise
    return attrs


def resolve_digest(
    client: Any, image: str, pull_timeout: float, log: Callable[[str], None] | None = None
) -> str:
    """The repository digest (``sha256:…``) of ``image``, pulled first when the engine lacks it.

    Raises :class:`ImageError` for an image that is missing and cannot be
    pulled within ``pull_timeout`` seconds, or that has no repository digest.
    """
    import docker
    import requests

    try:
        return _resolve_digest(client, image, pull_timeout, log)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise RunnerUnavailable(f"the container engine failed: {_reason(exc)}") from None


def _resolve_digest(client: Any, image: str, pull_timeout: float, log: Callable[[str], None] | None) -> str:
    attrs = _inspect_image(client, image)
    if attrs is None:
        failure: list[BaseException] = []
        stop = threading.Event()

        def pull() -> None:
            try:
                _pull(client, image, log or (lambda _line: None), stop)
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)

        worker = threading.Thread(target=pull, name=f"pull {image}", daemon=True)
        worker.start()
        worker.join(pull_timeout)
        if worker.is_alive():
            stop.set()
            raise ImageError(_not_pulled(image, f"no answer within {pull_timeout:g}s"))
        if failure:
            if isinstance(failure[0], ImageError):
                raise ImageError(_not_pulled(image, str(failure[0])))
            raise failure[0]
        attrs = _inspect_image(client, image)
        if attrs is None:
            raise ImageError(_not_pulled(image, "the engine did not keep it"))
    found = _repo_digest(attrs, image)
    if found is None:
        repository, _, pinned = split_reference(image)
        if pinned:
            return pinned
        raise ImageError(
            f"image {image} has no repository digest for {repository} (an image built here and never pushed has none)"
        )
    return found.partition("@")[2]


# -- the run's log file ------------------------------------------------------------------------


class _Log:
    """The run's log file, written by the run and by the log copying thread; closed, it drops writes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = path.open("ab")
        self._lock = threading.Lock()

    def write(self, data: bytes | str) -> None:
        with self._lock:
            if self._file is None:
                return
            self._file.write(data.encode() if isinstance(data, str) else data)
            self._file.flush()

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def size(self) -> int:
        with self._lock:
            return self._file.tell() if self._file is not None else 0

    def replace_from(self, offset: int, data: bytes) -> None:
        """Replace everything from ``offset`` on with ``data``."""
        with self._lock:
            if self._file is None:
                return
            os.ftruncate(self._file.fileno(), offset)
            self._file.seek(offset)
            self._file.write(data)  # append mode: at the new end, which is offset
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class _LogCopy:
    """The container's output on its way into the run's log: followed as it comes, settled at the end.

    A thread follows the engine's log stream (:meth:`follow`), so that
    ``tool logs --follow`` sees output while the tool runs.  Podman ends
    that stream only some hundreds of milliseconds after the exit, so the
    run does not wait for it: :meth:`complete` takes the whole output as
    the engine has it once the container has exited and puts it in place of
    what the stream wrote (the stream can cut a line of stdout where the
    engine's own record puts a line of stderr), and stops the stream.
    """

    #: output larger than this is not read again at the end; the stream is drained instead
    COMPLETE_LIMIT = 16 << 20

    def __init__(self, log: _Log) -> None:
        self.log = log
        self.written = 0
        self.offset = 0  # where the container's output starts in the log file
        self.done = threading.Event()  # set when the stream has ended
        self.done.set()
        self._stopped = False
        self._lock = threading.Lock()

    def follow(self, streams: Any, container_id: str) -> None:
        """Copy the stream until it ends (a thread); an engine that goes away just ends it."""
        try:
            with contextlib.suppress(Exception):
                for chunk in streams.api.logs(container_id, stdout=True, stderr=True, stream=True, follow=True):
                    with self._lock:
                        if self._stopped:
                            return
                        self.log.write(chunk)
                        self.written += len(chunk)
        finally:
            self.done.set()

    def start(self, streams: Any, container_id: str) -> None:
        self.offset = self.log.size()
        self.done.clear()
        threading.Thread(
            target=self.follow, args=(streams, container_id), name=f"logs {container_id[:12]}", daemon=True
        ).start()

    def complete(self, everything: bytes | None) -> None:
        """The container's whole output in place of the stream's copy (None: keep the copy); stop the stream."""
        with self._lock:
            self._stopped = True
            if everything is not None:
                self.log.replace_from(self.offset, everything)


def container_name(tool: str, run_id: str) -> str:
    """``maomao-<tool>-<run id>`` in the characters engines allow."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"maomao-{tool}-{run_id}")[:200]


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _EngineFailed(Exception):
    """The engine refused a request, failed or went away during a run (the message says which)."""

    def __init__(self, message: str, answered: bool) -> None:
        super().__init__(message)
        #: the engine answered (with an error): the connection is fine
        self.answered = answered


class ContainerRunner:
    """Runs tools as containers on a Docker Engine API."""

    name = "container"

    def __init__(self, config: RunnerConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._environ = dict(os.environ if environ is None else environ)
        self.url: str | None = None
        self._client: Any = None  # requests bounded by REQUEST_TIMEOUT
        self._streams: Any = None  # logs, waits, pulls: no bound of their own
        self._lock = trio.Lock()
        # the long waits (logs, wait, pull) must not use up Trio's default thread limiter
        self._limiter = trio.CapacityLimiter(256)
        #: remove a run's container after the run has returned (off its critical path: Podman's
        #: removal waits for its clean-up after the exit); one a shutdown interrupts is left to
        #: remove_orphans.  A one-shot caller (ctl tool run --here) sets it false.
        self.remove_in_background = True

    # -- the connection

    def _connect(self) -> tuple[Any, Any]:
        import docker
        import requests

        if self._client is not None:
            try:
                self._client.ping()
                return self._client, self._streams
            except (docker.errors.DockerException, requests.RequestException):
                self._drop()
        url = self.url = engine_url(self.config, self._environ)
        client = connect(url, REQUEST_TIMEOUT)
        try:
            streams = connect(url, None, client.api.api_version)
        except RunnerUnavailable:
            client.close()
            raise
        self._client, self._streams = client, streams
        return client, streams

    def _drop(self) -> None:
        for client in (self._client, self._streams):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._client = self._streams = None

    async def _clients(self) -> tuple[Any, Any]:
        async with self._lock:
            return await trio.to_thread.run_sync(self._connect, abandon_on_cancel=True)

    # -- a run

    async def run(self, spec: RunSpec) -> RunOutcome:
        client, streams = await self._clients()
        url = self.url
        if spec.workdir.is_symlink() or (spec.workdir.exists() and not spec.workdir.is_dir()):
            # a link a tool left in its place: running there would hand the tool what the link points at
            raise RunnerUnavailable(f"data directory {spec.workdir} is not a directory (a symlink?); not run")
        spec.workdir.mkdir(parents=True, exist_ok=True)
        started = datetime.now(UTC)
        log = _Log(spec.log_path)
        container_id: str | None = None
        copy = _LogCopy(log)
        resolved: str | None = None
        state: RunState = "failed"
        code: int | None = None
        detail = ""
        try:
            try:
                resolved = await self._image(client, streams, spec, log)
                container_id = await self._create(client, spec)
                state, code, detail = await self._execute(client, streams, container_id, spec, log, copy)
            except ImageError as exc:
                detail = str(exc)
                log.line(f"maomao: {detail}")
            except _EngineFailed as exc:
                detail = f"container engine {url} {exc}"
                log.line(f"\nmaomao: {detail}")
                if not exc.answered:
                    self._drop()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                if container_id is not None:
                    with contextlib.suppress(_EngineFailed):
                        await self._stop(client, container_id, spec.kill_grace)
                    await self._complete(client, container_id, copy)
                log.write("\nmaomao: cancelled\n")
            raise
        finally:
            with trio.CancelScope(shield=True):
                if container_id is not None:
                    if self.remove_in_background:
                        trio.lowlevel.spawn_system_task(self._remove_quietly, client, container_id)
                    else:
                        await self._remove(client, container_id)
                log.close()
        finished = datetime.now(UTC)
        return RunOutcome(state, code, started, finished, read_tail(spec.log_path), detail, resolved)

    async def _call(self, function: Callable[[], Any], what: str, abandon: bool = False) -> Any:
        """``function()`` in a thread; the engine's failures become :class:`_EngineFailed` saying ``what``."""
        import docker
        import requests

        try:
            return await trio.to_thread.run_sync(function, abandon_on_cancel=abandon, limiter=self._limiter)
        except docker.errors.APIError as exc:
            raise _EngineFailed(f"refused to {what}: {_reason(exc)}", answered=True) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _EngineFailed(f"went away ({what}): {_reason(exc)}", answered=False) from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise _EngineFailed(f"failed to {what}: {_reason(exc)}", answered=False) from None

    async def _image(self, client: Any, streams: Any, spec: RunSpec, log: _Log) -> str:
        """Make sure the engine has the image (pulling it); what ran: ``repo@digest`` or the image id."""
        image = spec.image
        attrs = await self._call(lambda: _inspect_image(client, image), f"inspect image {image}")
        if attrs is None:
            log.line(f"maomao: pulling {image}")
            stop = threading.Event()  # an abandoned pull stops at its next line
            try:
                with trio.move_on_after(self.config.pull_timeout) as timer:
                    await trio.to_thread.run_sync(
                        lambda: _pull(streams, image, log.line, stop), abandon_on_cancel=True, limiter=self._limiter
                    )
            except ImageError as exc:
                raise ImageError(_not_pulled(image, str(exc))) from None
            finally:
                stop.set()
            if timer.cancelled_caught:
                raise ImageError(_not_pulled(image, f"no answer within {self.config.pull_timeout:g}s"))
            attrs = await self._call(lambda: _inspect_image(client, image), f"inspect image {image}")
            if attrs is None:
                raise ImageError(_not_pulled(image, "the engine did not keep it"))
        if "@" in image:
            return image  # found by its digest (an untagged image lists no RepoDigests on Podman)
        return _repo_digest(attrs, image) or str(attrs.get("Id") or image)

    def _create_kwargs(self, spec: RunSpec) -> dict[str, Any]:
        confinement = spec.confinement
        labels = {LABEL_TOOL: spec.tool.name, LABEL_RUN: spec.run_id, LABEL_MEMBER: spec.member}
        binds = {str(spec.workdir.resolve()): {"bind": confinement.data_mount, "mode": "rw"}}
        if stat.S_ISDIR(_lstat_mode(spec.workdir / ".git")):
            # the data repository's own .git: covered, so a tool cannot rewrite its config, hooks or objects
            mount = confinement.data_mount.rstrip("/") + "/.git"
            binds[str(_empty_directory(spec.workdir.parent / ".maomao"))] = {"bind": mount, "mode": "ro"}
        host: dict[str, Any] = {
            "binds": binds,
            "network_mode": confinement.network,
            "read_only": confinement.read_only,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "privileged": False,
        }
        if confinement.read_only:
            host["tmpfs"] = {"/tmp": "rw,nosuid,nodev,size=64m"}
        if confinement.memory:
            host["mem_limit"] = host["memswap_limit"] = confinement.memory
        if confinement.cpus:
            host["nano_cpus"] = round(confinement.cpus * 1e9)
        if confinement.pids:
            host["pids_limit"] = confinement.pids
        return {
            "command": shlex.split(spec.tool.command) if spec.tool.command else None,
            "environment": spec.environment(base={}),
            "labels": labels,
            "stdin_open": False,
            "tty": False,
            "host_config": host,
        }

    async def _create(self, client: Any, spec: RunSpec) -> str:
        import docker

        options = self._create_kwargs(spec)
        host_config = client.api.create_host_config(**options.pop("host_config"))
        name = container_name(spec.tool.name, spec.run_id)

        def create() -> str:
            try:
                made = client.api.create_container(spec.image, name=name, host_config=host_config, **options)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # the name is taken (another engine user, a crashed run)
                    raise
                made = client.api.create_container(
                    spec.image, name=f"{name}-{secrets.token_hex(3)}", host_config=host_config, **options
                )
            return str(made["Id"])

        container_id: str = await self._call(create, "create the container")
        return container_id

    async def _complete(self, client: Any, container_id: str, copy: _LogCopy) -> None:
        """All of the stopped container's output into the log, then nothing more from the stream."""
        everything: bytes | None = None
        if copy.written < copy.COMPLETE_LIMIT:
            with contextlib.suppress(_EngineFailed):
                everything = await self._call(
                    lambda: client.api.logs(container_id, stdout=True, stderr=True, stream=False, follow=False),
                    "read the container's output",
                )
        if everything is None:  # too much to read again, or the engine did not answer: let the stream end
            await trio.to_thread.run_sync(copy.done.wait, LOG_DRAIN, abandon_on_cancel=True, limiter=self._limiter)
        copy.complete(everything)

    async def _execute(
        self, client: Any, streams: Any, container_id: str, spec: RunSpec, log: _Log, copy: _LogCopy
    ) -> tuple[RunState, int | None, str]:
        """Start the container, copy its output, wait for it (bounded); its state, exit code and detail."""
        await self._call(lambda: client.api.start(container_id), "start the container")
        copy.start(streams, container_id)
        with trio.move_on_after(spec.timeout if spec.timeout > 0 else math.inf) as timer:
            await self._exited(client, container_id)
        if timer.cancelled_caught:
            await self._stop(client, container_id, spec.kill_grace)
        await self._complete(client, container_id, copy)
        attrs = await self._call(lambda: client.api.inspect_container(container_id), "inspect the container")
        exited = attrs.get("State") or {}
        code = _as_int(exited.get("ExitCode"))
        if timer.cancelled_caught:
            log.write(f"\nmaomao: timed out after {spec.timeout:g}s\n")
            return "timed_out", code, ""
        memory = spec.confinement.memory
        if code != 0 and memory and (exited.get("OOMKilled") or code == 137):
            detail = f"memory limit {memory} exceeded (killed)"
            log.write(f"\nmaomao: {detail}\n")
            return "failed", code, detail
        return ("succeeded" if code == 0 else "failed"), code, ""

    async def _exited(self, client: Any, container_id: str) -> None:
        """Return once the container has exited, by looking at its state.

        Not the engine's wait: Podman's Docker-compatible wait answers only
        after its clean-up after the exit (the network torn down: hundreds of
        milliseconds, most of a short run); the state says ``exited`` at once.
        The first look is after 10 ms, each next one twice as late, at most a
        second apart.  An engine that goes away fails the look.
        """
        delay = 0.01
        while True:
            await trio.sleep(delay)
            attrs = await self._call(lambda: client.api.inspect_container(container_id), "inspect the container")
            state = attrs.get("State") or {}
            if not state.get("Running") and state.get("Status") in ("exited", "stopped", "dead"):
                return
            delay = min(delay * 2, 1.0)

    async def _stop(self, client: Any, container_id: str, grace: float) -> None:
        """SIGTERM, ``grace`` seconds, SIGKILL: the engine's stop, bounded even if the engine hangs."""
        seconds = max(0, math.ceil(grace))
        with trio.move_on_after(seconds + REQUEST_TIMEOUT + 5):
            await self._call(
                lambda: client.api.stop(container_id, timeout=seconds), "stop the container", abandon=True
            )

    async def _remove(self, client: Any, container_id: str) -> None:
        """Force-remove the container; an engine that fails here is left to :meth:`remove_orphans`."""
        with trio.move_on_after(REQUEST_TIMEOUT + 5), contextlib.suppress(_EngineFailed):
            await self._call(
                lambda: _remove_container(client, container_id), "remove the container", abandon=True
            )

    async def _remove_quietly(self, client: Any, container_id: str) -> None:
        try:
            await self._remove(client, container_id)
        except Exception:  # a system task must not raise; remove_orphans cleans up after
            logger.exception("removing container %s failed", container_id[:12])

    async def remove_orphans(self, member: str) -> int:
        """Force-remove the containers labelled ``maomao.member=<member>`` (a crashed daemon's); how many.

        The daemon calls it when it starts, before it runs anything (it would
        remove its own runs' containers too).  Raises :class:`RunnerUnavailable` when the engine does not answer.
        """
        client, _ = await self._clients()

        def sweep() -> int:
            found = client.api.containers(all=True, filters={"label": f"{LABEL_MEMBER}={member}"})
            for entry in found:
                _remove_container(client, str(entry["Id"]))
            return len(found)

        try:
            removed: int = await self._call(sweep, f"remove the containers of member {member}")
        except _EngineFailed as exc:
            raise RunnerUnavailable(f"container engine {self.url} {exc}") from None
        return removed

    def close(self) -> None:
        """Close the connections to the engine (a later run connects again)."""
        self._drop()


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def _empty_directory(parent: Path) -> Path:
    """An empty directory under ``parent``, mounted read-only over a data repository's ``.git``."""
    path = parent / "empty"
    path.mkdir(parents=True, exist_ok=True)
    if stat.S_ISLNK(_lstat_mode(path)) or any(path.iterdir()):
        path = Path(tempfile.mkdtemp(prefix="empty-", dir=parent))
    path.chmod(0o555)
    return path


def _remove_container(client: Any, container_id: str) -> None:
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_container(container_id, force=True, v=True)
