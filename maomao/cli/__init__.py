"""The command line: ``maomao`` (root), ``maomao ctl`` and its ``maoctl`` alias.

Command groups are registered by import path, so ``--help`` and light
commands import only what they run (never docker, pygit2 or numpy).
Every failure ends as one ``error: ...`` line on stderr: exit 2 for input
the user can fix, 1 for an unreachable store or an internal fault.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Literal

from cyclopts import App, CycloptsError, Parameter

from maomao import __version__
from maomao.errors import MaomaoError

app = App(
    name="maomao",
    help="Run a research collaboration's periodic data collectors.",
    version=__version__,
    default_parameter=Parameter(negative=()),
)
ctl = App(
    name="ctl",
    help="Control the collaboration: tools, datasets, members, spikes (talks to the store directly).",
)
ctl.command("maomao.cli.tool:app", name="tool", help="Register, list, schedule, run and remove tools.")
ctl.command("maomao.cli.dataset:app", name="dataset", help="Register, list, clone and remove datasets.")
ctl.command("maomao.cli.member:app", name="member", help="List the live members.")
ctl.command("maomao.cli.spikes:app", name="spikes", help="The spikes found in the tools' series.")
ctl.command(
    "maomao.cli.status:status", name="status",
    help="The collaboration on one screen: store, members, running and next runs, recent failures and spikes.",
)
app.command(ctl)
app.command("maomao.cli.daemon:daemon", name="daemon", help="Run this machine's member of the collaboration.")
app.command("maomao.cli.offline:app", name="spikes", help="Spike detection on a CSV file, offline: score, plot.")


@app.command(name="completion")
def completion(shell: Literal["bash", "zsh"], /) -> None:
    """Print the shell completion script for maomao.

    bash: ``maomao completion bash > /etc/bash_completion.d/maomao``;
    zsh: ``maomao completion zsh > "${fpath[1]}/_maomao"``.

    Parameters
    ----------
    shell
        The shell: bash or zsh.
    """
    sys.stdout.write(app.generate_completion(prog_name="maomao", shell=shell))


def _one_line(text: str) -> str:
    """The message on one line, control characters escaped (a path or a value may hold ESC or NUL)."""
    from maomao.cli.output import printable

    return printable(" ".join(str(text).split()))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``maomao``; exits with the command's status."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(tokens, exit_on_error=False, print_error=False)
    except CycloptsError as exc:
        sys.stderr.write(f"error: {_one_line(str(exc))}\n")
        sys.exit(2)
    except MaomaoError as exc:
        sys.stderr.write(f"error: {_one_line(str(exc))}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # the reader went away (``maomao ctl tool get | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        if os.environ.get("MAOMAO_DEBUG"):
            raise
        sys.stderr.write(
            f"error: internal error: {type(exc).__name__}: {_one_line(str(exc))}"
            " (set MAOMAO_DEBUG=1 for a traceback)\n"
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


def maoctl_main() -> None:
    """Entry point of ``maoctl``: exactly ``maomao ctl``."""
    main(["ctl", *sys.argv[1:]])
