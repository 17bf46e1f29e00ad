"""The run folder: the files a run writes into it, its default name, and the rules that keep it the user's data.

* ``check_out_dir``: ``/``, the home folder and the folders above it are never an output folder.
* ``Outputs``: rooflab writes only the names a run writes (``run_file``), never through a symbolic link, and
  records each in the folder's manifest before it exists; it overwrites or deletes only regular files the
  manifest lists, so ``--force`` removes exactly what an earlier run wrote and nothing else.
* ``RunLock``: one run at a time in a folder (an advisory lock naming its owner's pid and host; a lock left
  by a dead process is taken over with a message).
* ``prepare_out_dir``: what ``--resume`` (continue a run) and ``--force`` (start over) ask of the folder.
"""
from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import socket
import stat
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ..jsonio import read_json
from ..profile import atomic_write_text
from ..target import Target
from .outcomes import RunError

MEASUREMENTS = "measurements.jsonl"
UNREADABLE = "measurements.unreadable.jsonl"  # lines of the log that hold no record, moved aside whole
PROFILE = "profile.json"
REPORT = "report.md"
REPORT_HTML = "report.html"
SETTINGS = "run.json"
VALIDATION = "validation.json"  # `rooflab validate`'s result
PLOT_DIR = "plots"
LOG_DIR = "logs"  # one log per benchmark: its workers' stdout and stderr
MANIFEST = ".rooflab-manifest.json"  # the files rooflab wrote in this folder
LOCK = ".rooflab.lock"  # held while a run uses the folder
# Every name a run (or `rooflab report`, `rooflab validate`) writes in an output folder; nothing else is ever
# written or deleted.
RUN_FILES = (SETTINGS, MEASUREMENTS, UNREADABLE, PROFILE, REPORT, REPORT_HTML, VALIDATION)
RUN_GLOBS = ((PLOT_DIR, "*.png"), (LOG_DIR, "*.log"))
MAX_MANIFEST_BYTES = 1 << 20
MAX_LOCK_BYTES = 4096

Log = Callable[[str], None]


def default_out_dir(target: Target, root: str | Path = "reports") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / f"{target.slug}-{stamp}"


def check_out_dir(out: str | Path) -> Path:
    """The output folder ``out`` resolved (links followed); RunError when it is ``/``, the home folder or a
    folder above it, or not a usable path. Writes nothing."""
    try:
        real = Path(os.path.realpath(os.path.abspath(out)))
        home = Path(os.path.realpath(Path.home()))
    except (OSError, ValueError, RuntimeError) as e:
        raise RunError(f"bad output path {str(out)!r}: {e}") from None
    if real == Path(real.anchor) or real == home or real in home.parents:
        raise RunError(f"{real} is never an output folder (it is / or the home folder, or above it): "
                       "give a folder of its own, e.g. --out reports/run1")
    return real


def is_run_file(rel: str) -> bool:
    """Whether ``rel`` (a path relative to the output folder, '/'-separated) is a name a run writes."""
    if rel in RUN_FILES:
        return True
    sub, sep, name = rel.partition("/")
    return (bool(sep) and "/" not in name and not name.startswith(".") and name.isprintable()
            and any(sub == d and fnmatch.fnmatchcase(name, g) for d, g in RUN_GLOBS))


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _real_dir(path: Path, create: bool) -> bool:
    """Whether ``path`` is a directory (never a link to one); with ``create``, made when absent."""
    st = _lstat(path)
    if st is None and create:
        try:
            path.mkdir()
        except FileExistsError:
            pass
        except OSError as e:
            raise RunError(f"cannot create {path}: {e.strerror or e}") from None
        st = _lstat(path)
    if st is None:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise RunError(f"{path} is a symbolic link: rooflab never writes or deletes through one")
    if not stat.S_ISDIR(st.st_mode):
        raise RunError(f"{path} is not a folder")
    return True


class Outputs:
    """The files rooflab wrote in one output folder, as its manifest lists them; the one way to get a path to
    write there (``run_file``) or to delete one (``remove``, ``remove_all``). Errors are RunError, one line."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.files: set[str] = set()
        self.listed = False  # no manifest: a folder rooflab has not written (or an older rooflab's run)
        self._load()

    def _load(self) -> None:
        """Read the manifest again (another Outputs of the same folder may have added to it)."""
        mpath = self.out / MANIFEST
        self.listed = os.path.lexists(mpath)
        if self.listed:
            data = read_json(mpath, MAX_MANIFEST_BYTES, "manifest", RunError, follow=False)
            files = data.get("files") if isinstance(data, dict) else None
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise RunError(f"{mpath} is not a rooflab manifest")
            self.files = {f for f in files if is_run_file(f)}

    def _save(self) -> None:
        text = json.dumps({"version": 1, "files": sorted(self.files)}, indent=1) + "\n"
        try:
            atomic_write_text(self.out / MANIFEST, text)
        except OSError as e:
            raise RunError(f"cannot write in output folder {self.out}: {e.strerror or e}") from None

    def _file(self, rel: str, create_dirs: bool) -> tuple[Path, os.stat_result | None]:
        """The path of ``rel`` and its lstat (None when absent), its folders checked to be real ones."""
        if not is_run_file(rel):
            raise RunError(f"{rel!r} is not a file a rooflab run writes")
        *dirs, name = rel.split("/")
        d = self.out
        for part in dirs:
            d = d / part
            if not _real_dir(d, create_dirs):
                return d / name, None
        p = d / name
        st = _lstat(p)
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise RunError(f"{p} is a symbolic link: rooflab never writes or deletes through one")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise RunError(f"{p} is not a regular file")
        return p, st

    def run_file(self, rel: str) -> Path:
        """The path to write ``rel`` to: listed in the manifest before it exists; refused when it exists and
        rooflab did not write it, or when it or a folder on the way is a symbolic link."""
        self._load()
        p, st = self._file(rel, create_dirs=True)
        if st is not None and rel not in self.files:
            raise RunError(f"{p} exists and rooflab did not write it (it is not in {self.out / MANIFEST}): "
                           "move it away, or choose another output folder")
        if rel not in self.files:
            self.files.add(rel)
            self._save()
        return p

    def remove(self, rel: str) -> None:
        """Delete ``rel`` if rooflab wrote it and it is a regular file (anything else stays)."""
        self._load()
        if rel not in self.files:
            return
        p, st = self._file(rel, create_dirs=False)
        if st is not None:
            p.unlink()
        self.files.discard(rel)
        self._save()

    def remove_all(self) -> None:
        """What --force deletes: every file the manifest lists, nothing else."""
        for rel in sorted(self.files):
            self.remove(rel)

    def existing(self) -> list[str]:
        """The names a run writes that are there as regular files (links and other kinds are left out)."""
        names = list(RUN_FILES)
        for sub, glob in RUN_GLOBS:
            if _real_dir(self.out / sub, create=False):
                names += [f"{sub}/{p.name}" for p in (self.out / sub).iterdir() if fnmatch.fnmatchcase(p.name, glob)]
        out = []
        for rel in names:
            if is_run_file(rel):
                st = _lstat(self.out / rel)
                if st is not None and stat.S_ISREG(st.st_mode):
                    out.append(rel)
        return out

    def adopt(self) -> list[str]:
        """List in a new manifest the run files of a run folder that has none (a run of an earlier rooflab,
        which a resume continues); returns them."""
        self._load()
        if self.listed:
            return []
        found = self.existing()
        self.files.update(found)
        self._save()
        self.listed = True
        return found

    def check_unclaimed(self, legacy_run: bool = False) -> None:
        """RunError when a file a run would write is there but not rooflab's (a run would overwrite or mix
        with it), or a folder a run writes into is a symbolic link. ``legacy_run``: a folder being resumed
        without a manifest passes (its files are adopted)."""
        for sub, _ in RUN_GLOBS:
            _real_dir(self.out / sub, create=False)
        if legacy_run and not self.listed:  # a resume adopts them (``adopt``)
            return
        for rel in RUN_FILES:
            p, st = self._file(rel, create_dirs=False)
            if st is not None and rel not in self.files:
                raise RunError(f"{p} exists and rooflab did not write it (it is not in {self.out / MANIFEST}): "
                               "move it away, or choose another output folder")


def run_file(out: str | Path, rel: str) -> Path:
    """``Outputs(out).run_file(rel)``: a checked path to write ``rel`` to in the output folder ``out``."""
    return Outputs(out).run_file(rel)


def log_path(out: Path, benchmark: str) -> Path:
    return run_file(out, f"{LOG_DIR}/{benchmark}.log")


def _owner(text: bytes) -> str:
    """'pid N on HOST since T' from a lock file's text (whatever it holds, on one line)."""
    try:
        d = json.loads(text.decode("utf-8"))
        who = f"pid {int(d['pid'])} on {d['host']!s}" + (f" since {d['started']!s}" if d.get("started") else "")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return "an unknown owner"
    return "".join(c if c.isprintable() else "?" for c in who)[:200]


class RunLock:
    """An advisory lock (flock) on ``out/.rooflab.lock``, naming its owner's pid and host; a context manager.
    It is released when its process ends however it ends, so a lock file nobody holds is stale and is taken
    over (``log`` says whose it was)."""

    def __init__(self, out: str | Path, log: Log | None = None):
        self.path = Path(out) / LOCK
        self.log = log or (lambda msg: None)
        self.fd = -1

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(100):  # the file can be unlinked by its owner between our open and our flock: retry
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                             | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as e:
                raise RunError(f"cannot use output folder {self.path.parent}: {e.strerror or e}") from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise RunError(f"{self.path} is not a regular file")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    held = os.pread(fd, MAX_LOCK_BYTES, 0)
                    raise RunError(f"{self.path.parent} is in use by rooflab ({_owner(held)}): wait for that run "
                                   "to end or stop it; one run at a time writes a run folder") from None
                now = _lstat(self.path)
                if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    os.close(fd)
                    continue
                prior = os.pread(fd, MAX_LOCK_BYTES, 0)
                if prior.strip():
                    self.log(f"took over the stale lock of {self.path.parent} ({_owner(prior)}, no longer running)")
                me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
                os.ftruncate(fd, 0)
                os.pwrite(fd, me.encode() + b"\n", 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            return
        raise RunError(f"cannot lock {self.path.parent}: its lock file keeps changing")

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            st, now = os.fstat(self.fd), _lstat(self.path)
            if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                self.path.unlink()  # while still locked: whoever opens it next gets a fresh file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def prepare_out_dir(out: Path, *, resume: bool = False, force: bool = False) -> None:
    """Refuse to overwrite: a non-empty directory needs ``resume`` (continue it) or ``force`` (start over,
    deleting only the files an earlier run wrote). A run holds ``RunLock`` around this and what follows."""
    out = Path(out)
    check_out_dir(out)
    try:
        if out.exists() and not out.is_dir():
            raise RunError(f"output path {out} exists and is not a directory")
        if resume:
            if not out.is_dir():
                raise RunError(f"nothing to resume: {out} does not exist")
            if not (os.path.lexists(out / MEASUREMENTS) or os.path.lexists(out / SETTINGS)):
                raise RunError(f"nothing to resume in {out}: it has no {MEASUREMENTS} (not a rooflab run directory)")
        elif out.exists() and any(p.name != LOCK for p in out.iterdir()):
            if not force:
                raise RunError(f"output directory {out} is not empty: use --resume {out} to continue it "
                               f"or --force to overwrite")
            files = Outputs(out)
            files.check_unclaimed()
            files.remove_all()
        out.mkdir(parents=True, exist_ok=True)
        Outputs(out).check_unclaimed(legacy_run=resume)
    except OSError as e:
        raise RunError(f"cannot use output directory {out}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise RunError(f"bad output path {str(out)!r}: {e}") from None
