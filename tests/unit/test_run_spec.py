"""What a runner is asked to run: the pinned reference and the confinement of a tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao.config import RunnerConfig
from maomao.model import Limits
from maomao.runner import Confinement, RunSpec, pinned_reference
from tests.support.tools import make_tool

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("busybox", f"busybox@{DIGEST}"),
        ("busybox:1.36", f"busybox@{DIGEST}"),
        ("localhost/lab/tool:1", f"localhost/lab/tool@{DIGEST}"),
        ("registry.example.org:5000/lab/tool", f"registry.example.org:5000/lab/tool@{DIGEST}"),
        ("registry.example.org:5000/lab/tool:2", f"registry.example.org:5000/lab/tool@{DIGEST}"),
        ("lab/tool@sha256:" + "cd" * 32, f"lab/tool@{DIGEST}"),
    ],
)
def test_pinned_reference_replaces_tag_and_digest(image: str, expected: str) -> None:
    assert pinned_reference(image, DIGEST) == expected
    assert pinned_reference(image, None) == image



DEFAULTS = RunnerConfig(
    docker_host=None, memory="1g", cpus=2.0, pids=1024, network="bridge", read_only=False, pull_timeout=600
)


def test_confinement_takes_config_defaults_for_what_the_tool_leaves_unset() -> None:
    assert Confinement.of(make_tool(), DEFAULTS) == Confinement("1g", 2.0, 1024, "bridge", False, "/usr/src/app/data")
    own = make_tool(
        limits=Limits(memory="64m", cpus=0.5, pids=10), network="none", read_only=True, data_mount="/data"
    )
    assert Confinement.of(own, DEFAULTS) == Confinement("64m", 0.5, 10, "none", True, "/data")
    # read_only = false on the tool wins over a read-only default
    assert not Confinement.of(make_tool(read_only=False), RunnerConfig(
        None, None, None, None, "none", True, 600
    )).read_only


def test_spec_image_is_the_pinned_reference() -> None:
    spec = RunSpec(
        tool=make_tool(digest=DIGEST), run_id="r", slot="r", member="m", workdir=Path("/w"),
        log_path=Path("/l"), timeout=1,
    )
    assert spec.image == f"lab/tool@{DIGEST}"
    env = spec.environment(base={"PATH": "/host/bin", "SECRET": "x"})
    assert env["MAOMAO_TOOL"] == "t" and env["PATH"] == "/host/bin" and "SECRET" not in env
    assert "PATH" not in spec.environment(base={})
