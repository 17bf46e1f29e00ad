"""The run directory: the files a run writes into it, its default name, and what ``--resume`` and
``--force`` ask of it (continue a run; start over, deleting only the files a run writes)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..target import Target
from .outcomes import RunError

MEASUREMENTS = "measurements.jsonl"
PROFILE = "profile.json"
REPORT = "report.md"
SETTINGS = "run.json"
LOG_DIR = "logs"  # one log per benchmark: its workers' stdout and stderr
# What --force may delete in an existing output directory: only files a run writes.
FORCE_REMOVES_FILES = (MEASUREMENTS, PROFILE, REPORT, "report.html", SETTINGS)
FORCE_REMOVES_GLOBS = (("plots", "*.png"), (LOG_DIR, "*.log"))


def default_out_dir(target: Target, root: str | Path = "reports") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"{target.slug}-{stamp}"


def log_path(out: Path, benchmark: str) -> Path:
    return out / LOG_DIR / f"{benchmark}.log"


def prepare_out_dir(out: Path, *, resume: bool = False, force: bool = False) -> None:
    """Refuse to overwrite: a non-empty directory needs ``resume`` (continue it) or ``force`` (start over,
    deleting only the files a run writes)."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise RunError(f"output path {out} exists and is not a directory")
        if resume:
            if not out.is_dir():
                raise RunError(f"nothing to resume: {out} does not exist")
            if not ((out / MEASUREMENTS).exists() or (out / SETTINGS).exists()):
                raise RunError(f"nothing to resume in {out}: it has no {MEASUREMENTS} (not a rooflab run directory)")
        elif out.exists() and any(out.iterdir()):
            if not force:
                raise RunError(f"output directory {out} is not empty: use --resume {out} to continue it "
                               f"or --force to overwrite")
            _remove_outputs(out)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot use output directory {out}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise RunError(f"bad output path {str(out)!r}: {e}") from None


def _remove_outputs(out: Path) -> None:
    """What --force deletes: the files a run writes, nothing else in the directory."""
    for name in FORCE_REMOVES_FILES:
        (out / name).unlink(missing_ok=True)
    for sub, pattern in FORCE_REMOVES_GLOBS:
        if (out / sub).is_dir():
            for p in (out / sub).glob(pattern):
                p.unlink(missing_ok=True)
