"""``maomao ctl dataset``: register, list and remove datasets."""

from __future__ import annotations

from typing import Annotated

from cyclopts import App, Parameter

from maomao.cli import records
from maomao.cli.context import Common, JsonFlag
from maomao.model import Dataset
from maomao.registry import Collection, Registry

app = App(name="dataset", help="Register, list and remove datasets.")


def _datasets(registry: Registry) -> Collection[Dataset]:
    return registry.datasets


@app.command
def get(
    name: str | None = None,
    /,
    *,
    json: JsonFlag = False,
    common: Common = Common(),
) -> None:
    """List the registered datasets, or show one.

    Parameters
    ----------
    name
        Show only this dataset.
    """
    records.show(
        common,
        _datasets,
        name,
        json,
        [
            ("NAME", lambda d: d.name),
            ("URL", lambda d: d.url),
            ("DESCRIPTION", lambda d: d.description),
        ],
        lambda d: [("name", d.name), ("url", d.url), ("description", d.description or "-")],
    )


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
