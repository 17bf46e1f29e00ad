"""What the runner and a worker process say to each other (both ends import this module).

* the worker's stdin: the ``Job`` as one JSON line; after it, ``STOP_LINE`` asks the worker to stop after
  the point in flight (so does EOF: the runner is gone);
* a pipe the worker inherits (``--events-fd N``): one JSON ``Event`` per line;
* the worker's exit status: 0, or ``EXIT_CUDA_ERROR`` when a CUDA error may have left its context unusable.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

from ..registry import Point
from ..target import Target
from .outcomes import SeriesEnd

EXIT_CUDA_ERROR = 3  # worker exit status: a CUDA error left its context unusable, go on in a fresh worker
STOP_LINE = b"stop\n"


@dataclass
class Job:
    """One worker's work: the points of one benchmark, and how to run them."""

    parent_pid: int  # the worker exits if its parent is not this process (the runner died first)
    target: Target  # the runner's target, exactly (it may narrow e.g. the cache size)
    benchmark: str
    module: str  # the module defining the benchmark's BENCHMARK
    points: list[Point]
    out_file: str  # measurements.jsonl, an absolute path
    quick: bool
    min_time_s: float | None
    seed: int
    options: dict[str, Any]
    soft_deadline: float | None  # time.monotonic(): a point that would end after it is not started
    estimate_s: float | None  # median wall time of the points measured so far
    oom_points: list[Point]  # points that ran out of memory in earlier workers

    def to_json(self) -> bytes:
        """The job as one line for the worker's stdin."""
        return (json.dumps(dataclasses.asdict(self), allow_nan=False) + "\n").encode()

    @classmethod
    def from_json(cls, line: bytes | str) -> Job:
        data = json.loads(line)
        fields = dict(data["target"])
        cap = fields.get("capability")
        fields["capability"] = tuple(cap) if cap else None
        return cls(**{**data, "target": Target(**fields)})


class ReadyEvent(TypedDict):
    ev: Literal["ready"]
    pid: int


class StartEvent(TypedDict):
    ev: Literal["start"]
    key: str


class DoneEvent(TypedDict):
    ev: Literal["done"]
    key: str
    status: Literal["ok", "failed"]
    elapsed_s: float
    oom: bool


class SkipEvent(TypedDict):
    ev: Literal["skip"]
    key: str
    status: Literal["skipped"]


class StopEvent(TypedDict):
    ev: Literal["stop"]
    reason: SeriesEnd


Event = ReadyEvent | StartEvent | DoneEvent | SkipEvent | StopEvent
_TEXT_FIELD = {"ready": None, "start": "key", "done": "key", "skip": "key", "stop": "reason"}


def encode_event(ev: Event) -> bytes:
    return (json.dumps(ev) + "\n").encode()


def decode_event(line: bytes) -> Event | None:
    """The event on one line, or None for a line that is not one (it is ignored)."""
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    if not isinstance(ev, dict) or ev.get("ev") not in _TEXT_FIELD:
        return None
    field = _TEXT_FIELD[ev["ev"]]
    if field is not None and not isinstance(ev.get(field), str):
        return None
    return cast(Event, ev)
