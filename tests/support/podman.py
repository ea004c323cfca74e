"""A real Podman serving the Docker Engine API, in storage of its own.

Tests start ``podman system service`` on a unix socket in a temporary
directory, with ``CONTAINERS_CONF`` pointing at ``tests/support/containers.conf``
(runc, cgroupfs, low default ulimits: what this sandbox allows) and with
its own ``--root``, ``--runroot`` and ``--tmpdir``, so nothing it builds or
runs touches the machine's default storage or another test session's.
There is no registry: :meth:`Podman.build_image` makes images from a root
file system holding Debian's static busybox (``podman import``).

:meth:`Podman.stop` removes every container and image, stops the service
and deletes the directory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.processes import end_process

PODMAN = shutil.which("podman") or "/usr/bin/podman"
BUSYBOX = Path("/bin/busybox")
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")

#: the programs every test image has, as links to busybox
APPLETS = (
    "sh", "echo", "cat", "ls", "date", "sleep", "mkdir", "head", "tail", "dd", "env", "true", "false",
    "grep", "seq", "printf", "wc", "id", "touch", "rm", "yes", "ip", "ifconfig", "test", "kill",
)


def ping(path: Path, timeout: float = 1.0) -> bool:
    """Whether an engine answers ``GET /_ping`` on the unix socket at ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    except OSError:
        return False
    status = answer.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[0].startswith(b"HTTP/") and status[1] == b"200"


class Podman:
    """``podman system service`` on ``unix://<root>/podman.sock`` with storage under ``root``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="maomao-podman-"))
        self.socket = self.root / "podman.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The engine's address, as ``[runner] docker_host`` takes it."""
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """The environment every podman command here runs with."""
        return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}

    def _global(self) -> list[str]:
        return [
            PODMAN,
            "--root", str(self.root / "storage"),
            "--runroot", str(self.root / "run"),
            "--tmpdir", str(self.root / "tmp"),
        ]

    def podman(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """Run ``podman ARGS`` on this instance's storage; its stdout."""
        done = subprocess.run(
            [*self._global(), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def start(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        log = open(self.root / "service.log", "ab")  # noqa: SIM115 - owned by the process
        # in our directory: conmon (2.1.6, cgroup v1) writes the file "oom" of an OOM-killed
        # container into its working directory, not where Podman looks (so OOMKilled stays false)
        self.process = subprocess.Popen(
            [*self._global(), "system", "service", "--time=0", self.url],
            env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not ping(self.socket):
            if self.process.poll() is not None:
                raise RuntimeError(f"podman system service exited {self.process.returncode}: {self.logs()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not answer within {timeout}s: {self.logs()[-2000:]}")
            time.sleep(0.05)

    def logs(self) -> str:
        try:
            return (self.root / "service.log").read_text(errors="replace")
        except OSError:
            return ""

    def client(self, timeout: float = 30) -> Any:
        """A ``docker.DockerClient`` on this engine (the caller closes it)."""
        import docker

        return docker.DockerClient(base_url=self.url, timeout=timeout)

    def containers(self, label: str | None = None) -> list[str]:
        """Names of all containers (running or not), optionally only those with ``label`` (``k=v``)."""
        args = ["ps", "-a", "--format", "{{.Names}}"]
        if label:
            args += ["--filter", f"label={label}"]
        return [line for line in self.podman(*args).splitlines() if line]

    def build_image(
        self,
        tag: str,
        files: Mapping[str, bytes | str] | None = None,
        cmd: Sequence[str] | None = None,
        workdir: str | None = None,
    ) -> str:
        """Import a busybox root file system plus ``files`` (path in the image -> content) as ``tag``.

        Returns the image id (``sha256:…``).  Importing again under the same
        tag moves the tag; images pinned by digest keep running the old one.
        """
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:

            def add(name: str, kind: bytes, data: bytes = b"", mode: int = 0o644, link: str = "") -> None:
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data) if data else None)

            for directory in ("bin", "tmp", "etc", "proc", "sys", "dev", "root", "usr", "usr/src", "usr/src/app"):
                add(directory, tarfile.DIRTYPE, mode=0o1777 if directory == "tmp" else 0o755)
            add("bin/busybox", tarfile.REGTYPE, BUSYBOX.read_bytes(), mode=0o755)
            for applet in APPLETS:
                add(f"bin/{applet}", tarfile.SYMTYPE, link="busybox")
            add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
            add("etc/group", tarfile.REGTYPE, b"root:x:0:\nnogroup:x:65534:\n")
            made = {"bin", "tmp", "etc", "proc", "sys", "dev", "root", "usr", "usr/src", "usr/src/app"}
            for path, content in (files or {}).items():
                name = path.strip("/")
                parts = name.split("/")
                for depth in range(1, len(parts)):
                    parent = "/".join(parts[:depth])
                    if parent not in made:
                        add(parent, tarfile.DIRTYPE, mode=0o755)
                        made.add(parent)
                data = content.encode() if isinstance(content, str) else content
                add(name, tarfile.REGTYPE, data, mode=0o755 if data.startswith(b"#!") else 0o644)
        archive = self.root / f"rootfs-{os.getpid()}-{time.monotonic_ns()}.tar"
        archive.write_bytes(buffer.getvalue())
        changes = ["--change", f"CMD {json.dumps(list(cmd) if cmd else ['/bin/sh'])}"]
        if workdir:
            changes += ["--change", f"WORKDIR {workdir}"]
        try:
            out = self.podman("import", "--quiet", *changes, str(archive), tag)
        finally:
            archive.unlink()
        image_id = out.strip().splitlines()[-1]
        return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"

    def remove_image(self, tag: str) -> None:
        """Remove the image ``tag`` (forcing; missing is fine)."""
        self.podman("rmi", "--force", "--ignore", tag)

    def stop(self) -> None:
        """Remove all containers and images, stop the service, delete the directory."""
        if self.root.exists():
            with contextlib.suppress(Exception):
                self.podman("rm", "--all", "--force", "--time", "0", check=False)
            with contextlib.suppress(Exception):
                self.podman("rmi", "--all", "--force", check=False)
        if self.process is not None:
            end_process(self.process)
            self.process = None
        self._unmount()
        shutil.rmtree(self.root, ignore_errors=True)

    def _unmount(self) -> None:
        """Lazily unmount whatever podman left mounted under the directory."""
        prefix = str(self.root) + "/"
        with open("/proc/self/mounts") as mounts:
            targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for target in sorted(targets, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
