"""The runner's own records, which records of ``measurements.jsonl`` count, and keeping the log one run's.

The runner writes a record for every point it could not measure (failed, skipped); one flagged retryable
(``RETRY``: not really run, for the budget, a time limit, a signal or a worker that could not start) is
measured again by a resume, and the record that replaces it makes it void. A line of the log that holds no
record (a torn last line from a kill, or anything else) is never dropped: ``set_aside`` moves it, byte for
byte, to ``measurements.unreadable.jsonl`` beside it. ``check_same_run`` refuses records of another device.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

from .. import measurement as meas
from ..jsonio import Lines
from ..measurement import LogError, Measurement, NotMeasuredStatus
from ..profile import atomic_write_bytes
from ..registry import Point, key_of
from ..target import Target
from .outcomes import RunError
from .outdir import UNREADABLE, Outputs

RETRY = "retry"  # Measurement.extra flag: the point was not really run (budget, limit, signal); resume redoes it
MAX_REASON_CHARS = 500


def point_not_measured(benchmark: str, point: Point, target: Target, reason: str,
                       status: NotMeasuredStatus = "failed", retry: bool = False) -> Measurement:
    """The record of a whole point without a number, keyed like the benchmark's own records of it."""
    return meas.not_measured(benchmark=benchmark, params=point, key=key_of(benchmark, point), status=status,
                             reason=reason[:MAX_REASON_CHARS], mode=target.backend, device=target.name,
                             extra={RETRY: True} if retry else None)


def is_retry(m: Measurement) -> bool:
    return bool(m.extra.get(RETRY))


def is_point_failure(m: Measurement) -> bool:
    """A record saying a whole point failed without a number (it raised, crashed, hung): ``--retry-failed``
    measures such a point again."""
    return m.status == "failed" and m.kernel == "*" and not is_retry(m)


def effective(records: list[Measurement]) -> list[Measurement]:
    """The records that count, in file order: every final record, and a retryable one only while no other
    record of its point replaced it (the last such one)."""
    final = {m.key for m in records if not is_retry(m)}
    last: dict[str, int] = {}
    for i, m in enumerate(records):
        if is_retry(m) and m.key not in final:
            last[m.key] = i
    return [m for i, m in enumerate(records) if not is_retry(m) or last.get(m.key) == i]


def read_log(path: Path) -> list[Measurement]:
    """The records of the log, its problems (not a regular file, a link, over its limit) as RunError."""
    try:
        return meas.read(path)
    except LogError as e:
        raise RunError(str(e)) from None


def _lines(path: Path) -> Lines:
    return Lines(path, line_limit=meas.MAX_RECORD_BYTES, total_limit=meas.MAX_LOG_BYTES, what="measurements",
                 error=LogError, follow=False)


def _rewrite(path: Path, keep: set[int], replace: dict[int, bytes] | None = None) -> None:
    """Rewrite the log atomically with the lines numbered in ``keep``, as they were (or as ``replace`` says)."""
    replace = replace or {}
    buf = io.BytesIO()
    with _lines(path) as lines:
        for line in lines:
            if line.number in replace:
                buf.write(replace[line.number])
            elif line.number in keep and line.data is not None:
                buf.write(line.data + b"\n")
    atomic_write_bytes(path, buf.getvalue())


def _numbers(ns: list[int]) -> str:
    shown = ", ".join(map(str, ns[:10]))
    return shown + (f" and {len(ns) - 10} more" if len(ns) > 10 else "")


def set_aside(log_path: Path) -> str | None:
    """Move every line of the log that holds no record to ``measurements.unreadable.jsonl`` beside it (appended,
    byte for byte, fsync'ed) before the log is rewritten without them; a message naming them, or None."""
    try:
        bad = [line for line, m in meas.scan(log_path) if m is None]
        if not bad:
            return None
        aside = Outputs(log_path.parent).run_file(UNREADABLE)
        fd = os.open(aside, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        with _lines(log_path) as lines, os.fdopen(fd, "ab") as f:
            for line in bad:
                lines.copy(line, f)
                if not line.complete:
                    f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
        numbers = {line.number for line in bad}
        _rewrite(log_path, {line.number for line, _ in meas.scan(log_path)} - numbers)
    except LogError as e:
        raise RunError(str(e)) from None
    except OSError as e:
        raise RunError(f"cannot move unreadable lines of {log_path} aside: {e.strerror or e}") from None
    torn = " (a torn last line)" if len(bad) == 1 and not bad[0].complete else ""
    return (f"{log_path.name}: {len(bad)} line{'s' if len(bad) > 1 else ''} without a record{torn} "
            f"moved to {aside} (line{'s' if len(bad) > 1 else ''} {_numbers([ln.number for ln in bad])})")


def check_same_run(log_path: Path, target: Target) -> None:
    """RunError naming the first record that is not of this device and backend: a resume continues one run."""
    modes = meas.BACKEND_MODES.get(target.backend, ())
    try:
        for line, m in meas.scan(log_path):
            if m is not None and (m.device != target.name or m.mode not in modes):
                raise RunError(f"{log_path} line {line.number} is a record of {m.device or 'no device'!r} "
                               f"({m.mode}), but this run is of {target.name!r} ({target.backend}): a resume "
                               "continues one run on one device; start a new run with --out")
    except LogError as e:
        raise RunError(str(e)) from None


def mark_failed_for_retry(log_path: Path) -> int:
    """Flag the records of failed points (``is_point_failure``) retryable, so that this resume measures those
    points again and their new records replace them; how many were flagged."""
    replace: dict[int, bytes] = {}
    try:
        for line, m in meas.scan(log_path):
            if m is not None and is_point_failure(m):
                m.extra[RETRY] = True
                replace[line.number] = (json.dumps(m.model_dump(mode="json"), allow_nan=False) + "\n").encode()
        if replace:
            _rewrite(log_path, {line.number for line, _ in meas.scan(log_path)}, replace)
    except LogError as e:
        raise RunError(str(e)) from None
    return len(replace)


def compact(path: Path, log: Callable[[str], None] | None = None) -> list[Measurement]:
    """Move unreadable lines aside (``log`` names them), drop replaced retryable records from the log
    (atomically); return what is left."""
    note = set_aside(path)
    if note and log:
        log(note)
    try:
        scanned = [(line.number, m) for line, m in meas.scan(path) if m is not None]
    except LogError as e:
        raise RunError(str(e)) from None
    records = [m for _, m in scanned]
    keep = effective(records)
    if len(keep) != len(records):
        kept = {id(m) for m in keep}
        _rewrite(path, {n for n, m in scanned if id(m) in kept})
    return keep


def has_final_record(path: Path, key: str) -> bool:
    """Whether the log holds a record of the point that a resume keeps."""
    return any(m.key == key and not is_retry(m) for m in read_log(path))


def final_keys(records: list[Measurement]) -> set[str]:
    """The points a resume skips: those with a final record."""
    return {m.key for m in records if m.key and not is_retry(m)}
