"""``maomao daemon``: run this machine's member of the collaboration, or check its config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter


def daemon(
    *,
    config: Annotated[
        Path | None,
        Parameter(help="Config file (default: $MAOMAO_CONFIG, ./config.ini, ~/.config/maomao/config.ini, "
                  "/etc/maomao/config.ini)."),
    ] = None,
    validate_config: Annotated[
        bool,
        Parameter(help="Only check the config: print every problem (exit 2) or a summary (exit 0); "
                  "starts nothing, connects to nothing."),
    ] = False,
) -> int:
    """Run the daemon: join the collaboration, run scheduled and requested tools.

    Reports to systemd with sd_notify (Type=notify); SIGTERM drains and stops,
    SIGHUP reloads the config.  Logs go to journald when its socket is there
    (``MAOMAO_LOG=stderr`` forces stderr).
    """
    if validate_config:
        return check(config)
    from maomao.daemon import run_daemon

    return run_daemon(config)


def check(path: Path | None) -> int:
    """``--validate-config``: every problem as one ``error:`` line (2), or ``config OK: …`` (0)."""
    from maomao.config import check_config

    loaded, problems = check_config(path)
    if loaded is None:
        for problem in problems:
            sys.stderr.write("error: " + " ".join(problem.split()) + "\n")
        return 2
    store = loaded.store
    where = str(store.path) if store.backend == "embedded" else ",".join(store.endpoints)
    source = str(loaded.source.resolve()) if loaded.source is not None else "defaults"
    print(f"config OK: {source}, store {store.backend} {where}, member {loaded.member}")
    return 0
