"""Packaging (issue 6): the shiv zipapp, the systemd unit, install.sh and the Debian package.

The zipapp is built once for the module (packaging/build_zipapp.py, the step
``make zipapp`` runs, with shiv.toml's settings) into a temporary directory,
then run by the system's python3 from an empty directory (no sources, no
venv): ``--version``, ``ctl`` on an embedded store, ``maoctl`` as a symlink,
the daemon up to READY=1 and down on SIGTERM.  The unit passes
``systemd-analyze verify``; install.sh installs into a DESTDIR; the .deb
installs (``dpkg -i``), runs, and is purged again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import maomao
from tests.support.daemons import NotifySocket

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))
import build_deb  # noqa: E402
import build_zipapp  # noqa: E402

#: the system's Python, not the venv's (nor pyenv's): what the zipapp gets on a Debian machine
SYSTEM_PYTHON = Path("/usr/bin/python3")
TOOL = ["tool", "add", "tl-1", "Ada Lovelace", "ghcr.io/lab/tl:1.2", "https://git.example.org/d.git",
        "git@git.example.org:lab/tl.git", "web pages"]  # fmt: skip


def system_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: the system PATH (``/usr/bin/env python3`` is the system's), a home of its own."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    return {**env, **extra}


@pytest.fixture(scope="module")
def built() -> Iterator[Path]:
    """The zipapp, built once, copied alone into an empty directory: ``DIR/maomao``."""
    assert SYSTEM_PYTHON.exists(), "the system's python3 is missing"
    build_dir = Path(tempfile.mkdtemp(prefix="mao-pkg-build-"))
    run_dir = Path(tempfile.mkdtemp(prefix="mao-pkg-run-"))
    try:
        zipapp = build_zipapp.build(build_dir / "maomao")
        shutil.copy2(zipapp, run_dir / "maomao")
        (run_dir / "home").mkdir()
        yield run_dir / "maomao"
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def embedded_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.ini"
    config.write_text(
        f"[maomao]\nimportdir = {tmp_path / 'data'}\nmember = pkg-test\n"
        f"[store]\nbackend = embedded\npath = {tmp_path / 'store.db'}\n"
        f"[daemon]\nstate_dir = {tmp_path / 'state'}\nshutdown_grace = 5\n"
    )
    return config


def run(
    argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_zipapp_version_with_only_system_python(built: Path) -> None:
    env = system_env(built.parent / "home", SHIV_ROOT=str(built.parent / "shiv"))
    result = run([SYSTEM_PYTHON, "-I", "./maomao", "--version"], built.parent, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == maomao.__version__
    # compiled dependencies were extracted under SHIV_ROOT, not ~/.shiv
    assert any(p.name.startswith("maomao_") for p in (built.parent / "shiv").iterdir())
    assert not (built.parent / "home" / ".shiv").exists()
    # executable by itself (shebang /usr/bin/env python3)
    result = run(["./maomao", "--version"], built.parent, env)
    assert result.returncode == 0 and result.stdout.strip() == maomao.__version__, result.stderr


def test_zipapp_ctl_on_embedded_store(built: Path, embedded_config: Path) -> None:
    env = system_env(built.parent / "home", SHIV_ROOT=str(built.parent / "shiv"))
    get = [SYSTEM_PYTHON, "-I", "./maomao", "ctl", "tool", "get", "--json", "--config", embedded_config]
    result = run(get, built.parent, env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    added = run([SYSTEM_PYTHON, "-I", "./maomao", "ctl", *TOOL, "--config", embedded_config], built.parent, env)
    assert added.returncode == 0, added.stderr
    result = run(get, built.parent, env)
    assert result.returncode == 0, result.stderr
    tools = json.loads(result.stdout)
    assert [tool["name"] for tool in tools] == ["tl-1"]
    assert tools[0]["author"] == "Ada Lovelace"


def test_zipapp_as_maoctl_symlink(built: Path, embedded_config: Path, tmp_path: Path) -> None:
    """A symlink named maoctl to the zipapp is ``maomao ctl`` (shiv preamble packaging/maoctl_preamble.py)."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "maoctl").symlink_to(built)
    env = system_env(built.parent / "home", SHIV_ROOT=str(built.parent / "shiv"))
    result = run([tmp_path / "bin" / "maoctl", "tool", "get", "--json", "--config", embedded_config], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    # under its own name the zipapp is still maomao
    result = run([built, "tool", "get", "--config", embedded_config], tmp_path, env)
    assert result.returncode == 2 and "error:" in result.stderr


def test_zipapp_daemon_ready_then_sigterm(built: Path, embedded_config: Path) -> None:
    sockets = Path(tempfile.mkdtemp(prefix="mao-pkg-nfy-", dir="/tmp"))
    notify = NotifySocket(sockets / "notify.sock")
    log = built.parent / "daemon.log"
    env = system_env(built.parent / "home", SHIV_ROOT=str(built.parent / "shiv"), NOTIFY_SOCKET=str(notify.path))
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(SYSTEM_PYTHON), "-I", str(built), "daemon", "--config", str(embedded_config)],
                cwd=built.parent, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )
        try:
            def gone() -> str | None:
                code = process.poll()
                return None if code is None else f"daemon exited {code}: {log.read_text()[-2000:]}"

            notify.wait("READY", "1", timeout=60, alive=gone)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, log.read_text()[-2000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        notify.drain()
        assert any(d.has("STOPPING", "1") for d in notify.received), notify.received
        assert "Traceback" not in log.read_text()
    finally:
        notify.close()
        shutil.rmtree(sockets, ignore_errors=True)


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_unit_passes_systemd_analyze_verify(built: Path, tmp_path: Path) -> None:
    text = (ROOT / "systemd" / "maomao.service").read_text()
    assert "ExecStart=/usr/local/bin/maomao daemon\n" in text
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "User=maomao", "StateDirectory=maomao",
                 "CacheDirectory=maomao", "Environment=SHIV_ROOT=%C/maomao", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "Restart=on-failure"):
        assert f"\n{line}\n" in text, line
    unit = tmp_path / "maomao.service"
    unit.write_text(text.replace("ExecStart=/usr/local/bin/maomao ", f"ExecStart={built} "))
    result = verify(unit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line for line in (result.stdout + result.stderr).splitlines() if "maomao" in line] == []


def install_sh(zipapp: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESTDIR": str(dest)}
    script = ROOT / "packaging" / "install.sh"
    return subprocess.run(["sh", str(script), str(zipapp)], env=env, capture_output=True, text=True, timeout=60)


def test_install_sh_into_destdir(built: Path, tmp_path: Path) -> None:
    dest = tmp_path / "root"
    result = install_sh(built, dest)
    assert result.returncode == 0, result.stderr
    assert (dest / "usr/local/bin/maomao").read_bytes() == built.read_bytes()
    assert os.readlink(dest / "usr/local/bin/maoctl") == "maomao"
    assert (dest / "etc/maomao/config.ini").read_text() == (ROOT / "config.ini").read_text()
    unit = (dest / "etc/systemd/system/maomao.service").read_text()
    assert "ExecStart=/usr/local/bin/maomao daemon\n" in unit
    # again: the config file (edited by then) is kept
    (dest / "etc/maomao/config.ini").write_text("[maomao]\nmember = mine\n")
    result = install_sh(built, dest)
    assert result.returncode == 0, result.stderr
    assert (dest / "etc/maomao/config.ini").read_text() == "[maomao]\nmember = mine\n"


def installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return result.returncode == 0 and "installed" in result.stdout.split()


def test_deb_installs_runs_and_purges(built: Path, embedded_config: Path, tmp_path: Path) -> None:
    assert os.geteuid() == 0, "dpkg -i needs root (the CI runs the tests as root)"
    assert not installed("maomao"), "maomao is installed on this machine already: dpkg --purge maomao first"
    deb = build_deb.build(built, tmp_path / "deb")
    assert deb.name.startswith(f"maomao_{maomao.__version__}_") and deb.suffix == ".deb"
    fields = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "Depends: python3 (>= 3.11)" in fields
    try:
        result = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        env = system_env(tmp_path / "home")
        (tmp_path / "home").mkdir()
        result = run(["/usr/bin/maomao", "--version"], tmp_path, env)
        assert result.returncode == 0 and result.stdout.strip() == maomao.__version__, result.stderr
        result = run(["maomao", "ctl", "tool", "get", "--json", "--config", embedded_config], tmp_path, env)
        assert result.returncode == 0 and json.loads(result.stdout) == [], result.stderr
        result = run(["maoctl", "tool", "get", "--json", "--config", embedded_config], tmp_path, env)
        assert result.returncode == 0 and json.loads(result.stdout) == [], result.stderr
        assert Path("/etc/maomao/config.ini").is_file()
        assert subprocess.run(["getent", "passwd", "maomao"], capture_output=True).returncode == 0
        unit = Path("/lib/systemd/system/maomao.service")
        assert "ExecStart=/usr/bin/maomao daemon\n" in unit.read_text()
        result = verify(unit)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        purge = subprocess.run(["dpkg", "--purge", "maomao"], capture_output=True, text=True, timeout=120)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not installed("maomao")
    assert not Path("/usr/bin/maomao").exists() and not Path("/etc/maomao").exists()
    assert subprocess.run(["getent", "passwd", "maomao"], capture_output=True).returncode != 0
