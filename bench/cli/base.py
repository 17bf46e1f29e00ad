"""What every command shares: the typer app, the one-line error, the console, option parsers, the target."""
from __future__ import annotations

import json
import math
import re
from enum import Enum
from typing import Any

import typer

from bench import __version__

# click's base exception, found through typer so this works whether typer vendors click or depends on it
ClickException: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def click_error(e: Exception) -> tuple[str, int]:
    """(the message on one line, the exit status: 2 unless click says otherwise) of a click usage error."""
    fmt = getattr(e, "format_message", None)
    msg = fmt() if callable(fmt) else str(e)
    return " ".join(str(msg).split()), int(getattr(e, "exit_code", 0) or 2)

app = typer.Typer(
    name="rooflab",
    help="Measure a GPU's real roofline (HBM, matmul, decode attention, MoE all-to-all) and model LLM inference on it.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class CLIError(Exception):
    """A user-facing error: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class Device(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rooflab {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """rooflab: measured hardware rooflines for LLM inference."""


# Characters that would act on the terminal instead of being shown: C0/C1 controls and DEL, line and paragraph
# separators, and the bidirectional overrides that reorder what follows them.
_ACTIVE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def shown(value: object, markup: bool = True) -> str:
    """``value`` as text fit for the terminal: every control character written as an escape (``\\x1b``,
    ``\\n``), so that a name from a file stays one inert line, and (``markup``, for rich) its square
    brackets escaped so that rich prints them instead of reading them as style tags. Every string that comes
    from data (a profile, a model, a record, a path, a device name) goes through it on its way out."""
    text = _ACTIVE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))
    if not markup:
        return text
    from rich.markup import escape

    return escape(text)


def console(wide: bool = False):
    """The CLI's console (no emoji codes: ":x:" in a name stays text). ``wide``: when piped (not a terminal),
    at least 160 columns, so that tables do not wrap into columns of dots."""
    from rich.console import Console

    con = Console(stderr=False, highlight=False, emoji=False)
    if wide and not con.is_terminal:
        con.width = max(con.width, 160)
    return con


def echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, allow_nan=False))


def si(v: float | None, unit: str = "", digits: int = 3) -> str:
    """A number with an SI prefix (k, M, G, T, P) and its unit; "–" for None."""
    if v is None:
        return "–"
    for f, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= f:
            return f"{v / f:.{digits}g} {p}{unit}"
    return f"{v:.{digits}g} {unit}".rstrip()


def ms(v: float | None) -> str:
    """Seconds as milliseconds, 3 significant digits; "–" for None."""
    return "–" if v is None else f"{v * 1e3:.3g}"


def usd(v: float | None) -> str:
    return "–" if v is None else f"{v:.3g}"


def int_list(text: str, what: str, lo: int, hi: int) -> list[int]:
    """A comma-separated option of whole numbers in [lo, hi], sorted and unique; CLIError with one line if not."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise CLIError(f"{what} wants comma-separated whole numbers, got {part!r}") from None
        if not lo <= v <= hi:
            raise CLIError(f"{what} values must be in [{lo}, {hi}], got {v}")
        out.append(v)
    if not out:
        raise CLIError(f"{what} is empty")
    return sorted(set(out))


def configure_target(device: str):
    from bench.target import TargetError, configure

    try:
        return configure(device)
    except TargetError as e:
        raise CLIError(str(e)) from None


MAX_SECONDS = 7 * 24 * 3600.0  # a week: any longer --budget or --time-limit is a typo


def seconds(name: str, value: float | None, hi: float = MAX_SECONDS) -> float | None:
    """A duration from the command line: finite, > 0 and at most ``hi`` seconds, or a one-line error."""
    if value is not None and not (math.isfinite(value) and 0 < value <= hi):
        raise CLIError(f"{name} must be a number of seconds in (0, {hi:g}], got {value}")
    return value


