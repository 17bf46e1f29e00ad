"""Profiles on disk: read strictly, validate with one-line errors, write atomically.

``load`` reads a regular file of at most ``MAX_PROFILE_BYTES`` through bench/jsonio.py (NaN and Infinity refused) and
``validate`` checks the document against the schema; any problem is a :class:`ProfileError` whose message is
one line, fit for the CLI. ``save`` and the ``atomic_write_*`` helpers write to a temporary file beside the
target and rename it over, so a reader (or a killed run) sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..jsonio import read_json
from .schema import SCHEMA_VERSION, Profile

MAX_PROFILE_BYTES = 16 * 1024 * 1024


class ProfileError(ValueError):
    """A profile that cannot be used; the message is one line, fit for the CLI."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target: a reader (or a killed
    run) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files: give outputs the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save(profile: Profile, path: str | Path) -> None:
    atomic_write_text(path, profile.model_dump_json(indent=2, exclude_none=True) + "\n")


def load(path: str | Path) -> Profile:
    """Load and validate a profile JSON file; any problem raises ProfileError with a one-line reason."""
    path = Path(path)
    return validate(read_json(path, MAX_PROFILE_BYTES, "profile", ProfileError), str(path))


def validate(data: Any, where: str = "profile") -> Profile:
    """The profile ``data`` (a parsed JSON document) describes; ProfileError naming the first bad field if none."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile must be a JSON object")
    ver = data.get("schema_version")
    if type(ver) is not int or ver != SCHEMA_VERSION:  # 1.0 and true are not the integer 1
        raise ProfileError(f"{where}: schema_version {ver!r} is not supported (this rooflab reads {SCHEMA_VERSION})")
    try:
        return Profile.model_validate(data)
    except ValueError as e:
        raise ProfileError(one_line(e, where)) from None


def one_line(e: ValueError, where: str) -> str:
    """A validation error as one line: where, the first bad field's dotted path and why (and how many more)."""
    errs = e.errors() if isinstance(e, ValidationError) else []
    if not errs:
        return f"{where}: {(str(e).splitlines() or [''])[0]}"
    first = errs[0]
    # keys come from the file: repr() keeps a key with a newline or control character on one line; a tagged
    # union's tag ("record", "text") is the schema's, not the file's, and is left out
    loc = ".".join(x if x.isprintable() else repr(x) for x in (str(k) for k in first.get("loc", ()))
                   if x not in ("record", "text"))
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    msg = " ".join(str(first.get("msg")).split())
    return f"{where}: {loc or '(root)'}: {msg}{more}"
