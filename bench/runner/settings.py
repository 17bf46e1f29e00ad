"""``run.json``: the settings a run started with. A resume must use the same ones, or it would measure other
points than the run it continues."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..profile import atomic_write_text
from .outcomes import RunError
from .outdir import SETTINGS

SETTINGS_VERSION = 1
MAX_SETTINGS_BYTES = 1 << 20


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


def save_settings(out: Path, text: str) -> None:
    """Write run.json (``Settings.to_json()``'s text) atomically."""
    atomic_write_text(out / SETTINGS, text)


def load_settings(out: str | Path) -> Settings | None:
    """The settings of the run in ``out`` (None for a run made before run.json existed)."""
    path = Path(out) / SETTINGS
    try:
        if not path.exists():
            return None
        if path.stat().st_size > MAX_SETTINGS_BYTES:
            raise RunError(f"{path} is larger than {MAX_SETTINGS_BYTES} bytes: not a rooflab run file")
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    except ValueError as e:
        raise RunError(f"{path} is not valid JSON: {str(e).splitlines()[0]}") from None
    try:
        if not isinstance(data, dict) or data.get("version") != SETTINGS_VERSION:
            raise TypeError("unknown version")
        return Settings(
            selection=[str(x) for x in _typed(data["selection"], list)],
            quick=_typed(data["quick"], bool),
            seed=_typed(data["seed"], int),
            min_time_s=None if data["min_time_s"] is None else float(_typed(data["min_time_s"], (int, float))),
            options=_typed(data.get("options", {}), dict),
            backend=_typed(data["backend"], str),
            device=_typed(data["device"], str),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{path} is not a rooflab run file ({type(e).__name__}: {e})") from None


def _typed(v: Any, t: type | tuple[type, ...]) -> Any:
    if not isinstance(v, t) or (t is int and isinstance(v, bool)):
        raise TypeError(f"{v!r} is not {t}")
    return v


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
