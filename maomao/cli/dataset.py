"""``maomao ctl dataset``: register, list, clone and remove datasets."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from cyclopts import App, Parameter

from maomao.cli import records
from maomao.cli.context import Common, JsonFlag, with_registry
from maomao.cli.output import warn
from maomao.clones import Clone, Head, load, read_head
from maomao.config import Config
from maomao.model import Dataset
from maomao.registry import Collection, Registry

app = App(name="dataset", help="Register, list, clone and remove datasets.")


def _datasets(registry: Registry) -> Collection[Dataset]:
    return registry.datasets


@dataclass(frozen=True, slots=True)
class Located:
    """A dataset as ``dataset get`` shows it: with where it is cloned on this machine, if it is."""

    dataset: Dataset
    clone: Clone | None
    head: Head | None

    @classmethod
    def of(cls, dataset: Dataset, clones: dict[str, Clone]) -> Located:
        clone = clones.get(dataset.name)
        head = read_head(clone.path) if clone is not None else None
        return cls(dataset, clone if head is not None else None, head)  # a vanished clone is no clone

    def to_dict(self) -> dict[str, Any]:
        clone = None
        if self.clone is not None and self.head is not None:
            clone = {
                "path": str(self.clone.path),
                "head": self.head.commit,
                "branch": self.head.branch,
                "cloned": self.clone.cloned,
                "updated": self.clone.updated,
            }
        return {**self.dataset.to_dict(), "clone": clone}

    def cloned(self) -> str:
        return "yes" if self.clone is not None else "no"

    def path(self) -> str:
        return str(self.clone.path) if self.clone is not None else "-"

    def describe_head(self) -> str:
        return self.head.describe() if self.head is not None else "-"

    def details(self) -> list[tuple[str, str]]:
        return [
            ("name", self.dataset.name),
            ("url", self.dataset.url),
            ("description", self.dataset.description or "-"),
            ("cloned", self.cloned()),
            ("path", self.path()),
            ("head", self.describe_head()),
        ]


@app.command
def get(
    name: str | None = None,
    /,
    *,
    json: JsonFlag = False,
    common: Common = Common(),
) -> None:
    """List the registered datasets, or show one, with where each is cloned on this machine.

    Parameters
    ----------
    name
        Show only this dataset.
    """

    async def read(registry: Registry, config: Config) -> tuple[list[Dataset], Path]:
        if name is not None:
            return [await registry.datasets.get(name)], config.importdir
        listing = await registry.datasets.list()
        for problem in listing.unreadable:
            warn(problem)
        return list(listing.records), config.importdir

    datasets, importdir = with_registry(common, read)
    clones, problems = load(importdir)
    for problem in problems:
        warn(problem)
    records.render(
        [Located.of(d, clones) for d in datasets],
        name is not None,
        json,
        [
            ("NAME", lambda d: d.dataset.name),
            ("URL", lambda d: d.dataset.url),
            ("CLONED", Located.cloned),
            ("PATH", Located.path),
            ("HEAD", Located.describe_head),
            ("DESCRIPTION", lambda d: d.dataset.description),
        ],
        Located.details,
        Located.to_dict,
    )


@app.command
def clone(
    name: str,
    /,
    *,
    dest: Annotated[
        Path | None,
        Parameter(help="Clone into this directory (default: where it was cloned before, else importdir/NAME)."),
    ] = None,
    common: Common = Common(),
) -> None:
    """Clone a dataset here, or update its clone (fetch, fast-forward).

    Shows the transfer's progress on stderr (one redrawn line on a terminal,
    a plain line a second otherwise) and ends with one line on stdout: how
    many commits came and the HEAD.

    Parameters
    ----------
    name
        The dataset to clone.
    """
    from maomao.cli.progress import TransferMeter
    from maomao.clones import clone_dataset

    async def read(registry: Registry, config: Config) -> tuple[Dataset, Config]:
        return await registry.datasets.get(name), config

    dataset, config = with_registry(common, read)
    meter = TransferMeter(sys.stderr)
    try:
        outcome = clone_dataset(dataset, config, dest=dest, progress=meter)
    except BaseException:
        meter.abort()
        raise
    meter.finish()
    print(outcome.line())


@app.command
def add(
    name: str,
    url: str,
    /,
    *,
    description: Annotated[str, Parameter(help="What the dataset holds.")] = "",
    replace: Annotated[bool, Parameter(help="Overwrite a dataset of the same name.")] = False,
    common: Common = Common(),
) -> None:
    """Register a dataset: a git remote collaborators can clone.

    Parameters
    ----------
    name
        The dataset's name: 1-64 letters, digits, '.', '_' or '-'.
    url
        Its git remote: https://, http://, ssh://, user@host:path, file:// or an absolute path.
    """
    records.add(common, _datasets, Dataset(name=name, url=url, description=description), replace)


@app.command
def remove(name: str, /, *, common: Common = Common()) -> None:
    """Remove a registered dataset.

    Parameters
    ----------
    name
        The dataset to remove.
    """
    records.remove(common, _datasets, name)
