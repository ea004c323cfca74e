"""Access to the store, against the real thing (issue 7, part 4).

* etcd serving https and requiring client certificates
  (``--client-cert-auth``), with certificates this module makes with
  openssl: a CA, etcd's certificate (IP SAN 127.0.0.1), a client
  certificate, and an unrelated second CA with a client certificate of its
  own for the wrong cases;
* etcd with authentication on (``etcdctl auth enable``): a user with a role
  on the test's prefix, a reader, a user with no role; simple tokens that
  expire after a second unused (``--auth-token-ttl 1``), so renewal is
  exercised for real;
* the embedded store's files private to the user, whatever the umask.

For each: ``maoctl`` and a real daemon (READY=1, a tool run on request,
which it sees through its watch) work with the right credentials; with the
wrong ones ``maoctl`` exits 1 with one line naming the endpoint, and the
daemon exits 1 with that line (what systemd's ``Restart=on-failure`` and an
operator reading ``systemctl status`` need), never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from maomao.model import Run
from maomao.store import Store, StoreAccessDenied, inline
from maomao.store.embedded import EmbeddedStore
from maomao.store.etcd import EtcdStore
from tests.support.cli import (
    MAOCTL,
    Ctl,
    Result,
    clean_env,
    embedded_contents,
    embedded_put,
    etcd_contents,
    run,
)
from tests.support.daemons import Daemon, Daemons, StoreSpec, wait_for
from tests.support.etcd import EtcdCluster, ServerTLS

pytestmark = pytest.mark.integration

PREFIX = "/access/"
TOOL_ARGS = ["example.org/test/tool:1", "https://git.example.org/data.git", "https://git.example.org/code.git", "data"]


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    root: Path

    def __getitem__(self, name: str) -> Path:
        return self.root / name


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(root: Path) -> PKI:
    """ca.crt signs server.crt (IP SAN 127.0.0.1) and client.crt; other-ca.crt signs rogue.crt."""
    root.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *curve, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                "-subj", f"/CN=maomao test {ca}", cwd=root)
    # clientAuth too: etcd's gateway dials etcd's gRPC side with this certificate (503 without it)
    (root / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    (root / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("rogue", "other-ca", "client.ext")):
        openssl("req", "-new", *curve, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                cwd=root)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext, cwd=root)
    return PKI(root)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_etcd(pki: PKI) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(1, tls=ServerTLS(pki["ca.crt"], pki["server.crt"], pki["server.key"],
                                           pki["client.crt"], pki["client.key"]))
    cluster.start()
    yield cluster
    cluster.destroy()


ROOT_PASSWORD = "root-pw"
USERS = {
    "maomao": ("s3cret pw", {PREFIX: "readwrite"}),
    "reader": ("reader-pw", {PREFIX: "read"}),
    "stranger": ("stranger-pw", {}),
}


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(1, extra_args=("--auth-token-ttl", "1"))
    cluster.start()
    cluster.enable_auth(ROOT_PASSWORD, USERS)
    yield cluster
    cluster.destroy()


# -- the store's settings, for ctl, the daemons and the test itself --------------------------


@dataclass
class AccessSpec(StoreSpec):
    """A StoreSpec whose ``[store]`` section carries access keys; the test's own Store has the right ones."""

    keys: dict[str, str] = field(default_factory=dict)
    right: dict[str, str] = field(default_factory=dict)

    def section(self) -> str:
        return super().section() + "".join(f"{key} = {value}\n" for key, value in self.keys.items())

    def open(self) -> Store:
        return EtcdStore(self.endpoints, timeout=self.timeout, offload=inline, **self.right)  # type: ignore[arg-type]


def tls_keys(pki: PKI, ca: str = "ca", client: str | None = "client") -> dict[str, str]:
    keys = {"ca_cert": str(pki[f"{ca}.crt"])}
    if client is not None:
        keys |= {"cert": str(pki[f"{client}.crt"]), "key": str(pki[f"{client}.key"])}
    return keys


def tls_spec(cluster: EtcdCluster, pki: PKI, prefix: str, **wrong: str | None) -> AccessSpec:
    right = tls_keys(pki)
    return AccessSpec("etcd", prefix, endpoints=tuple(cluster.endpoints), keys=tls_keys(pki, **wrong),  # type: ignore[arg-type]
                      right=right)


def auth_spec(cluster: EtcdCluster, prefix: str, keys: dict[str, str]) -> AccessSpec:
    return AccessSpec("etcd", prefix, endpoints=tuple(cluster.endpoints), keys=keys,
                      right={"user": "maomao", "password": USERS["maomao"][0]})


def ctl_on(tmp_path: Path, cluster: EtcdCluster, spec: StoreSpec, env: dict[str, str] | None = None) -> Ctl:
    home = tmp_path / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    config = home / "config.ini"
    config.write_text(spec.section())

    def no_put(key: str, value: bytes) -> None:
        raise AssertionError("not used")

    return Ctl("etcd", home, config, etcd_contents(cluster.etcdctl, spec.prefix), no_put, prefix=spec.prefix,
               extra_env=dict(env or {}))


def one_line(result: Result, endpoint: str) -> str:
    """Assert ctl failed with exit 1 and one ``error:`` line naming the endpoint; return it."""
    line = result.error(1)
    assert line.startswith(f"error: etcd at {endpoint}: "), line
    for noise in ("Traceback", "urllib3", "requests.", "HTTPSConnectionPool", "Max retries", "_ssl.c"):
        assert noise not in result.stderr, result
    return line


def run_on_request(cluster: Daemons, tool: str, timeout: float = 30) -> Run:
    run_id = f"now-{uuid.uuid4().hex[:8]}"
    cluster.records.request(run_id, tool)

    def done() -> Run | None:
        return next((r for r in cluster.records.runs(tool) if r.id == run_id and r.finished), None)

    try:
        return wait_for(f"run {run_id} of {tool}", done, timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None


def refused_daemon(cluster: Daemons, name: str, endpoint: str, env: dict[str, str] | None = None) -> str:
    """Start a daemon that will be refused: it exits 1 with one line naming the endpoint, no READY."""
    daemon: Daemon = cluster.launch(cluster.make(name, env))
    assert daemon.process is not None
    code = daemon.process.wait(30)
    assert code == 1, daemon.stderr()
    lines = daemon.stderr().splitlines()
    assert len(lines) == 1, daemon.stderr()
    assert lines[0].startswith(f"error: etcd at {endpoint}: "), lines[0]
    assert "Traceback" not in daemon.stderr()
    daemon.notify.drain()
    assert not any(m.has("READY") for m in daemon.notify.received), daemon.notify.received
    return lines[0]


MakeDaemons = Callable[[StoreSpec], Daemons]


@pytest.fixture
def make_daemons(tmp_path: Path) -> Iterator[MakeDaemons]:
    """Daemons on a store each; every daemon started is killed at the end."""
    made: list[Daemons] = []

    def make(spec: StoreSpec) -> Daemons:
        harness = Daemons(tmp_path / f"cluster{len(made)}", spec)
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            harness.close()


def unique_prefix() -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:8]}/"


# -- TLS with client certificates -------------------------------------------------------------


def test_ctl_over_tls_with_a_client_certificate(tmp_path: Path, tls_etcd: EtcdCluster, pki: PKI) -> None:
    prefix = unique_prefix()
    # [store] ca_cert wins over $REQUESTS_CA_BUNDLE (requests lets it override a session's CA)
    ctl = ctl_on(tmp_path, tls_etcd, tls_spec(tls_etcd, pki, prefix),
                 env={"REQUESTS_CA_BUNDLE": str(pki["other-ca.crt"])})
    assert tls_etcd.endpoints[0].startswith("https://127.0.0.1:")
    ctl("tool", "add", "alexa", "Jane", *TOOL_ARGS).ok()
    assert [t["name"] for t in ctl("tool", "get", "--json").json()] == ["alexa"]
    assert "alexa" in ctl.records("tools")


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        ({"ca": "other-ca"}, "TLS: certificate verify failed: unable to get local issuer certificate"),
        # etcd (Go) answers a missing or untrusted client certificate with an alert or by hanging up,
        # whichever the client reads first
        ({"client": None}, "TLS: "),
        ({"client": "rogue"}, "TLS: "),
    ],
    ids=["wrong-ca", "no-client-cert", "client-cert-of-another-ca"],
)
def test_ctl_with_the_wrong_certificates_is_one_line(
    tmp_path: Path, tls_etcd: EtcdCluster, pki: PKI, wrong: dict[str, str | None], expected: str
) -> None:
    prefix = unique_prefix()
    ctl = ctl_on(tmp_path, tls_etcd, tls_spec(tls_etcd, pki, prefix, **wrong))
    endpoint = tls_etcd.endpoints[0]
    line = one_line(ctl("tool", "get"), endpoint)
    assert line.startswith(f"error: etcd at {endpoint}: {expected}"), line
    if "client" in wrong:
        assert "client certificate" in line, line
    one_line(ctl("tool", "add", "alexa", "Jane", *TOOL_ARGS), endpoint)
    assert ctl.contents() == {}


def test_certificate_files_that_do_not_work_are_one_line(tmp_path: Path, tls_etcd: EtcdCluster, pki: PKI) -> None:
    endpoint = tls_etcd.endpoints[0]
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    for keys, expected in (
        ({"key": str(pki["rogue.key"])}, "TLS: key values mismatch (check [store] ca_cert, cert and key)"),
        ({"ca_cert": str(not_pem)}, "TLS: no certificate or crl found (check [store] ca_cert, cert and key)"),
    ):
        spec = tls_spec(tls_etcd, pki, unique_prefix())
        spec.keys |= keys
        line = one_line(ctl_on(tmp_path, tls_etcd, spec)("tool", "get"), endpoint)
        assert line == f"error: etcd at {endpoint}: {expected}", line


def test_a_daemon_over_tls_runs_a_tool_and_refuses_to_start_with_the_wrong_ca(
    tmp_path: Path, tls_etcd: EtcdCluster, pki: PKI, make_daemons: MakeDaemons
) -> None:
    prefix = unique_prefix()
    cluster = make_daemons(tls_spec(tls_etcd, pki, prefix))
    daemon = cluster.start("alpha")
    cluster.records.add_tool("hello", "echo hello > hello.txt")
    run = run_on_request(cluster, "hello")
    assert (run.state, run.member) == ("succeeded", "alpha"), run
    assert daemon.running, daemon.exited()

    wrong = make_daemons(tls_spec(tls_etcd, pki, prefix, ca="other-ca"))
    line = refused_daemon(wrong, "beta", tls_etcd.endpoints[0])
    assert "TLS: certificate verify failed" in line
    unknown = make_daemons(tls_spec(tls_etcd, pki, prefix, client="rogue"))
    refused_daemon(unknown, "gamma", tls_etcd.endpoints[0])
    assert set(cluster.records.members()) == {"alpha"}
    assert daemon.stop() == 0


async def test_the_watch_stream_goes_over_tls_too(tls_etcd: EtcdCluster, pki: PKI) -> None:
    prefix = unique_prefix()
    store = EtcdStore(tls_etcd.endpoints, timeout=2, **tls_keys(pki))
    first = await store.put(prefix + "a", b"1")
    seen = []
    with trio.fail_after(10):
        async for event in store.watch(prefix, first):
            seen.append((event.type, event.kv.key, event.kv.value))
            if len(seen) == 1:
                await store.put(prefix + "b", b"2")
            else:
                break
    assert seen == [("put", prefix + "a", b"1"), ("put", prefix + "b", b"2")]
    await store.aclose()

    wrong = EtcdStore(tls_etcd.endpoints, timeout=2, **tls_keys(pki, ca="other-ca"))
    with trio.fail_after(10), pytest.raises(StoreAccessDenied) as caught:
        async for _ in wrong.watch(prefix, first):
            pass
    assert str(caught.value).startswith(f"etcd at {tls_etcd.endpoints[0]}: TLS: certificate verify failed")
    await wrong.aclose()


# -- user and password ------------------------------------------------------------------------


def test_ctl_with_a_password_file_and_with_the_environment(tmp_path: Path, auth_etcd: EtcdCluster) -> None:
    prefix = unique_prefix()
    secret = tmp_path / "etcd.pw"
    secret.write_text(USERS["maomao"][0] + "\n")
    secret.chmod(0o600)
    ctl = ctl_on(tmp_path, auth_etcd, auth_spec(auth_etcd, prefix, {"user": "maomao", "password_file": str(secret)}))
    ctl("tool", "add", "alexa", "Jane", *TOOL_ARGS).ok()
    time.sleep(2.5)  # the simple token expires unused: the next command authenticates anew (a new process anyway)
    assert [t["name"] for t in ctl("tool", "get", "--json").json()] == ["alexa"]

    by_env = ctl_on(tmp_path, auth_etcd, auth_spec(auth_etcd, prefix, {"user": "maomao"}),
                    env={"MAOMAO_STORE_PASSWORD": USERS["maomao"][0]})
    by_env("tool", "add", "tranco", "Jane", *TOOL_ARGS).ok()
    assert sorted(by_env.records("tools")) == ["alexa", "tranco"]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"user": "maomao", "password": "wrong"},
         "authentication failed: invalid user name or password (user 'maomao')"),
        ({"user": "nobody", "password": "x"}, "authentication failed: invalid user name or password (user 'nobody')"),
        ({}, "authentication required: etcd has authentication enabled; set [store] user and password"),
        ({"user": "stranger", "password": USERS["stranger"][0]},
         "permission denied: user 'stranger' may not read /access/"),
    ],
    ids=["wrong-password", "unknown-user", "no-credentials", "no-role"],
)
def test_ctl_with_the_wrong_credentials_is_one_line(
    tmp_path: Path, auth_etcd: EtcdCluster, keys: dict[str, str], expected: str
) -> None:
    prefix = unique_prefix()
    ctl = ctl_on(tmp_path, auth_etcd, auth_spec(auth_etcd, prefix, keys))
    endpoint = auth_etcd.endpoints[0]
    line = one_line(ctl("tool", "get"), endpoint)
    assert line.startswith(f"error: etcd at {endpoint}: {expected}"), line
    assert "wrong" not in line.replace("'maomao'", "")  # the password is never printed
    one_line(ctl("tool", "add", "alexa", "Jane", *TOOL_ARGS), endpoint)
    assert ctl.contents() == {}


def test_a_reader_can_list_but_not_write(tmp_path: Path, auth_etcd: EtcdCluster) -> None:
    prefix = unique_prefix()
    ctl = ctl_on(tmp_path, auth_etcd, auth_spec(auth_etcd, prefix, {"user": "reader",
                                                                     "password": USERS["reader"][0]}))
    assert ctl("tool", "get", "--json").json() == []
    line = one_line(ctl("tool", "add", "alexa", "Jane", *TOOL_ARGS), auth_etcd.endpoints[0])
    assert f"permission denied: user 'reader' may not write {prefix}tools/alexa" in line, line
    assert ctl.contents() == {}


def test_a_daemon_with_a_password_runs_tools_through_token_expiry_and_refuses_a_wrong_one(
    tmp_path: Path, auth_etcd: EtcdCluster, make_daemons: MakeDaemons
) -> None:
    prefix = unique_prefix()
    spec = auth_spec(auth_etcd, prefix, {"user": "maomao"})
    cluster = make_daemons(spec)
    daemon = cluster.start("alpha", env={"MAOMAO_STORE_PASSWORD": USERS["maomao"][0]})
    cluster.records.add_tool("hello", "echo hello > hello.txt")
    assert run_on_request(cluster, "hello").state == "succeeded"
    # tokens live a second unused; the daemon's watch and requests go on past many of them
    time.sleep(3)
    assert run_on_request(cluster, "hello").state == "succeeded"
    assert daemon.running, daemon.exited()
    assert "Traceback" not in daemon.stderr()

    wrong = make_daemons(auth_spec(auth_etcd, prefix, {"user": "maomao", "password": "wrong"}))
    line = refused_daemon(wrong, "beta", auth_etcd.endpoints[0])
    assert "authentication failed: invalid user name or password (user 'maomao')" in line
    reader = make_daemons(auth_spec(auth_etcd, prefix, {"user": "reader", "password": USERS["reader"][0]}))
    line = refused_daemon(reader, "gamma", auth_etcd.endpoints[0])
    assert "permission denied: user 'reader' may not write" in line, line
    assert set(cluster.records.members()) == {"alpha"}
    assert daemon.stop() == 0


def test_a_user_removed_under_a_running_daemon_is_logged_and_it_goes_on_once_restored(
    tmp_path: Path, auth_etcd: EtcdCluster, make_daemons: MakeDaemons
) -> None:
    prefix = unique_prefix()

    def add_user() -> None:
        auth_etcd.etcdctl("user", "add", "changing:first-pw")
        auth_etcd.etcdctl("user", "grant-role", "changing", "maomao")  # readwrite on PREFIX

    add_user()
    spec = auth_spec(auth_etcd, prefix, {"user": "changing", "password": "first-pw"})
    cluster = make_daemons(spec)
    daemon = cluster.start("alpha")
    cluster.records.add_tool("hello", "echo hello > hello.txt")
    assert run_on_request(cluster, "hello").state == "succeeded"

    # etcd 3.4 keeps a session's token through a password change; removing the user voids it
    auth_etcd.etcdctl("user", "delete", "changing")
    run_id = f"now-{uuid.uuid4().hex[:8]}"
    cluster.records.request(run_id, "hello")  # seen through the watch; claiming it is refused
    try:
        wait_for("the refusal in its log", lambda: "authentication failed" in daemon.stderr(), timeout=15)
        time.sleep(2)
        assert daemon.running, daemon.exited()
        assert not [r for r in cluster.records.runs("hello") if r.id == run_id]
        add_user()  # put right: it goes on without a restart
        wait_for(f"run {run_id}", lambda: next(
            (r for r in cluster.records.runs("hello") if r.id == run_id and r.finished), None), timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None
    assert daemon.running, daemon.exited()
    assert "Traceback" not in daemon.stderr()
    assert daemon.stop() == 0


async def test_an_expired_token_is_renewed_for_requests_and_the_watch(auth_etcd: EtcdCluster) -> None:
    prefix = unique_prefix()
    store = EtcdStore(auth_etcd.endpoints, timeout=2, user="maomao", password=USERS["maomao"][0])
    first = await store.put(prefix + "a", b"1")
    token = store._tokens[0]
    await trio.sleep(2.5)  # --auth-token-ttl 1: the token is gone
    assert (await store.get(prefix + "a")) is not None
    assert store._tokens[0] not in (None, token)  # a new token
    token = store._tokens[0]
    await trio.sleep(2.5)
    seen = []
    with trio.fail_after(10):
        async for event in store.watch(prefix, first):  # opened with the expired token: renewed, reopened
            seen.append(event.kv.key)
            if len(seen) == 1:
                await store.put(prefix + "b", b"2")
            else:
                break
    assert seen == [prefix + "a", prefix + "b"]
    assert store._tokens[0] != token
    await store.aclose()


async def test_each_member_of_a_cluster_gets_its_own_token_on_failover() -> None:
    """Simple tokens belong to the member that issued them: a failover authenticates at the next one."""
    cluster = EtcdCluster(3)
    try:
        cluster.start()
        cluster.enable_auth(ROOT_PASSWORD, {"maomao": USERS["maomao"]})
        prefix = unique_prefix()
        store = EtcdStore(cluster.endpoints, timeout=6, user="maomao", password=USERS["maomao"][0])
        await store.put(prefix + "a", b"1")
        assert list(store._tokens) == [0]
        await trio.to_thread.run_sync(cluster.stop, 0)
        assert (await store.get(prefix + "a")) is not None
        assert store._tokens.keys() >= {1} and store._tokens[1] != store._tokens[0]
        await store.aclose()
    finally:
        cluster.destroy()


# -- the embedded store's files ---------------------------------------------------------------


def modes(*paths: Path) -> list[str]:
    return [oct(stat.S_IMODE(p.stat().st_mode)) for p in paths]


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def db_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


async def test_the_embedded_store_is_private_whatever_the_umask(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "new" / "store" / "store.db"
    store = EmbeddedStore(db)
    await store.put("/maomao/x", b"1")
    assert modes(db.parent, *db_files(db)) == ["0o700", "0o600", "0o600", "0o600"]
    await store.aclose()


async def test_looser_files_are_tightened_on_open(
    tmp_path: Path, umask_022: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    db = state / "store.db"
    older = EmbeddedStore(db)  # kept open: its -wal and -shm stay
    await older.put("/maomao/x", b"1")
    # as an older version (or a copy under umask 022) left them
    for path in [state, *db_files(db)]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    store, other = EmbeddedStore(db), EmbeddedStore(shared / "other.db")
    assert (await store.get("/maomao/x")) is not None
    await other.put("/maomao/y", b"1")
    # maomao's own state directory is tightened; a directory it did not make stays as it was
    assert modes(state, *db_files(db)) == ["0o700", "0o600", "0o600", "0o600"]
    assert modes(shared, *db_files(shared / "other.db")) == ["0o755", "0o600", "0o600", "0o600"]
    for each in (older, store, other):
        await each.aclose()


def test_ctl_creates_a_private_embedded_store(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = tmp_path / "var" / "maomao" / "store.db"
    config = tmp_path / "embedded.ini"
    config.write_text(f"[store]\nbackend = embedded\npath = {db}\n")
    ctl = Ctl("embedded", home, config, embedded_contents(db), embedded_put(db))
    ctl("tool", "add", "alexa", "Jane", *TOOL_ARGS).ok()
    # SQLite removed the -wal and -shm files at ctl's exit (their modes: the tests above)
    made = [p for p in db_files(db) if p.exists()]
    assert made[0] == db and modes(db.parent, *made) == ["0o700"] + ["0o600"] * len(made)
    # and the default store, in the state directory ctl makes
    env = clean_env(home)
    assert json.loads(run([MAOCTL, "tool", "get", "--json"], env=env, cwd=home).ok().stdout) == []
    state = Path(env["XDG_STATE_HOME"]) / "maomao"
    assert modes(state, state / "store.db") == ["0o700", "0o600"]
