"""``maomao daemon``: run this machine's member of the collaboration."""

from __future__ import annotations

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
) -> int:
    """Run the daemon: join the collaboration, run scheduled and requested tools.

    Reports to systemd with sd_notify (Type=notify); SIGTERM drains and stops,
    SIGHUP reloads the config.
    """
    from maomao.daemon import run_daemon

    return run_daemon(config)
