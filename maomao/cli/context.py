"""What every ``ctl`` command shares: ``--config``, the store, and its lifetime.

A ``ctl`` command is mostly one short conversation with the store, so
:func:`with_registry` opens the store with the :func:`~maomao.store.inline`
offload and drives its coroutine without an event loop (see
:mod:`maomao.store`).  A command that waits (watches the store, runs a
process) uses :func:`with_registry_on_trio`: a Trio event loop and the
store's default threaded offload.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from cyclopts import Parameter

from maomao.config import Config, load_config
from maomao.registry import Registry
from maomao.store import inline, open_store, run_inline
from maomao.store.keys import Keys

T = TypeVar("T")


#: ``--json`` of every listing command
JsonFlag = Annotated[bool, Parameter(help="Print a JSON list of objects instead of a table.")]


@Parameter(name="*")
@dataclass(frozen=True)
class Common:
    """Options every ``ctl`` command takes."""

    config: Annotated[
        Path | None,
        Parameter(
            help="Config file (default: $MAOMAO_CONFIG, ./config.ini, ~/.config/maomao/config.ini, "
            "/etc/maomao/config.ini)."
        ),
    ] = None


def with_registry(
    common: Common, action: Callable[[Registry, Config], Coroutine[Any, Any, T]]
) -> T:
    """Load the config, open the store, run ``action``, close the store."""
    config = load_config(common.config)
    store = open_store(config.store, offload=inline)
    try:
        return run_inline(action(Registry(store, Keys(config.store.prefix)), config))
    finally:
        run_inline(store.aclose())


def with_registry_on_trio(
    common: Common, action: Callable[[Registry, Config], Coroutine[Any, Any, T]]
) -> T:
    """Like :func:`with_registry`, inside ``trio.run`` with the store's threaded offload."""
    import trio

    config = load_config(common.config)

    async def main() -> T:
        store = open_store(config.store)
        try:
            return await action(Registry(store, Keys(config.store.prefix)), config)
        finally:
            with trio.CancelScope(shield=True):
                await store.aclose()

    return trio.run(main)
