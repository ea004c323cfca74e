"""Build the maomao zipapp with shiv, from the settings in shiv.toml.

    python packaging/build_zipapp.py [-o OUTPUT]

shiv has no config file: this reads ``shiv.toml`` (tomllib) and runs the
``shiv`` CLI that sits beside this Python (the venv's) with those options.
The project is copied to a temporary directory first (pyproject.toml,
README.md, maomao/ without caches), so the build writes nothing into the
source tree and two builds can run at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "maomao")


def shiv_command(settings: dict[str, object], output: Path, project: Path) -> list[str]:
    shiv = Path(sys.executable).parent / "shiv"
    command = [str(shiv) if shiv.exists() else "shiv", "-o", str(output)]
    if settings.get("entry_point"):
        command += ["-e", str(settings["entry_point"])]
    elif settings.get("console_script"):
        command += ["-c", str(settings["console_script"])]
    if settings.get("python"):
        command += ["-p", str(settings["python"])]
    if settings.get("reproducible"):
        command.append("--reproducible")
    command.append("--compressed" if settings.get("compressed", True) else "--uncompressed")
    if settings.get("preamble"):
        command += ["--preamble", str(ROOT / str(settings["preamble"]))]
    for package in settings.get("packages", ["."]):  # type: ignore[union-attr]
        command.append(str(project) if package == "." else str(package))
    return command


def build(output: Path | None = None, config: Path = ROOT / "shiv.toml") -> Path:
    settings = tomllib.loads(config.read_text())["shiv"]
    target = (output or ROOT / str(settings.get("output", "dist/maomao"))).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maomao-zipapp-") as tmp:
        project = Path(tmp) / "maomao"
        project.mkdir()
        for name in SOURCES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, project / name)
        partial = target.with_name(target.name + ".part")
        env = {**os.environ, "PIP_QUIET": "1"}
        subprocess.run(shiv_command(settings, partial, project), check=True, cwd=tmp, env=env)
        partial.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="the zipapp to write (default: shiv.toml's output)")
    args = parser.parse_args()
    print(build(args.output))


if __name__ == "__main__":
    main()
