"""Tools that write garbage into their data directory, run by a real daemon (issue 7, hostile input).

Everything is real: a ``maomao daemon`` subprocess on an embedded store,
bare git remotes, Podman for the container runtime (images from Debian's
static busybox).  Where the threat is confinement (symlinks out of the data
directory, ``../x``, the repository's own ``.git``) the tool is a
container; where it is maomao's own handling (a ``.git`` rewritten or
deleted by an unconfined host process, huge files, thousands of control
files) it is a host process.  Each test checks that the daemon stays up
without a traceback, that the run is recorded with what happened in its
detail, what landed on the remote, and that nothing outside the data
directory was read or written: a canary file keeps its content and mtime,
and a secret behind a symlink reaches neither a commit nor a spike record.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from maomao.gitdata import DataRepo
from maomao.model import Run, Spike
from tests.support.daemons import Daemon, Daemons, StoreSpec, embedded_spec, wait_for
from tests.support.git import git
from tests.support.podman import Podman

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]
IMAGE = "localhost/maomao-test/garbage:1"
SECRET = "987654321"
CANARY = "canary: must stay as it is\n"

#: run in the container, in its data mount: everything a careless or hostile tool might do
GARBAGE = r"""#!/bin/sh
cd /usr/src/app/data || exit 99
echo 1 > control-1.csv; echo 2 > control-2.csv; echo 3 > control-3.csv
ln -s /etc/shadow shadow
ln -s / root
ln -s "$STATE_DIR" state
ln -s ../../.. up
ln -s "$OUTSIDE/control-secret.csv" control-4.csv
mkdir -p m && printf 'time,v\n1,5\n' > m/ok.csv
ln -s "$OUTSIDE" m/outside
ln -s "$OUTSIDE/secret.csv" m/secret.csv
echo x > ../x; echo y > ../../y
printf '[core]\n\tfsmonitor = touch /usr/src/app/data/pwned\n' > .git/config && echo "wrote .git/config"
mkdir -p .git/hooks && echo hook > .git/hooks/post-commit && echo "wrote a hook"
rm -rf .git 2>/dev/null || echo "could not remove .git"
mkdir -p nested/.git/refs && echo 'ref: refs/heads/main' > nested/.git/HEAD && echo n > nested/n.txt
head -c 65536 /dev/urandom > binary.dat
touch "$(printf 'new\nline.txt')" "$(printf 'bad\377name.txt')"
exit 0
"""

#: the next run: tracked paths become links out of the data directory, then the tool fails
SWAP = r"""#!/bin/sh
cd /usr/src/app/data || exit 99
rm -rf m && ln -s "$OUTSIDE" m
rm -f control-1.csv && ln -s "$OUTSIDE/canary.txt" control-1.csv
exit 3
"""


@dataclass
class Outside:
    """Files outside the data directory that no run may read or write."""

    root: Path

    @classmethod
    def make(cls, root: Path) -> Outside:
        root.mkdir(parents=True)
        (root / "secret.csv").write_text(f"time,v\n2,{SECRET}\n")
        (root / "control-secret.csv").write_text(f"{SECRET}\n")
        (root / "canary.txt").write_text(CANARY)
        past = time.time() - 3600
        os.utime(root / "canary.txt", (past, past))
        return cls(root)

    def state(self) -> dict[str, tuple[bytes, int]]:
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(self.root.iterdir())}


@pytest.fixture(scope="module")
def image(podman: Podman) -> Podman:
    podman.build_image(IMAGE, {"/garbage.sh": GARBAGE, "/swap.sh": SWAP}, workdir="/usr/src/app/data")
    return podman


def run_now(cluster: Daemons, tool: str, timeout: float = 60) -> Run:
    run_id = f"now-{uuid.uuid4().hex[:8]}"
    cluster.records.request(run_id, tool)
    return wait_for(
        f"run {run_id} of {tool}",
        lambda: next((r for r in cluster.records.runs(tool) if r.id == run_id), None),
        timeout,
    )


def healthy(daemon: Daemon) -> None:
    assert daemon.running, daemon.exited()
    assert "Traceback" not in daemon.stderr(), daemon.stderr()[-3000:]


def tree(remote: str, ref: str) -> dict[bytes, tuple[str, str]]:
    """path -> (mode, object id) of every file and link of ``ref`` (paths as git stores them)."""
    out = subprocess.run(["git", "-C", remote, "ls-tree", "-r", "-z", ref], capture_output=True, check=True).stdout
    entries = {}
    for record in out.split(b"\0"):
        if record:
            meta, _, path = record.partition(b"\t")
            mode, _kind, oid = meta.decode().split()
            entries[path] = (mode, oid)
    return entries


def blob(remote: str, oid: str) -> bytes:
    return subprocess.run(["git", "-C", remote, "cat-file", "blob", oid], capture_output=True, check=True).stdout


def everything_in(remote: str) -> bytes:
    """The content of every object of the remote, loose or packed."""
    return subprocess.run(
        ["git", "-C", remote, "cat-file", "--batch-all-objects", "--batch"], capture_output=True, check=True
    ).stdout


def clone_of(daemon: Daemon, tool: str, remote: str) -> DataRepo:
    return DataRepo(daemon.importdir / tool, remote, author_name="x", author_email="x@example.org")


@pytest.mark.timeout(120)
def test_a_container_that_writes_garbage_stays_in_its_data_directory(
    tmp_path: Path, make_daemons: MakeDaemons, image: Podman
) -> None:
    outside = Outside.make(tmp_path / "outside")
    before = outside.state()
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha", env={"DOCKER_HOST": image.url})
    remote = cluster.records.data_remote("garbage")
    env = {"OUTSIDE": str(outside.root), "STATE_DIR": str(daemon.state_dir)}
    cluster.records.add_tool("garbage", "sh /garbage.sh", runtime="container", image=IMAGE, env=env,
                             metrics=("m=**/*.csv:v",))  # fmt: skip
    run = run_now(cluster, "garbage")
    assert run.state == "succeeded" and run.exit_code == 0, run
    assert run.push == "pushed" and run.branch is None, run
    assert run.commit == git("-C", remote, "rev-parse", "main").strip()
    # the repository's .git was out of reach: every write to it failed, and the clone is as it was
    assert "wrote .git/config" not in run.output_tail and "wrote a hook" not in run.output_tail, run.output_tail
    assert "Read-only file system" in run.output_tail, run.output_tail
    assert clone_of(daemon, "garbage", remote).problems() == []
    assert "fsmonitor" not in (daemon.importdir / "garbage" / ".git" / "config").read_text()
    assert "nested repository's .git: nested/.git" in run.detail, run.detail
    # what landed: links as links (never their targets), the nested repository's files without its .git
    files = tree(remote, "main")
    links = {path: blob(remote, oid) for path, (mode, oid) in files.items() if mode == "120000"}
    assert links == {
        b"shadow": b"/etc/shadow", b"root": b"/", b"state": os.fsencode(daemon.state_dir), b"up": b"../../..",
        b"control-4.csv": os.fsencode(outside.root / "control-secret.csv"),
        b"m/outside": os.fsencode(outside.root), b"m/secret.csv": os.fsencode(outside.root / "secret.csv"),
    }
    assert b"nested/n.txt" in files and not any(b".git" in p.split(b"/") for p in files), sorted(files)
    assert all(mode != "160000" for mode, _ in files.values())  # no gitlink
    assert b"new\nline.txt" in files and b"bad\xffname.txt" in files and b"binary.dat" in files
    assert len(blob(remote, files[b"binary.dat"][1])) == 65536
    # ../x went into the container's own file system, not next to the data directory
    assert not (daemon.importdir / "x").exists() and not (daemon.root / "y").exists()
    assert sorted(p.name for p in daemon.importdir.iterdir()) == [".maomao", "garbage"]
    # spike detection read the three control files and m/ok.csv, nothing behind a link
    detection = {e["metric"]: e for e in run.detection}
    assert detection["control"]["points"] == 3 and detection["control"]["value"] == 3.0, detection
    assert detection["m"]["points"] == 1 and detection["m"]["value"] == 5.0, detection
    spikes = cluster.records.all(cluster.records.keys.spikes("garbage"), Spike)
    assert SECRET not in repr(run) and SECRET not in repr(spikes)
    assert SECRET.encode() not in everything_in(remote)
    assert outside.state() == before
    healthy(daemon)

    # next: tracked paths swapped for links out of the data directory, and the run fails.  Putting
    # the work tree back must not write through them (libgit2's reset would: m/ok.csv into OUTSIDE)
    cluster.records.add_tool("garbage", "sh /swap.sh", runtime="container", image=IMAGE, env=env,
                             metrics=("m=**/*.csv:v",))  # fmt: skip
    failed = run_now(cluster, "garbage")
    assert failed.state == "failed" and failed.exit_code == 3, failed
    assert failed.branch == f"maomao/failed/{failed.id}" and failed.push == "pushed", failed
    swapped = tree(remote, failed.branch)
    assert swapped[b"m"][0] == "120000" and swapped[b"control-1.csv"][0] == "120000"
    assert git("-C", remote, "rev-parse", "main").strip() == run.commit
    work = daemon.importdir / "garbage"
    assert not (work / "m").is_symlink() and (work / "m" / "ok.csv").read_text() == "time,v\n1,5\n"
    assert (work / "control-1.csv").read_text() == "1\n"
    assert outside.state() == before
    assert not any((daemon.state_dir / name).exists() for name in ("HEAD", "objects", "refs", "config", "index"))
    healthy(daemon)
    assert daemon.stop() == 0


HOSTILE_CONFIG = r"""#!/bin/sh
echo out > out.txt
git config core.fsmonitor "touch $OUTSIDE/fsmonitor-ran"
git config remote.origin.pushurl "$OUTSIDE/evil.git"
mkdir -p .git/hooks && printf '#!/bin/sh\ntouch %s/hook-ran\n' "$OUTSIDE" > .git/hooks/post-commit
chmod +x .git/hooks/post-commit
"""
GIT_TO_STATE = r"""#!/bin/sh
echo more > more.txt
rm -rf .git && ln -s "$STATE_DIR" .git
"""
NO_GIT = r"""#!/bin/sh
echo gone > gone.txt
rm -rf .git
"""
FINE = r"""#!/bin/sh
echo fine > fine.txt
"""


@pytest.mark.timeout(120)
def test_a_host_process_that_rewrites_or_deletes_the_git_directory(tmp_path: Path, make_daemons: MakeDaemons) -> None:
    outside = Outside.make(tmp_path / "outside")
    before = outside.state()
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name, text in {"seed": "echo seed > seed.txt\n", "hostile": HOSTILE_CONFIG, "to-state": GIT_TO_STATE,
                       "no-git": NO_GIT, "fine": FINE}.items():  # fmt: skip
        (scripts / f"{name}.sh").write_text(text)
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha")
    remote = cluster.records.data_remote("careless")
    env = {"OUTSIDE": str(outside.root), "STATE_DIR": str(daemon.state_dir)}

    def run(script: str) -> Run:
        cluster.records.add_tool("careless", f"sh {scripts / script}.sh", env=env)
        return run_now(cluster, "careless")

    seed = run("seed")
    assert seed.push == "pushed", seed
    main = git("-C", remote, "rev-parse", "main").strip()
    clone = clone_of(daemon, "careless", remote)
    damaged = daemon.importdir / ".maomao" / "damaged" / "careless"

    wrote = {"hostile": b"out.txt", "to-state": b"more.txt", "no-git": b"gone.txt"}
    for script, said in (("hostile", "core.fsmonitor"), ("to-state", ".git is a symlink"), ("no-git", ".git is gone")):
        result = run(script)
        # recorded; its output is on its failed-run branch, never on main; the clone is sound again
        assert result.state == "succeeded" and result.exit_code == 0, result
        assert result.branch == f"maomao/failed/{result.id}" and result.push == "pushed", result
        assert "damaged the data repository's .git" in result.detail and said in result.detail, result.detail
        assert git("-C", remote, "rev-parse", "main").strip() == main
        assert clone.problems() == [], (script, clone.problems())
        assert re.search(r"set aside at \S+/damaged/careless/\S+/git", result.detail), result.detail
        healthy(daemon)
        assert wrote[script] in tree(remote, result.branch), (script, sorted(tree(remote, result.branch)))
    assert len(list(damaged.iterdir())) == 3  # each damaged .git kept aside, for a look
    # the hostile config never ran anything and never pushed anywhere else
    assert not (outside.root / "fsmonitor-ran").exists() and not (outside.root / "hook-ran").exists()
    assert not (outside.root / "evil.git").exists()
    # the symlinked .git pointed at the daemon's state directory: nothing git's was written there
    assert not (daemon.state_dir / "HEAD").exists() and not (daemon.state_dir / "objects").exists()
    assert not (daemon.state_dir / "config").exists()

    after = run("fine")
    assert after.state == "succeeded" and after.push == "pushed" and after.branch is None, after
    on_main = {p.decode() for p in tree(remote, "main")}
    assert on_main == {"seed.txt", "fine.txt"}, on_main
    assert outside.state() == before
    healthy(daemon)
    assert daemon.stop() == 0


HEAVY = r"""#!/bin/sh
head -c 314572800 /dev/zero > huge.bin
head -c 1048576 /dev/urandom > random.bin
i=0
while [ $i -lt 5000 ]; do echo $((i % 13 + 100)) > control-$i.csv; i=$((i + 1)); done
"""


@pytest.mark.timeout(150)
def test_a_huge_file_and_five_thousand_control_files(tmp_path: Path, make_daemons: MakeDaemons) -> None:
    script = tmp_path / "heavy.sh"
    script.write_text(HEAVY)
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha")
    remote = cluster.records.data_remote("heavy")
    cluster.records.add_tool("heavy", f"sh {script}")
    began = time.monotonic()
    run = run_now(cluster, "heavy", timeout=120)
    elapsed = time.monotonic() - began
    assert run.state == "succeeded" and run.push == "pushed", run
    # the huge file is left out, said so, and kept in the data directory; the rest is committed
    assert "huge.bin (300.0 MiB)" in run.detail and "max_file_size (50.0 MiB)" in run.detail, run.detail
    assert (daemon.importdir / "heavy" / "huge.bin").stat().st_size == 314572800
    files = tree(remote, "main")
    assert b"huge.bin" not in files and b"random.bin" in files
    assert sum(1 for p in files if p.startswith(b"control-")) == 5000
    (control,) = [e for e in run.detection if e["metric"] == "control"]
    assert control["points"] == 5000 and control["point"] == "control-4999.csv", control
    # how long each phase took, from the daemon's line for the run (reported by the test run with -s)
    line = next(line for line in daemon.stderr().splitlines() if run.id in line and " in " in line and "ms (" in line)
    print(f"\n5000 control files + a 300 MiB file left out: {elapsed:.1f}s end to end; daemon: {line}")
    assert elapsed < 90
    healthy(daemon)
    assert daemon.stop() == 0
