"""A real etcd server (or a cluster of them) on free loopback ports.

Tests start their own etcd (Debian's ``etcd-server``) with a temporary data
directory and stop it afterwards; nothing outside the test is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import end_process

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EtcdNode:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class EtcdCluster:
    """``size`` etcd members on loopback; ``stop``/``start`` one or all."""

    size: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="maomao-etcd-")))
    nodes: list[EtcdNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.size):
            name = f"n{i}"
            self.nodes.append(EtcdNode(name, free_port(), free_port(), self.root / name))

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def _command(self, node: EtcdNode, state: str) -> list[str]:
        initial = ",".join(f"{n.name}={n.peer_url}" for n in self.nodes)
        return [
            ETCD,
            "--name", node.name,
            "--data-dir", str(node.data_dir),
            "--listen-client-urls", node.endpoint,
            "--advertise-client-urls", node.endpoint,
            "--listen-peer-urls", node.peer_url,
            "--initial-advertise-peer-urls", node.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", state,
            "--initial-cluster-token", self.root.name,
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-level", "error",
        ]

    def start(self, index: int | None = None) -> None:
        targets = self.nodes if index is None else [self.nodes[index]]
        for node in targets:
            if node.process is not None and node.process.poll() is None:
                continue
            state = "existing" if node.data_dir.exists() else "new"
            log = open(self.root / f"{node.name}.log", "ab")  # noqa: SIM115 - owned by the process
            node.process = subprocess.Popen(
                self._command(node, state), stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
        for node in targets:
            self._wait_healthy(node)

    def _wait_healthy(self, node: EtcdNode, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert node.process is not None
            if node.process.poll() is not None:
                log = (self.root / f"{node.name}.log").read_text(errors="replace")
                raise RuntimeError(f"etcd {node.name} exited: {log[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(node.endpoint + "/health", timeout=1) as resp:
                if b'"true"' in resp.read():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"etcd {node.name} not healthy within {timeout}s")

    def stop(self, index: int | None = None, sig: int = signal.SIGTERM) -> None:
        targets = self.nodes if index is None else [self.nodes[index]]
        for node in targets:
            if node.process is None:
                continue
            end_process(node.process, sig)
            node.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def etcdctl(self, *args: str) -> str:
        env = {**os.environ, "ETCDCTL_API": "3"}
        return subprocess.run(
            ["etcdctl", "--endpoints", ",".join(self.endpoints), *args],
            check=True, capture_output=True, text=True, env=env,
        ).stdout
