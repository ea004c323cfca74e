"""A real etcd server (or a cluster of them) on free loopback ports.

Tests start their own etcd (Debian's ``etcd-server``) with a temporary data
directory and stop it afterwards; nothing outside the test is touched.

Optionally (keyword arguments, off by default) a cluster serves its clients
over TLS (``tls``: certificates the test made, client certificates required
or not) and takes extra flags (``extra_args``, e.g. ``--auth-token-ttl``);
:meth:`EtcdCluster.enable_auth` adds users and roles and turns etcd's
authentication on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
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


@dataclass(frozen=True)
class ServerTLS:
    """The files of an etcd serving its clients over TLS, and what the harness itself presents."""

    ca: Path  # the CA etcd trusts client certificates of (--trusted-ca-file), and the harness verifies etcd with
    cert: Path  # etcd's certificate (an IP SAN of 127.0.0.1) and key
    key: Path
    client_cert: Path | None = None  # the harness's client certificate (etcdctl, /health)
    client_key: Path | None = None
    client_cert_auth: bool = True  # --client-cert-auth: clients must present a certificate of ``ca``

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.client_cert is not None and self.client_key is not None:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@dataclass
class EtcdNode:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class EtcdCluster:
    """``size`` etcd members on loopback; ``stop``/``start`` one or all."""

    size: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="maomao-etcd-")))
    nodes: list[EtcdNode] = field(default_factory=list)
    #: serve clients over https with these files (peers stay on http)
    tls: ServerTLS | None = None
    #: more etcd flags, e.g. ("--auth-token-ttl", "2")
    extra_args: tuple[str, ...] = ()
    #: etcdctl's ``--user NAME:PASSWORD`` once :meth:`enable_auth` turned authentication on
    root_user: str | None = None

    def __post_init__(self) -> None:
        scheme = "https" if self.tls is not None else "http"
        for i in range(self.size):
            name = f"n{i}"
            self.nodes.append(EtcdNode(name, free_port(), free_port(), self.root / name, scheme=scheme))

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
            *self._tls_args(),
            *self.extra_args,
        ]

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        args = ["--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key)]
        if self.tls.client_cert_auth:
            args += ["--client-cert-auth", "--trusted-ca-file", str(self.tls.ca)]
        return args

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
            context = self.tls.context() if self.tls is not None else None
            with contextlib.suppress(OSError), urllib.request.urlopen(
                node.endpoint + "/health", timeout=1, context=context
            ) as resp:
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
            ["etcdctl", "--endpoints", ",".join(self.endpoints), *self._etcdctl_access(), *args],
            check=True, capture_output=True, text=True, env=env,
        ).stdout

    def _etcdctl_access(self) -> list[str]:
        args = []
        if self.tls is not None:
            args += ["--cacert", str(self.tls.ca)]
            if self.tls.client_cert is not None and self.tls.client_key is not None:
                args += ["--cert", str(self.tls.client_cert), "--key", str(self.tls.client_key)]
        if self.root_user is not None:
            args += ["--user", self.root_user]
        return args

    def enable_auth(self, root_password: str, users: dict[str, tuple[str, dict[str, str]]] | None = None) -> None:
        """Add ``root`` and ``users`` (name -> (password, {key prefix: "read"|"write"|"readwrite"})),
        each with a role of its own name holding those permissions, then turn authentication on."""
        self.etcdctl("user", "add", f"root:{root_password}")
        for name, (password, grants) in (users or {}).items():
            self.etcdctl("user", "add", f"{name}:{password}")
            self.etcdctl("role", "add", name)
            for prefix, permission in grants.items():
                self.etcdctl("role", "grant-permission", name, "--prefix=true", permission, prefix)
            self.etcdctl("user", "grant-role", name, name)
        self.etcdctl("auth", "enable")
        self.root_user = f"root:{root_password}"
