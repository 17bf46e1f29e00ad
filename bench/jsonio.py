"""Reading a JSON document a user handed us: bounded in size, strict about numbers, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: str | Path, limit: int, what: str, error: type[Exception]) -> Any:
    """The parsed JSON of ``path`` (at most ``limit`` bytes; NaN and Infinity refused). Any problem raises
    ``error`` with one line naming ``what`` ("profile", "model") and the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:  # bounded: a device file or a growing file reports a size it does not keep
            raw = f.read(limit + 1)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(raw) > limit:
        raise error(f"{what} {path} is over the {limit}-byte limit")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise error(f"{what} {path} is not valid JSON: {(str(e).splitlines() or [''])[0]}") from None
