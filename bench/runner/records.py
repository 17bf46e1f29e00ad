"""The runner's own records and which records of ``measurements.jsonl`` count.

The runner writes a record for every point it could not measure (failed, skipped); one flagged retryable
(``RETRY``: not really run, for the budget, a time limit, a signal or a worker that could not start) is
measured again by a resume, and the record that replaces it makes it void.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import measurement as meas
from ..measurement import Measurement, NotMeasuredStatus
from ..profile import atomic_write_text
from ..registry import Point, key_of
from ..target import Target

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


def effective(records: list[Measurement]) -> list[Measurement]:
    """The records that count, in file order: every final record, and a retryable one only while no other
    record of its point replaced it (the last such one)."""
    final = {m.key for m in records if not is_retry(m)}
    last: dict[str, int] = {}
    for i, m in enumerate(records):
        if is_retry(m) and m.key not in final:
            last[m.key] = i
    return [m for i, m in enumerate(records) if not is_retry(m) or last.get(m.key) == i]


def compact(path: Path) -> list[Measurement]:
    """Drop replaced retryable records (and torn lines) from the log, atomically; return what is left."""
    records = meas.read(path)
    keep = effective(records)
    try:
        with open(path, "rb") as f:
            lines = sum(1 for ln in f if ln.strip())
    except OSError:
        lines = len(records)
    if len(keep) != lines:
        text = "".join(json.dumps(r.model_dump(mode="json"), allow_nan=False) + "\n" for r in keep)
        atomic_write_text(path, text)
    return keep


def has_final_record(path: Path, key: str) -> bool:
    """Whether the log holds a record of the point that a resume keeps."""
    return any(m.key == key and not is_retry(m) for m in meas.read(path))


def final_keys(records: list[Measurement]) -> set[str]:
    """The points a resume skips: those with a final record."""
    return {m.key for m in records if m.key and not is_retry(m)}
