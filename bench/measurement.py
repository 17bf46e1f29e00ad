"""One typed record per measured (benchmark, kernel, parameters) point, and the JSONL log of them.

``measurements.jsonl`` is appended one line per point as soon as the point finishes and is fsync'ed, so a
run killed at any moment keeps everything it finished. It is read line by line through bench/jsonio.py,
bounded (``MAX_RECORD_BYTES`` a line, ``MAX_LOG_BYTES`` in all); ``scan`` says which lines hold a record and
which cannot be read (a torn last line from a kill, or anything else), and ``read`` keeps the records only.
Neither ever follows a symbolic link: the log is a run folder's own file.
"""
from __future__ import annotations

import errno
import json
import math
import os
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .jsonio import Line, Lines

if TYPE_CHECKING:
    from .timing import Timing

Status = Literal["ok", "failed", "skipped"]
NotMeasuredStatus = Literal["failed", "skipped"]  # the status of a record without a number
# cuda: timed on the GPU. cpu: a PyTorch kernel timed on the CPU (a real CPU number).
# interpreter: a Triton kernel run by TRITON_INTERPRET=1, checked for correctness only, never timed.
Mode = Literal["cuda", "cpu", "interpreter"]

ParamValue = int | float | str | bool | None

# The record modes a run on each backend produces (Target.backend -> Mode): a resume refuses any other.
BACKEND_MODES: dict[str, tuple[str, ...]] = {"cuda": ("cuda",), "cpu": ("cpu", "interpreter")}
MAX_RECORD_BYTES = 1 << 20  # one record with its telemetry is a few kB: a longer line is not one
MAX_LOG_BYTES = 256 << 20  # about 100 000 records, far more than a full run writes


class LogError(ValueError):
    """A measurements.jsonl that cannot be read (not a regular file, over its limit); one line."""


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def point_key(benchmark: str, params: dict[str, Any]) -> str:
    """Stable identity of a sweep point, used to resume a run (same params → same key)."""
    return benchmark + ":" + json.dumps(params, sort_keys=True, separators=(",", ":"))


class Check(BaseModel):
    """Result of comparing the kernel's output with a reference before anything is timed."""

    model_config = ConfigDict(extra="forbid")
    passed: bool
    rel_err: float | None = None  # ‖out − ref‖ / ‖ref‖
    tol: float | None = None
    reference: str = ""  # what the output was compared with
    detail: str = ""


class TimingRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    median_s: float
    min_s: float
    max_s: float
    mean_s: float
    p10_s: float
    p90_s: float
    n: int
    total_s: float
    clock: str
    spread: float
    noisy: bool

    @classmethod
    def of(cls, t: Timing) -> TimingRecord:
        return cls(**t.as_dict())


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    benchmark: str
    kernel: str  # e.g. "copy", "matmul", "decode"
    impl: str  # e.g. "triton", "torch"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    key: str = ""  # point_key(benchmark, point params): all records of one sweep point share it
    status: Status = "ok"
    reason: str | None = None  # why failed / skipped
    mode: Mode
    device: str = ""
    timing: TimingRecord | None = None
    bytes: int | None = None  # bytes the operation must move, by the benchmark's stated formula
    flop_count: int | None = None  # floating-point operations, by the benchmark's stated formula
    bandwidth_Bps: float | None = None  # bytes / median time
    flops: float | None = None  # FLOP/s: flop_count / median time
    check: Check | None = None
    cache: str | None = None  # how caches were kept out: "working set 8x L2", "flush L2", "rotate 4 sets"
    telemetry: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    created: str = Field(default_factory=utc_now)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def timed(self) -> bool:
        """A hardware number: measured on CUDA or timed on the CPU, never the interpreter."""
        return self.status == "ok" and self.timing is not None and self.mode != "interpreter"

    def int_param(self, name: str) -> int:
        """The point parameter ``name`` as the int it must be; a clear error if it is missing or not an int."""
        if name not in self.params:
            raise KeyError(f"{self.benchmark} record has no parameter {name!r}")
        value = self.params[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{self.benchmark} record: parameter {name!r} is {value!r}, not an int")
        return value


def timed_records(measurements: Iterable[Measurement]) -> Iterator[tuple[Measurement, TimingRecord]]:
    """The records with a hardware number (:attr:`Measurement.timed`), each with its timing."""
    for m in measurements:
        if m.timed and m.timing is not None:
            yield m, m.timing


def measured(
    *,
    benchmark: str,
    kernel: str,
    impl: str,
    params: dict[str, ParamValue],
    mode: Mode,
    device: str,
    timing: Timing | None,
    bytes: int | None = None,
    flop_count: int | None = None,
    check: Check | None = None,
    cache: str | None = None,
    key: str = "",
    **extra: Any,
) -> Measurement:
    """Build a Measurement, deriving bandwidth and FLOP/s from the stated counts and the median time."""
    if mode == "interpreter" and timing is not None:
        raise ValueError("interpreter runs are for correctness only: they carry no timing")
    bw = fl = None
    if timing is not None and timing.median_s > 0:
        bw = bytes / timing.median_s if bytes is not None else None
        fl = flop_count / timing.median_s if flop_count is not None else None
    reason = None
    if check is not None and not check.passed:
        reason = f"correctness check failed: {check.detail or check.rel_err}"
    status: Status = "ok" if reason is None else "failed"
    return Measurement(
        benchmark=benchmark,
        kernel=kernel,
        impl=impl,
        params=params,
        key=key,
        status=status,
        reason=reason,
        mode=mode,
        device=device,
        timing=TimingRecord.of(timing) if timing is not None and status == "ok" else None,
        bytes=bytes,
        flop_count=flop_count,
        bandwidth_Bps=bw if status == "ok" else None,
        flops=fl if status == "ok" else None,
        check=check,
        cache=cache,
        extra=extra,
    )


def not_measured(
    *,
    benchmark: str,
    params: dict[str, ParamValue],
    mode: Mode,
    device: str,
    reason: str,
    status: NotMeasuredStatus = "skipped",
    kernel: str = "*",
    impl: str = "*",
    key: str = "",
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """A record of a point (or one kernel of it) that has no number: ``skipped`` (it could not run here: no
    GPU, one rank, a budget) or ``failed`` (it ran and broke), with the reason. ``kernel`` / ``impl`` "*"
    stand for the whole point."""
    return Measurement(benchmark=benchmark, kernel=kernel, impl=impl, params=params, key=key, status=status,
                       reason=reason, mode=mode, device=device, extra=dict(extra or {}))


def _finite(x: Any) -> Any:
    """JSON has no NaN/inf: store them as null rather than writing invalid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def append(path: str | Path, records: Iterable[Measurement]) -> None:
    """Append records as JSON lines and fsync, so a killed run keeps every finished point. The log must be a
    regular file, never a symbolic link (OSError otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(_finite(r.model_dump(mode="json")), allow_nan=False) + "\n" for r in records)
    if not lines:
        return
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = lines.encode("utf-8")
        # a torn last line from an earlier kill would glue onto ours: start on a fresh line
        if st.st_size > 0 and os.pread(fd, 1, st.st_size - 1) != b"\n":
            data = b"\n" + data
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def parse(line: Line) -> Measurement | None:
    """The record on one line of a log, or None when the line holds none."""
    if line.data is None:
        return None
    try:
        return Measurement.model_validate_json(line.data)
    except ValueError:
        return None


def scan(path: str | Path, follow: bool = False) -> Iterator[tuple[Line, Measurement | None]]:
    """Each non-blank line of a measurements.jsonl with its record (None for a line that holds none), streamed;
    nothing when the file does not exist. LogError when it cannot be read."""
    path = Path(path)
    try:
        reader = Lines(path, line_limit=MAX_RECORD_BYTES, total_limit=MAX_LOG_BYTES, what="measurements",
                       error=LogError, follow=follow)
    except LogError:
        if not os.path.lexists(path):
            return
        raise
    with reader:
        for line in reader:
            if line.data is not None and not line.data.strip():
                continue
            yield line, parse(line)


def read(path: str | Path, follow: bool = False) -> list[Measurement]:
    """The records of a measurements.jsonl, skipping lines that hold none (a kill mid-write leaves a torn one)."""
    return [m for _, m in scan(path, follow) if m is not None]
