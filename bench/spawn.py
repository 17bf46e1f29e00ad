"""Starting rooflab's own Python processes (the runner's workers, the ranks of a collective) with the import
path of the installed package only.

``python -m module`` would put the current folder first on the import path, so a stray ``numpy.py`` or
``bench/`` there would run inside every worker. ``command(module)`` starts the module through a bootstrap
that first drops every relative entry ('' is the current folder) from ``sys.path``, and ``env()`` puts the
folder holding the ``bench`` package first on ``PYTHONPATH``, keeping only the absolute entries the user set.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder that holds bench/ (and kernels/)
# os and sys are loaded before any code runs, so nothing here is looked up on the path it cleans
BOOTSTRAP = ("import os, sys; sys.path[:] = [p for p in sys.path if p and os.path.isabs(p)]; import runpy; "
             "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")


def command(module: str, *args: str) -> list[str]:
    """The command line that runs ``module`` as ``__main__`` with ``args``, never importing from the current
    folder."""
    return [sys.executable, "-c", BOOTSTRAP, module, *args]


def import_path(extra: list[str] | None = None) -> str:
    """PYTHONPATH for a child: the package's folder, then ``extra`` and the absolute entries of this
    process's PYTHONPATH (a relative one names the current folder), each once."""
    entries = [PACKAGE_ROOT, *(extra or []), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    seen: list[str] = []
    for p in entries:
        if p and os.path.isabs(p) and p not in seen:
            seen.append(p)
    return os.pathsep.join(seen)


def env(base: dict[str, str] | None = None, extra_path: list[str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``PYTHONPATH`` from ``import_path``."""
    out = dict(os.environ if base is None else base)
    out["PYTHONPATH"] = import_path(extra_path)
    out["PYTHONUNBUFFERED"] = "1"
    return out
