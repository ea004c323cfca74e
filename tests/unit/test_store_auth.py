"""etcd authentication in EtcdStore, against a scripted gateway; ``[store]``'s access keys in the config.

The real etcd (TLS, auth, expiring tokens) is in
``tests/integration/test_store_access.py``; here each answer is chosen, to
pin down what the store does with it: when it authenticates, which token
each request carries, that a stale token is renewed exactly once, and that a
refusal is one line and never a retry loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from maomao.config import check_config, load_config
from maomao.errors import StoreError, StoreUnavailable
from maomao.store import StoreAccessDenied, inline, run_inline
from maomao.store.etcd import EtcdStore
from tests.support.cli import MAOMAO, clean_env, run

ENDPOINT = "http://127.0.0.1:2379"
INVALID_TOKEN = (401, {"error": "etcdserver: invalid auth token", "code": 16})
AUTH_FAILED = (400, {"error": "etcdserver: authentication failed, invalid user ID or password", "code": 3})
DENIED = (403, {"error": "etcdserver: permission denied", "code": 7})
NO_USER = (400, {"error": "etcdserver: user name is empty", "code": 3})
NOT_ENABLED = (400, {"error": "etcdserver: authentication is not enabled", "code": 9})
RANGE_OK = (200, {"header": {"revision": "7"}, "kvs": []})


@dataclass
class FakeResponse:
    status_code: int
    body: dict[str, Any]

    @property
    def text(self) -> str:
        return json.dumps(self.body)

    def json(self) -> dict[str, Any]:
        return self.body


@dataclass
class Gateway:
    """A stand-in for the session of one endpoint: answers from a script, remembers each request."""

    #: (path suffix, answer) in order; an answer is (status, body) or a function of the request's headers
    script: list[tuple[str, tuple[int, dict[str, Any]] | Callable[[dict[str, str]], tuple[int, dict[str, Any]]]]]
    calls: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    verify: bool | str = True
    cert: Any = None

    def post(self, url: str, *, json: dict[str, Any], headers: dict[str, str] | None = None,
             **_: object) -> FakeResponse:
        path = url.split("/v3", 1)[1]
        token = (headers or {}).get("Authorization")
        self.calls.append((path, json, token))
        assert self.script, f"unexpected request {path}"
        expected, answer = self.script.pop(0)
        assert path == expected, (path, expected)
        status, body = answer(headers or {}) if callable(answer) else answer
        return FakeResponse(status, body)

    def close(self) -> None:
        pass

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.calls]

    def tokens(self) -> list[str | None]:
        return [token for path, _, token in self.calls if path != "/auth/authenticate"]


def token(name: str) -> tuple[int, dict[str, Any]]:
    return 200, {"header": {}, "token": name}


def store_on(gateway: Gateway, user: str | None = "maomao", password: str | None = "pw") -> EtcdStore:
    store = EtcdStore([ENDPOINT], user=user, password=password, offload=inline)
    store._clients[0].session = gateway  # type: ignore[assignment]
    return store


def test_the_first_request_authenticates_and_every_request_carries_the_token() -> None:
    gateway = Gateway([("/auth/authenticate", token("t1")), ("/kv/range", RANGE_OK), ("/kv/range", RANGE_OK)])
    store = store_on(gateway)
    run_inline(store.get("/maomao/tools/a"))
    run_inline(store.range("/maomao/"))
    assert gateway.paths() == ["/auth/authenticate", "/kv/range", "/kv/range"]
    assert gateway.calls[0][1] == {"name": "maomao", "password": "pw"}
    assert gateway.tokens() == ["t1", "t1"]


def test_an_expired_token_is_renewed_once_and_the_request_repeated() -> None:
    gateway = Gateway([
        ("/auth/authenticate", token("t1")),
        ("/kv/range", RANGE_OK),
        ("/kv/range", INVALID_TOKEN),  # the simple token expired
        ("/auth/authenticate", token("t2")),
        ("/kv/range", RANGE_OK),
        ("/kv/range", RANGE_OK),
    ])
    store = store_on(gateway)
    for _ in range(3):
        assert run_inline(store.range("/maomao/")).revision == 7
    assert gateway.tokens() == ["t1", "t1", "t2", "t2"]
    assert gateway.paths().count("/auth/authenticate") == 2


def test_a_token_refused_again_after_renewal_is_not_retried_in_a_loop() -> None:
    gateway = Gateway([
        ("/auth/authenticate", token("t1")),
        ("/kv/range", INVALID_TOKEN),
        ("/auth/authenticate", token("t2")),
        ("/kv/range", INVALID_TOKEN),
    ])
    store = store_on(gateway)
    with pytest.raises(StoreAccessDenied) as caught:
        run_inline(store.get("/maomao/x"))
    assert str(caught.value) == f"etcd at {ENDPOINT}: authentication failed: etcdserver: invalid auth token"
    assert len(gateway.calls) == 4  # the script is used up: nothing more was tried


def test_a_wrong_password_is_one_clear_line_naming_the_endpoint() -> None:
    gateway = Gateway([("/auth/authenticate", AUTH_FAILED)])
    store = store_on(gateway, password="wrong")
    with pytest.raises(StoreAccessDenied) as caught:
        run_inline(store.put("/maomao/x", b"1"))
    assert str(caught.value) == (
        f"etcd at {ENDPOINT}: authentication failed: invalid user name or password (user 'maomao')"
    )
    assert caught.value.exit_code == 1
    assert "wrong" not in str(caught.value)
    assert gateway.paths() == ["/auth/authenticate"]


def test_no_credentials_where_etcd_wants_them_says_which_keys_to_set() -> None:
    gateway = Gateway([("/kv/range", NO_USER)])
    store = store_on(gateway, user=None, password=None)
    with pytest.raises(StoreAccessDenied) as caught:
        run_inline(store.get("/maomao/x"))
    assert str(caught.value) == (
        f"etcd at {ENDPOINT}: authentication required: etcd has authentication enabled; "
        "set [store] user and password"
    )
    assert gateway.tokens() == [None]


def test_permission_denied_names_the_user_and_what_it_tried() -> None:
    gateway = Gateway([("/auth/authenticate", token("t1")), ("/kv/txn", DENIED)])
    store = store_on(gateway, user="reader")
    with pytest.raises(StoreAccessDenied) as caught:
        run_inline(store.delete("/maomao/tools/alexa"))
    assert str(caught.value) == (
        f"etcd at {ENDPOINT}: permission denied: user 'reader' may not write /maomao/tools/alexa "
        "(its roles' permissions)"
    )


def test_once_etcd_answered_a_refusal_is_an_outage_a_daemon_rides_out() -> None:
    gateway = Gateway([
        ("/auth/authenticate", token("t1")),
        ("/kv/range", RANGE_OK),
        ("/kv/put", INVALID_TOKEN),  # the password was changed meanwhile
        ("/auth/authenticate", AUTH_FAILED),
    ])
    store = store_on(gateway)
    run_inline(store.range("/maomao/"))
    with pytest.raises(StoreUnavailable) as caught:
        run_inline(store.put("/maomao/x", b"1"))
    assert "authentication failed: invalid user name or password" in str(caught.value)


def test_a_user_for_an_etcd_without_authentication_goes_on_without_a_token() -> None:
    gateway = Gateway([("/auth/authenticate", NOT_ENABLED), ("/kv/range", RANGE_OK), ("/kv/range", RANGE_OK)])
    store = store_on(gateway)
    run_inline(store.range("/maomao/"))
    run_inline(store.range("/maomao/"))
    assert gateway.tokens() == [None, None]
    assert gateway.paths().count("/auth/authenticate") == 1


def test_other_refusals_stay_store_errors() -> None:
    gateway = Gateway([("/auth/authenticate", token("t1")), ("/kv/range", (400, {"error": "etcdserver: bad"}))])
    store = store_on(gateway)
    with pytest.raises(StoreError) as caught:
        run_inline(store.get("/maomao/x"))
    assert not isinstance(caught.value, StoreAccessDenied)


def test_threads_that_find_the_token_expired_at_once_authenticate_once() -> None:
    lock = threading.Lock()
    authenticated: list[str] = []
    current = {"token": "t1"}

    class Concurrent(Gateway):
        def post(self, url: str, *, json: dict[str, Any], headers: dict[str, str] | None = None,
                 **_: object) -> FakeResponse:
            with lock:
                self.calls.append((url, json, (headers or {}).get("Authorization")))
            if url.endswith("/auth/authenticate"):
                with lock:
                    current["token"] = f"t{len(authenticated) + 2}"
                    authenticated.append(current["token"])
                return FakeResponse(*token(current["token"]))
            if (headers or {}).get("Authorization") != current["token"]:
                return FakeResponse(*INVALID_TOKEN)
            return FakeResponse(*RANGE_OK)

    store = store_on(Concurrent([]))
    store._tokens[0] = "t1"
    current["token"] = "t-new-epoch"  # every thread's t1 is stale now
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            run_inline(store.range("/maomao/"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert len(authenticated) == 1, authenticated


# -- the config keys ------------------------------------------------------------------------


def config_file(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "config.ini"
    path.write_text("[store]\nbackend = etcd\nendpoints = http://127.0.0.1:2379\n" + store)
    return path


def test_user_and_password_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "etcd.pw").write_text("s3cret pw\n")
    config = load_config(config_file(tmp_path, "user = maomao\npassword_file = etcd.pw\n"), environ={})
    assert (config.store.user, config.store.password) == ("maomao", "s3cret pw")
    assert config.store.password_file == str(tmp_path / "etcd.pw")
    assert "s3cret" not in repr(config)


def test_the_password_from_the_environment(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, "user = maomao\n"), environ={"MAOMAO_STORE_PASSWORD": "from env"})
    assert config.store.password == "from env"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("user = maomao\n", "[store] user: needs [store] password or password_file (or MAOMAO_STORE_PASSWORD)"),
        ("password = x\n", "[store] password: needs [store] user (the etcd user it is the password of)"),
        ("user = u\npassword = x\npassword_file = /etc/hostname\n",
         "[store] password and password_file: give one of them, not both"),
        ("user = u\npassword_file = missing.pw\n", "[store] password_file = '{tmp}/missing.pw': cannot be read: "
         "No such file or directory"),
        ("user = u\npassword_file = sub\n", "[store] password_file = '{tmp}/sub': cannot be read: Is a directory"),
        ("user = u\npassword_file = empty.pw\n", "[store] password_file = '{tmp}/empty.pw': is empty"),
    ],
)
def test_validate_config_reports_bad_access_keys(tmp_path: Path, keys: str, expected: str) -> None:
    (tmp_path / "empty.pw").write_text("")
    (tmp_path / "sub").mkdir()
    path = config_file(tmp_path, keys)
    config, problems = check_config(path, environ={})
    assert config is None
    assert len(problems) == 1 and problems[0].startswith(expected.format(tmp=tmp_path)), problems
    # and through the real command: one line each, exit 2
    result = run([MAOMAO, "daemon", "--validate-config", "--config", path], env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == ["error: " + problems[0]]
