"""``run.json``: the settings a run started with, and the one set of rules they obey.

A resume must use the same settings, or it would measure other points than the run it continues. The rules
(``min_time_problem``, ``seed_problem``, ``selection_problem``, and ``bench.distributed.check_ranks`` for
the ranks) are the command line's and run.json's alike: a tampered run.json is refused in one line before
anything runs, never trusted because it was written by a run.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import distributed, registry
from ..jsonio import read_json
from ..profile import atomic_write_text
from ..target import Target
from .outcomes import RunError
from .outdir import SETTINGS, run_file

SETTINGS_VERSION = 1
MAX_SETTINGS_BYTES = 1 << 20
MAX_MIN_TIME_S = 3600.0  # measured seconds per point: more is a typo
SEED_LIMIT = 2**63


def min_time_problem(v: Any) -> str | None:
    """Why ``v`` is not a minimum measured time per point (None: it is one, or None for the default)."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 < v <= MAX_MIN_TIME_S):
        return f"must be a number of seconds in (0, {MAX_MIN_TIME_S:g}], got {v!r}"
    return None


def seed_problem(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < SEED_LIMIT:
        return f"must be a whole number in [0, 2^63), got {v!r}"
    return None


def selection_problem(names: Any) -> str | None:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return f"must be a non-empty list of benchmark names, got {names!r}"
    unknown = [n for n in names if n not in registry.REGISTRY]
    if unknown:
        return f"names unknown benchmark {unknown[0]!r}: choose from {', '.join(registry.REGISTRY)}"
    if len(set(names)) != len(names):
        return f"names a benchmark twice: {names!r}"
    return None


@dataclass
class Settings:
    """What a run was started with: a resume must use the same, or it would measure other points."""

    selection: list[str]
    quick: bool
    seed: int
    min_time_s: float | None
    options: dict[str, Any]
    backend: str
    device: str

    def to_json(self) -> str:
        """run.json's text; TypeError or ValueError when an option is not a plain JSON value."""
        return json.dumps({"version": SETTINGS_VERSION, **dataclasses.asdict(self)}, indent=2, allow_nan=False) + "\n"

    def differences(self, now: Settings) -> list[str]:
        """One phrase per setting ``now`` changes, e.g. ``seed 0 (now 1)``."""
        return [f"{f.name} {getattr(self, f.name)!r} (now {getattr(now, f.name)!r})"
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(now, f.name)]

    def check(self, target: Target | None = None, where: str = "") -> None:
        """RunError (one line, each setting named as ``where`` + its run.json name) unless every setting obeys
        the rules; with ``target``, the ranks are also checked against this machine."""
        problems = [("selection", selection_problem(self.selection)), ("seed", seed_problem(self.seed)),
                    ("min_time_s", min_time_problem(self.min_time_s))]
        for name, why in problems:
            if why:
                raise RunError(f"{where}{name} {why}")
        ranks = self.options.get("ranks")
        if ranks is not None:
            why = (f"{where}options.ranks must be a whole number, got {ranks!r}"
                   if isinstance(ranks, bool) or not isinstance(ranks, int)
                   else distributed.check_ranks(target, ranks, f"{where}options.ranks"))
            if why:
                raise RunError(why)


def save_settings(out: Path, text: str) -> None:
    """Write run.json (``Settings.to_json()``'s text) atomically."""
    atomic_write_text(run_file(out, SETTINGS), text)


def load_settings(out: str | Path) -> Settings | None:
    """The settings of the run in ``out`` (None for a run made before run.json existed), checked by the rules
    the command line's options obey."""
    path = Path(out) / SETTINGS
    try:
        path.lstat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    data = read_json(path, MAX_SETTINGS_BYTES, "run file", RunError, follow=False)
    try:
        if not isinstance(data, dict) or data.get("version") != SETTINGS_VERSION:
            raise TypeError("unknown version")
        settings = Settings(
            selection=_typed(data["selection"], list),
            quick=_typed(data["quick"], bool),
            seed=_typed(data["seed"], int),
            min_time_s=None if data["min_time_s"] is None else float(_number(data["min_time_s"])),
            options=_typed(data.get("options", {}), dict),
            backend=_typed(data["backend"], str),
            device=_typed(data["device"], str),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{path} is not a rooflab run file ({type(e).__name__}: {e})") from None
    settings.check(where=f"{path}: ")
    return settings


def _number(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{v!r} is not a number")
    return v


def _typed(v: Any, t: type | tuple[type, ...]) -> Any:
    if not isinstance(v, t) or (t is int and isinstance(v, bool)):
        raise TypeError(f"{v!r} is not {t}")
    return v
