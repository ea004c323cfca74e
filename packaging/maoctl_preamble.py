"""shiv preamble of the maomao zipapp: invoked as ``maoctl`` (a symlink to it), act as ``maomao ctl``.

shiv runs this (``runpy.run_path``, with ``archive`` set to the path the
zipapp was invoked by) after unpacking the zipapp's environment and before
calling ``maomao.cli:main``, which reads ``sys.argv[1:]``.  While this runs
``sys.argv[0]`` is this file; the list itself is the one main() reads.
"""

import os
import sys

invoked_as = os.path.basename(str(globals().get("archive", "")))
if invoked_as in ("maoctl", "maoctl.py"):
    sys.argv.insert(1, "ctl")
