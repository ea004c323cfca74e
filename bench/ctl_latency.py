"""Benchmark: how fast ``maomao ctl tool get`` answers with 1,000 tools in etcd.

Starts its own etcd on free loopback ports, registers 1,000 tools under a
fresh prefix, then times, interleaved in one run so that machine noise hits
both sides alike:

* ``maomao ctl tool get --json`` against ``etcdctl get --prefix <prefix>tools/``
  (the same data, read raw by etcd's own Go client);
* ``maomao --help`` against ``etcdctl --help``;
* ``maomao ctl tool get --json`` on the embedded store with the same 1,000 tools.

It prints the medians and ratios and writes them to
``bench/results/ctl_latency.json`` (or ``--out``).  It also checks which
heavy modules the ``ctl tool get`` path imports (docker, pygit2, numpy,
trio must be absent).  Timings are figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maomao.model import Tool  # noqa: E402
from maomao.store import Put, inline, run_inline  # noqa: E402
from maomao.store.embedded import EmbeddedStore  # noqa: E402
from maomao.store.etcd import EtcdStore  # noqa: E402
from maomao.store.keys import Keys  # noqa: E402
from tests.support.etcd import EtcdCluster  # noqa: E402

HEAVY = ("docker", "pygit2", "numpy", "trio")


def tools(count: int) -> list[Tool]:
    return [
        Tool(
            name=f"tool-{i:04d}",
            author=f"author {i % 17}",
            image=f"registry.example.org/collectors/tool-{i:04d}:1.{i % 9}",
            data_repo=f"https://git.example.org/data/tool-{i:04d}.git",
            code_repo=f"git@git.example.org:code/tool-{i:04d}.git",
            artefact=("website", "app", "dns", "certificate")[i % 4],
            env={"TARGET": f"https://site-{i}.example.org"},
        )
        for i in range(count)
    ]


def register(store: EtcdStore | EmbeddedStore, keys: Keys, records: list[Tool]) -> None:
    for start in range(0, len(records), 100):
        batch = records[start : start + 100]
        run_inline(store.txn([], [Put(keys.tool(t.name), t.to_value()) for t in batch]))


def time_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def interleaved(pairs: dict[str, tuple[list[str], dict[str, str]]], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in pairs}
    for argv, env in pairs.values():  # warm the page cache and .pyc files
        time_once(argv, env)
    for _ in range(rounds):
        for name, (argv, env) in pairs.items():
            samples[name].append(time_once(argv, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def imported_modules(argv: list[str], env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=env, check=True
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ctl_latency.json")
    args = parser.parse_args()

    maomao = str(Path(sys.executable).parent / "maomao")
    cluster = EtcdCluster(1)
    cluster.start()
    work = Path(tempfile.mkdtemp(prefix="maomao-bench-"))
    try:
        prefix = "/bench/"
        keys = Keys(prefix)
        records = tools(args.tools)
        etcd_store = EtcdStore(cluster.endpoints, offload=inline)
        register(etcd_store, keys, records)
        embedded_store = EmbeddedStore(work / "store.db", offload=inline)
        register(embedded_store, keys, records)

        etcd_config = work / "etcd.ini"
        etcd_config.write_text(
            f"[store]\nbackend = etcd\nendpoints = {cluster.endpoints[0]}\nprefix = {prefix}\n"
        )
        embedded_config = work / "embedded.ini"
        embedded_config.write_text(f"[store]\nbackend = embedded\npath = {work / 'store.db'}\nprefix = {prefix}\n")
        env = {**os.environ, "HOME": str(work), "ETCDCTL_API": "3"}
        env.pop("MAOMAO_CONFIG", None)

        out = subprocess.run(
            [maomao, "ctl", "tool", "get", "--json", "--config", str(etcd_config)],
            check=True, capture_output=True, text=True, env=env,
        ).stdout
        assert len(json.loads(out)) == args.tools, "ctl tool get did not list every tool"

        medians = interleaved(
            {
                "maomao_ctl_tool_get_json_etcd": (
                    [maomao, "ctl", "tool", "get", "--json", "--config", str(etcd_config)], env
                ),
                "etcdctl_get_prefix": (
                    ["etcdctl", "--endpoints", cluster.endpoints[0], "get", "--prefix", keys.tools], env
                ),
                "maomao_help": ([maomao, "--help"], env),
                "etcdctl_help": (["etcdctl", "--help"], env),
                "maomao_ctl_tool_get_json_embedded": (
                    [maomao, "ctl", "tool", "get", "--json", "--config", str(embedded_config)], env
                ),
            },
            args.rounds,
        )
        heavy = imported_modules(
            ["-m", "maomao", "ctl", "tool", "get", "--json", "--config", str(etcd_config)], env
        )
        figures = {
            "tools": args.tools,
            "rounds": args.rounds,
            "median_seconds": {k: round(v, 4) for k, v in medians.items()},
            "ratio_tool_get_vs_etcdctl": round(
                medians["maomao_ctl_tool_get_json_etcd"] / medians["etcdctl_get_prefix"], 2
            ),
            "ratio_help_vs_etcdctl_help": round(medians["maomao_help"] / medians["etcdctl_help"], 2),
            "target_seconds": 0.25,
            "tool_get_within_target": medians["maomao_ctl_tool_get_json_etcd"] <= 0.25,
            "heavy_modules_imported_by_tool_get": heavy,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
    finally:
        cluster.destroy()

    for name, value in figures["median_seconds"].items():
        print(f"{name:40s} {value * 1000:8.1f} ms (median of {args.rounds})")
    print(f"{'ratio ctl tool get / etcdctl get':40s} {figures['ratio_tool_get_vs_etcdctl']:8.2f}x")
    print(f"{'ratio maomao --help / etcdctl --help':40s} {figures['ratio_help_vs_etcdctl_help']:8.2f}x")
    print(f"{'heavy modules imported by tool get':40s} {heavy or 'none'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
