"""The `rooflab` command line: a thin typer shell over the library, one module per command group.

``base`` holds what every command shares (the app, the one-line error, the console); each command module
registers itself on that app when imported below. Nothing in the package imports this module, so the command
modules form no import circle. Every error a user can cause ends in one line on stderr and a non-zero exit
(2 for bad usage or input), never a traceback; ROOFLAB_DEBUG=1 shows the traceback of an internal error.
"""
from __future__ import annotations

import os
import sys

import typer

# each module registers its commands on `app`; `rooflab --help` lists them in this order, run first
from bench.cli import run  # noqa: F401

# isort: split
from bench.cli import doctor, profiles, report, validate  # noqa: F401
from bench.cli.base import ClickException, CLIError, app, click_error, shown

__all__ = ["CLIError", "app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every user-facing error into one line + exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        args = ["--help"]
    try:
        rv = app(args=args, prog_name="rooflab", standalone_mode=False)
    except typer.Exit as e:
        sys.exit(getattr(e, "exit_code", 0))
    except typer.Abort:
        print("rooflab: aborted", file=sys.stderr)
        sys.exit(130)
    except ClickException as e:
        msg, code = click_error(e)
        if not msg:  # no-args-is-help: the help was printed already
            sys.exit(2)
        print(f"rooflab: error: {shown(msg, markup=False)}", file=sys.stderr)
        sys.exit(code)
    except CLIError as e:
        print(f"rooflab: error: {shown(' '.join(str(e).split()), markup=False)}", file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        print("rooflab: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # an internal error still gets one line; the traceback only on request
        if os.environ.get("ROOFLAB_DEBUG"):
            raise
        print(f"rooflab: internal error: {type(e).__name__}: {shown(' '.join(str(e).split())[:300], markup=False)}",
              file=sys.stderr)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
