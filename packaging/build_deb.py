"""Build the Debian package of maomao from the built zipapp, with dpkg-deb.

    python packaging/build_deb.py [--zipapp dist/maomao] [--output-dir dist]

Writes ``OUTPUT_DIR/maomao_<version>_<arch>.deb`` (version: ``maomao.__version__``)
holding ``/usr/bin/maomao`` (the zipapp), ``/usr/bin/maoctl`` -> maomao,
``/lib/systemd/system/maomao.service`` (ExecStart=/usr/bin/maomao daemon),
``/etc/maomao/config.ini`` (a conffile) and packaging/{postinst,prerm,postrm}.

The architecture is the build machine's, not ``all``: the zipapp embeds
compiled wheels (numpy, pygit2, cffi) for this CPU and this Python minor
version, hence also ``Depends: python3 (>= 3.11), python3 (<< 3.12)`` for a
zipapp built by Python 3.11.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def version() -> str:
    text = (ROOT / "maomao" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not match:
        raise SystemExit("build_deb: no __version__ in maomao/__init__.py")
    return match.group(1)


def control(pkg_version: str, arch: str, installed_kib: int) -> str:
    major, minor = sys.version_info[:2]
    return (
        "Package: maomao\n"
        f"Version: {pkg_version}\n"
        f"Architecture: {arch}\n"
        "Maintainer: maomao developers <maomao@localhost>\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: python3 (>= {major}.{minor}), python3 (<< {major}.{minor + 1}), adduser | passwd\n"
        "Recommends: git\n"
        "Suggests: podman | docker.io, etcd-server\n"
        "Section: admin\n"
        "Priority: optional\n"
        "Description: run a research collaboration's periodic data collectors\n"
        " maomao registers tools (container images that collect data) and datasets,\n"
        " shares them through etcd or an embedded store, runs the tools on schedules,\n"
        " commits what they collect to git data repositories and watches the\n"
        " collected series for spikes.  The daemon runs as the maomao.service unit.\n"
    )


def build(zipapp: Path, output_dir: Path) -> Path:
    if not zipapp.is_file():
        raise SystemExit(f"build_deb: {zipapp} not found: run 'make zipapp' first")
    arch = subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()
    pkg_version = version()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maomao-deb-") as tmp:
        tree = Path(tmp) / "maomao"
        (tree / "usr/bin").mkdir(parents=True)
        (tree / "lib/systemd/system").mkdir(parents=True)
        (tree / "etc/maomao").mkdir(parents=True)
        (tree / "DEBIAN").mkdir()
        shutil.copyfile(zipapp, tree / "usr/bin/maomao")
        (tree / "usr/bin/maomao").chmod(0o755)
        (tree / "usr/bin/maoctl").symlink_to("maomao")
        unit = (ROOT / "systemd/maomao.service").read_text()
        unit = re.sub(r"^ExecStart=/usr/local/bin/maomao ", "ExecStart=/usr/bin/maomao ", unit, flags=re.MULTILINE)
        unit = unit.replace("/usr/local/bin/maomao", "/usr/bin/maomao")
        (tree / "lib/systemd/system/maomao.service").write_text(unit)
        shutil.copyfile(ROOT / "config.ini", tree / "etc/maomao/config.ini")
        for script in ("postinst", "prerm", "postrm"):
            shutil.copyfile(ROOT / "packaging" / script, tree / "DEBIAN" / script)
            (tree / "DEBIAN" / script).chmod(0o755)
        (tree / "DEBIAN/conffiles").write_text("/etc/maomao/config.ini\n")
        size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
        (tree / "DEBIAN/control").write_text(control(pkg_version, arch, (size + 1023) // 1024))
        for path in tree.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() or path.stat().st_mode & 0o100 else 0o644)
        target = output_dir / f"maomao_{pkg_version}_{arch}.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(target)],
            check=True, stdout=subprocess.DEVNULL,
        )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zipapp", type=Path, default=ROOT / "dist/maomao")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist")
    args = parser.parse_args()
    print(build(args.zipapp, args.output_dir))


if __name__ == "__main__":
    main()
