"""The one reader of every file a user hands rooflab (profiles, models, a run folder's files).

Each input is opened once, without blocking (a FIFO or a device never hangs it), and refused unless what was
opened is a regular file; ``follow=False`` also refuses a symbolic link (inside a run folder rooflab follows
none). It reads at most a stated limit: ``read_bytes`` / ``read_json`` a whole small document (NaN and
Infinity refused), ``lines`` a log line by line, never holding a line longer than its limit. Every problem is
one line naming what was read, raised as the caller's error class.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 16


class InputError(ValueError):
    """An input that cannot be read (the default error class); one line."""


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def open_regular(path: str | Path, what: str, error: type[Exception] = InputError, follow: bool = True) -> int:
    """A read-only descriptor of ``path``, which must be a regular file (and no symbolic link unless
    ``follow``); otherwise ``error`` with one line. The caller closes it."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:
            raise error(f"{what} {path} is a symbolic link: rooflab does not follow links in a run folder") from None
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    except ValueError as e:  # a NUL byte in the path
        raise error(f"cannot read {what} {path!r}: {e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{what} {path} is not a regular file ({_kind(mode)})")
    return fd


def read_bytes(path: str | Path, limit: int, what: str, error: type[Exception] = InputError,
               follow: bool = True) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (a larger file raises ``error``)."""
    fd = open_regular(path, what, error, follow)
    try:
        if os.fstat(fd).st_size > limit:
            raise error(f"{what} {path} is over the {limit}-byte limit")
        parts, n = [], 0
        while n <= limit:  # the size can grow while it is read: never more than limit + 1 bytes
            chunk = os.read(fd, min(CHUNK, limit + 1 - n))
            if not chunk:
                break
            parts.append(chunk)
            n += len(chunk)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if n > limit:
        raise error(f"{what} {path} is over the {limit}-byte limit")
    return b"".join(parts)


def read_json(path: str | Path, limit: int, what: str, error: type[Exception] = InputError,
              follow: bool = True) -> Any:
    """The parsed JSON of ``path`` (at most ``limit`` bytes; NaN and Infinity refused). Any problem raises
    ``error`` with one line naming ``what`` ("profile", "model") and the file."""
    raw = read_bytes(path, limit, what, error, follow)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise error(f"{what} {path} is not valid JSON: {(str(e).splitlines() or [''])[0]}") from None


@dataclass(frozen=True)
class Line:
    """One line of a log: its number (from 1), where it starts, its length (newline included), its bytes
    (newline excluded; None when it is longer than the line limit) and whether a newline ended it."""

    number: int
    offset: int
    size: int
    data: bytes | None
    complete: bool


class Lines:
    """The lines of a regular file, streamed: at most ``line_limit`` bytes of one line are ever held, and a
    file over ``total_limit`` bytes raises ``error``. A context manager; iterate it once."""

    def __init__(self, path: str | Path, *, line_limit: int, total_limit: int, what: str,
                 error: type[Exception] = InputError, follow: bool = True):
        self.path, self.line_limit, self.total_limit = path, line_limit, total_limit
        self.what, self.error = what, error
        self.fd = open_regular(path, what, error, follow)
        if os.fstat(self.fd).st_size > total_limit:
            os.close(self.fd)
            raise error(f"{what} {path} is over the {total_limit}-byte limit")

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __iter__(self) -> Iterator[Line]:
        buf = bytearray()
        too_long = False
        number, start, pos = 1, 0, 0
        while True:
            try:
                chunk = os.read(self.fd, CHUNK)
            except OSError as e:
                raise self.error(f"cannot read {self.what} {self.path}: {e.strerror or e}") from None
            if not chunk:
                break
            if pos + len(chunk) > self.total_limit:
                raise self.error(f"{self.what} {self.path} is over the {self.total_limit}-byte limit")
            i = 0
            while i < len(chunk):
                nl = chunk.find(b"\n", i)
                end = len(chunk) if nl < 0 else nl
                if not too_long:
                    buf += chunk[i:end]
                    if len(buf) > self.line_limit:
                        too_long = True
                        buf.clear()
                if nl < 0:
                    break
                line_end = pos + nl + 1
                yield Line(number, start, line_end - start, None if too_long else bytes(buf), True)
                number, start, too_long = number + 1, line_end, False
                buf.clear()
                i = nl + 1
            pos += len(chunk)
        if pos > start:
            yield Line(number, start, pos - start, None if too_long else bytes(buf), False)

    def copy(self, line: Line, out: BinaryIO) -> None:
        """Write the bytes of ``line`` (as read, its newline included) to ``out``, a chunk at a time."""
        at, left = line.offset, line.size
        while left > 0:
            chunk = os.pread(self.fd, min(CHUNK, left), at)
            if not chunk:
                raise self.error(f"{self.what} {self.path} shrank while it was read")
            out.write(chunk)
            at += len(chunk)
            left -= len(chunk)
