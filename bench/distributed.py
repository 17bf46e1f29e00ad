"""Run a function on every rank of a ``torch.distributed`` process group and get rank 0's answer back.

:func:`launch` either spawns the ranks here (one machine: ``bench.distributed`` workers via bench/spawn.py, one per
GPU with NCCL or gloo processes on loopback in CPU mode; the rendezvous store on 127.0.0.1, port 0) and
watches them, so the first rank to die or the deadline kills every rank and raises
:class:`DistributedError` with a one-line reason instead of hanging; or, under torchrun (several GPUs or
nodes), joins the group torchrun set up and runs in place as that rank, rank 0's result broadcast to all.

``fn(info, *args)`` must be picklable (a module-level function) and gets a :class:`RankInfo`. Every rank
must issue the same collectives in the same order, or they deadlock until the process-group timeout.
The all-to-all and all-reduce benchmarks use it. A launch's scratch folder (its pickles) goes on every way
out; one a SIGKILL left behind is swept by the next launch (``sweep_stale``).
"""
from __future__ import annotations

import atexit
import os
import pickle
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from . import spawn
from .target import Target

LOOPBACK = "127.0.0.1"
DEFAULT_TIMEOUT_S = 300.0  # whole launch (all ranks start, run, exit); callers size it to their work
INIT_TIMEOUT_S = 60.0  # rendezvous and each collective: a peer that never comes fails within this
POLL_S = 0.02
MAX_RANKS = 1024  # --ranks bound: more local processes than this is a typo, not a benchmark
# gloo ranks in CPU mode share the cores: beyond 2 per core a collective's time is the scheduler's, and
# every rank is a Python process with torch loaded
CPU_RANKS_PER_CORE = 2
CPU_RANKS_FLOOR = 4  # the CPU sweep's largest world size (the full a2a / allreduce sweeps)
TMP_PREFIX = "rooflab-dist-"  # + the launching process's pid + "-": a launch's scratch folder
_RESULT = "result.pkl"
_PAYLOAD = "payload.pkl"


class DistributedError(RuntimeError):
    """A launch that did not finish: a rank died, raised, or the deadline passed. One-line message."""


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int
    local_rank: int
    backend: str  # "nccl" or "gloo"
    device: str  # "cuda:<local_rank>" or "cpu"
    launcher: str  # "spawn" (started by rooflab) or "torchrun"
    target: Target  # this process's target (CUDA: the GPU of local_rank)

    @property
    def is_cuda(self) -> bool:
        return self.target.is_cuda


@dataclass(frozen=True)
class TorchrunEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def torchrun_env(environ: dict[str, str] | None = None) -> TorchrunEnv | None:
    """The rank this process is, when a launcher (torchrun, or srun running torchrun) started it."""
    env = os.environ if environ is None else environ
    if env.get("ROOFLAB_DIST_WORKER"):  # our own spawned workers carry the same variables
        return None
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    except (KeyError, ValueError):
        return None
    lw = env.get("LOCAL_WORLD_SIZE", "")
    local_world = int(lw) if lw.isdigit() else world
    if not (0 <= rank < world and 0 <= local < max(1, local_world)):
        return None
    return TorchrunEnv(rank, world, local, local_world)


def backend_for(target: Target) -> str:
    return "nccl" if target.is_cuda else "gloo"


def free_port(host: str = LOOPBACK) -> int:
    """A port free on ``host`` right now (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_cpu_ranks() -> int:
    """The most gloo ranks spawned on this machine: ``CPU_RANKS_PER_CORE`` per core, and never fewer than
    the CPU sweep's largest world size (``CPU_RANKS_FLOOR``)."""
    return max(CPU_RANKS_FLOOR, CPU_RANKS_PER_CORE * usable_cores())


def check_ranks(target: Target | None, ranks: int | None, name: str = "--ranks") -> str | None:
    """Why ``ranks`` local processes cannot run on ``target`` (a one-line message naming the setting
    ``name``), or None when they can; without ``target`` only the range is checked."""
    if ranks is None:
        return None
    if ranks < 1 or ranks > MAX_RANKS:
        return f"{name} must be in [1, {MAX_RANKS}], got {ranks}"
    if target is None or torchrun_env() is not None:  # under torchrun the launch decides
        return None
    if target.is_cuda:
        import torch

        gpus = torch.cuda.device_count()
        if ranks > gpus:
            return (f"{name} {ranks} needs {ranks} GPUs, this machine has {gpus}: NCCL runs one rank per GPU "
                    "(use torchrun for several nodes)")
    elif ranks > max_cpu_ranks():
        return (f"{name} {ranks} is more gloo ranks than this machine's {usable_cores()} cores can run "
                f"(at most {max_cpu_ranks()}: {CPU_RANKS_PER_CORE} per core)")
    return None


def pin_local_device(tr: TorchrunEnv | None = None) -> None:
    """Under torchrun on GPUs: make LOCAL_RANK's GPU the current device before the target is chosen, so
    each process measures its own GPU (call before ``bench.target.configure``)."""
    tr = tr or torchrun_env()
    if tr is None:
        return
    import torch

    if torch.cuda.device_count() > tr.local_rank:
        torch.cuda.set_device(tr.local_rank)


# ---- torchrun: run in place ----------------------------------------------------------------------------

_GROUP: dict[str, Any] = {}  # this process's torchrun group: {"info": RankInfo} once joined
_BROKEN: list[str] = []  # why the torchrun group can no longer be trusted (a collective failed)


def _join_torchrun(target: Target, tr: TorchrunEnv, timeout_s: float) -> RankInfo:
    import torch
    import torch.distributed as dist

    if "info" in _GROUP:
        return _GROUP["info"]
    backend = backend_for(target)
    kw: dict[str, Any] = {}
    device = "cpu"
    if target.is_cuda:
        torch.cuda.set_device(tr.local_rank)
        device = f"cuda:{tr.local_rank}"
        kw["device_id"] = torch.device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, store=_torchrun_store(tr, timeout_s), rank=tr.rank,
                                world_size=tr.world_size, timeout=timedelta(seconds=timeout_s), **kw)
    info = RankInfo(tr.rank, tr.world_size, tr.local_rank, backend, device, "torchrun", target)
    _GROUP["info"] = info
    if not _GROUP.get("atexit"):
        # Tear the group down before the interpreter does: gloo's threads destroyed at exit abort the process
        # ("terminate called without an active exception", SIGABRT), which torchrun reports as a failure.
        atexit.register(_leave_torchrun)
        _GROUP["atexit"] = True
    return info


def _leave_torchrun() -> None:
    import torch.distributed as dist

    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # at exit: nothing left to report to
        pass


def _torchrun_store(tr: TorchrunEnv, timeout_s: float):
    """torchrun's rendezvous store, under a prefix of its own for this process group.

    rooflab runs each benchmark in a process of its own, so one torchrun launch creates several process
    groups, one after another, on the same store; without a fresh namespace a later group could read an
    earlier one's keys (e.g. its NCCL unique id) and hang. Every rank adds 1 to a shared counter when it
    joins, so the k-th group's ranks all compute generation k without talking to each other.
    """
    import torch.distributed as dist

    env = os.environ
    try:
        addr, port = env["MASTER_ADDR"], int(env["MASTER_PORT"])
    except (KeyError, ValueError):
        raise DistributedError("RANK/WORLD_SIZE/LOCAL_RANK are set but MASTER_ADDR/MASTER_PORT are not: "
                               "start rooflab with torchrun") from None
    # torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE=True); otherwise rank 0 does, as env://
    agent = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    base = dist.TCPStore(addr, port, tr.world_size, is_master=(not agent and tr.rank == 0),
                         timeout=timedelta(seconds=timeout_s), wait_for_workers=False)
    generation = (base.add("rooflab/joins", 1) - 1) // tr.world_size
    return dist.PrefixStore(f"rooflab/gen{generation}/", base)


def _run_in_place(fn: Callable, args: tuple, target: Target, tr: TorchrunEnv, world_size: int | None,
                  timeout_s: float) -> Any:
    import torch.distributed as dist

    if world_size not in (None, tr.world_size):
        raise DistributedError(f"started by torchrun with WORLD_SIZE={tr.world_size}, but {world_size} ranks "
                               "were asked for: drop --ranks under torchrun")
    if _BROKEN:
        raise DistributedError(f"an earlier collective failed ({_BROKEN[0]}); the process group is unusable")
    info = _join_torchrun(target, tr, timeout_s)
    try:
        value = fn(info, *args)
        box = [value if info.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)  # every rank returns rank 0's answer
        return box[0]
    except Exception as e:
        _BROKEN.append(f"rank {info.rank}: {type(e).__name__}: {_first_line(str(e))}")
        raise DistributedError(f"rank {info.rank} of {info.world_size}: {type(e).__name__}: "
                               f"{_first_line(str(e))}") from None


# ---- spawned here: the parent side ---------------------------------------------------------------------

def launch(fn: Callable[..., Any], world_size: int | None, *, target: Target, args: tuple = (),
           timeout_s: float = DEFAULT_TIMEOUT_S, init_timeout_s: float = INIT_TIMEOUT_S,
           env: dict[str, str] | None = None) -> Any:
    """Run ``fn(info, *args)`` on ``world_size`` ranks and return rank 0's return value.

    Under torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment), joins the group torchrun set
    up (``env://``, once per process) and runs in place as this process's rank (``world_size`` None or equal
    to WORLD_SIZE); rank 0's result is broadcast so every rank returns the same value, and only rank 0 writes
    files (the CLI sends the other ranks' output to a temporary directory). Otherwise spawns the ranks here
    and waits at most ``timeout_s`` for all of them; the parent holds the rendezvous store on 127.0.0.1,
    bound to port 0 (the kernel picks a free port, so nothing can race us to it), and any rank failing or
    the deadline passing kills them all and raises :class:`DistributedError`. ``init_timeout_s`` bounds
    the rendezvous and each collective inside the ranks (the process-group timeout).
    """
    tr = torchrun_env()
    if tr is not None:
        return _run_in_place(fn, args, target, tr, world_size, init_timeout_s)
    if world_size is None or world_size < 1:
        raise DistributedError(f"world size must be >= 1, got {world_size}")
    if timeout_s <= 0 or init_timeout_s <= 0:
        raise DistributedError("timeouts must be positive")
    if not target.is_cuda and world_size > max_cpu_ranks():
        raise DistributedError(check_ranks(target, world_size, "world size") or "too many ranks")
    import torch.distributed as dist

    sweep_stale()
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
        d = Path(tmp)
        try:
            (d / _PAYLOAD).write_bytes(pickle.dumps((fn, args)))
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise DistributedError(f"cannot send {getattr(fn, '__name__', fn)!r} to the ranks: it must be a "
                                   f"module-level function with picklable arguments ({e})") from None
        # The rendezvous store lives here, on a port the kernel picked: no port race, and the children
        # fail fast (connection refused) if this process dies.
        store = dist.TCPStore(LOOPBACK, 0, None, True, timedelta(seconds=init_timeout_s),
                              wait_for_workers=False)
        try:
            procs = _spawn(d, world_size, target, store.port, init_timeout_s, env)
            _watch(procs, d, world_size, timeout_s)
        finally:
            del store
        path = d / _RESULT
        if not path.exists():
            raise DistributedError("rank 0 exited without writing its result")
        return pickle.loads(path.read_bytes())


def sweep_stale() -> None:
    """Remove the scratch folders (with their pickles) of launches whose process is gone: a launch killed by
    SIGKILL cannot clean up after itself, so the next one does. Only this user's folders, never a link, and
    never one whose process still runs."""
    base = Path(tempfile.gettempdir())
    for p in base.glob(f"{TMP_PREFIX}*-*"):
        pid = p.name[len(TMP_PREFIX):].split("-", 1)[0]
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not pid.isdigit() or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or _alive(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _child_pythonpath() -> str:
    """The package's folder and the parent's absolute import path, so the ranks can import whatever module
    ``fn`` lives in, and never the current folder."""
    return spawn.import_path([p for p in sys.path if os.path.isabs(p) and os.path.isdir(p)])


def _spawn(d: Path, n: int, target: Target, port: int, init_timeout_s: float,
           extra_env: dict[str, str] | None) -> list[subprocess.Popen]:
    base = dict(os.environ)
    base.update({
        "MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(port), "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n),
        "ROOFLAB_DIST_WORKER": "1", "ROOFLAB_DIST_DIR": str(d), "ROOFLAB_DIST_DEVICE": target.backend,
        "ROOFLAB_DIST_TIMEOUT_S": repr(float(init_timeout_s)), "ROOFLAB_DIST_PARENT": str(os.getpid()),
        "PYTHONPATH": _child_pythonpath(),
    })
    if not target.is_cuda:  # n CPU ranks share the cores: no oversubscribed thread pools
        base["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
        if "GLOO_SOCKET_IFNAME" not in base and os.path.exists("/sys/class/net/lo"):
            base["GLOO_SOCKET_IFNAME"] = "lo"  # every rank is on this machine: talk over loopback
    elif "NCCL_SOCKET_IFNAME" not in base and os.path.exists("/sys/class/net/lo"):
        # NCCL's bootstrap (and its socket fallback) would pick the first non-loopback interface, which in a VM
        # may be one that leads nowhere; spawned ranks share this machine (data moves over NVLink/PCIe/shm)
        base["NCCL_SOCKET_IFNAME"] = "lo"
    base.pop("TORCHELASTIC_RUN_ID", None)
    base.update(extra_env or {})
    procs: list[subprocess.Popen] = []
    try:
        for r in range(n):
            env = dict(base, RANK=str(r), LOCAL_RANK=str(r))
            log = open(d / f"rank{r}.log", "wb")
            try:
                procs.append(subprocess.Popen(spawn.command("bench.distributed"), env=env,
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
            finally:
                log.close()
    except OSError as e:
        _kill(procs)
        raise DistributedError(f"cannot start rank {len(procs)}: {e}") from None
    return procs


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a process stuck in the kernel: nothing more we can do
            pass


def _watch(procs: list[subprocess.Popen], d: Path, n: int, timeout_s: float) -> None:
    start = time.monotonic()
    deadline = start + timeout_s
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                # a rank that died without a word (killed, os._exit) is most likely the cause; peers that
                # raised after it (connection reset) wrote their time: the earliest of those comes next
                first = min(failed, key=lambda r: (_failed_at(d, r), r))
                others = len(failed) - 1
                _kill(procs)
                why = _why(d, first, codes[first])
                more = f" ({others} other rank{'s' if others > 1 else ''} failed after it)" if others else ""
                raise DistributedError(f"rank {first} of {n} failed after {time.monotonic() - start:.1f} s: "
                                       f"{why}{more}")
            if all(c == 0 for c in codes):
                return
            if time.monotonic() > deadline:
                running = [r for r, c in enumerate(codes) if c is None]
                _kill(procs)
                raise DistributedError(f"timed out after {timeout_s:.0f} s: rank{'s' if len(running) > 1 else ''} "
                                       f"{', '.join(map(str, running))} of {n} had not finished (all killed); "
                                       "a rank hung in a collective or the work outgrew the time limit")
            time.sleep(POLL_S)
    except BaseException:
        _kill(procs)
        raise


def _failed_at(d: Path, rank: int) -> float:
    try:
        return float((d / f"error{rank}.txt").read_text().split("\t", 1)[0])
    except (OSError, ValueError):
        return float("-inf")  # died without reporting (signal, hard exit)


def _why(d: Path, rank: int, code: int | None) -> str:
    try:
        return (d / f"error{rank}.txt").read_text().split("\t", 1)[1].strip()
    except (OSError, IndexError):
        pass
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    tail = ""
    try:
        lines = [ln for ln in (d / f"rank{rank}.log").read_text(errors="replace").splitlines() if ln.strip()]
        tail = lines[-1].strip() if lines else ""
    except OSError:
        pass
    return f"exited with code {code}" + (f": {tail[:300]}" if tail else "")


def _first_line(s: str) -> str:
    """The first line of an error, without the C++ source location torch prefixes ('[/path/x.cc:78] ')."""
    s = s.strip()
    line = s.splitlines()[0] if s else ""
    return re.sub(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", line)[:300]


# ---- spawned here: the rank side (bench.distributed as __main__) ------------------------------------------

def _watch_parent(parent: int) -> None:
    """Exit if the parent dies (e.g. SIGKILL): a rank must never outlive the run that started it."""
    def loop() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=loop, name="rooflab-parent-watch", daemon=True).start()


def _worker() -> int:
    d = Path(os.environ["ROOFLAB_DIST_DIR"])
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    _watch_parent(int(os.environ["ROOFLAB_DIST_PARENT"]))
    try:
        import torch

        device_choice = os.environ["ROOFLAB_DIST_DEVICE"]
        if device_choice == "cuda":
            torch.cuda.set_device(local)  # before the target is chosen: it describes the current GPU
        from . import target as _target

        tgt = _target.configure(device_choice)  # sets TRITON_INTERPRET before anything imports kernels/
        fn, args = pickle.loads((d / _PAYLOAD).read_bytes())
        import torch.distributed as dist

        timeout = timedelta(seconds=float(os.environ["ROOFLAB_DIST_TIMEOUT_S"]))
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, False, timeout)
        backend = backend_for(tgt)
        kw: dict[str, Any] = {"device_id": torch.device(f"cuda:{local}")} if tgt.is_cuda else {}
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout, **kw)
        info = RankInfo(rank, world, local, backend, f"cuda:{local}" if tgt.is_cuda else "cpu", "spawn", tgt)
        value = fn(info, *args)
        if rank == 0:
            tmp = d / f".{_RESULT}.tmp"
            tmp.write_bytes(pickle.dumps(value))
            os.replace(tmp, d / _RESULT)
        dist.barrier()  # nobody tears the group down while a peer still needs it
        dist.destroy_process_group()
        return 0
    except BaseException as e:  # report one line for the parent, the traceback to this rank's log
        traceback.print_exc()
        msg = f"{type(e).__name__}: {_first_line(str(e))}" if str(e).strip() else type(e).__name__
        try:
            (d / f"error{rank}.txt").write_text(f"{time.time():.6f}\t{msg}")
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    if not os.environ.get("ROOFLAB_DIST_WORKER"):
        print("bench.distributed is started by rooflab, not by hand", file=sys.stderr)
        sys.exit(2)
    from bench.distributed import _worker as _the_worker  # the module proper, not __main__: its RankInfo

    code = _the_worker()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: a wedged communicator must not hang the exit
