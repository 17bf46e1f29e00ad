"""Whether an installed package is the version constraints.txt pins: tests that compare output a dependency
renders (e.g. pydantic's JSON Schema) compare it exactly only there, and by its substance under any version."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def pinned(dist: str) -> str | None:
    """The version constraints.txt pins for ``dist`` (None when it pins none)."""
    want = dist.lower().replace("_", "-")
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep and name.strip().lower().replace("_", "-") == want:
            return version.strip()
    return None


def at_pinned_version(dist: str) -> bool:
    return pinned(dist) == metadata.version(dist).split("+", 1)[0]
