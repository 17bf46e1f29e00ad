"""bench/distributed.py: spawning gloo ranks on loopback, the watchdog, torchrun detection and in-place runs."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import distributed

ROOT = Path(__file__).resolve().parents[1]


# -- rank functions (module level: they are pickled to the ranks) ------------------------------------------

def sum_of_ranks(info, offset):
    import torch
    import torch.distributed as dist

    t = torch.tensor([info.rank + offset])
    dist.all_reduce(t)
    return {"rank": info.rank, "world": info.world_size, "backend": info.backend, "device": info.device,
            "launcher": info.launcher, "sum": int(t.item()), "info_type": type(info).__module__,
            "interpreted": os.environ.get("TRITON_INTERPRET")}


def one_rank_dies(info):
    import torch
    import torch.distributed as dist

    if info.rank == 1:
        os._exit(9)
    dist.all_reduce(torch.ones(1))  # the survivors wait for the dead rank
    return "unreachable"


def one_rank_raises(info):
    import torch
    import torch.distributed as dist

    if info.rank == 1:
        raise ValueError("rank one refuses\nwith a second line")
    dist.all_reduce(torch.ones(1))
    return "unreachable"


def one_rank_hangs(info):
    import torch
    import torch.distributed as dist

    if info.rank == 0:
        time.sleep(600)
    dist.all_reduce(torch.ones(1))
    return "unreachable"


# -- pure parts ---------------------------------------------------------------------------------------------

def test_torchrun_env_detection():
    env = {"RANK": "3", "WORLD_SIZE": "16", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8"}
    tr = distributed.torchrun_env(env)
    assert (tr.rank, tr.world_size, tr.local_rank, tr.local_world_size, tr.nodes) == (3, 16, 3, 8, 2)
    assert distributed.torchrun_env({}) is None
    assert distributed.torchrun_env({"RANK": "0", "WORLD_SIZE": "2"}) is None  # LOCAL_RANK missing: not torchrun
    assert distributed.torchrun_env({**env, "RANK": "16"}) is None  # out of range
    assert distributed.torchrun_env({**env, "ROOFLAB_DIST_WORKER": "1"}) is None  # our own spawned ranks


def test_free_port_is_bindable():
    import socket

    port = distributed.free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind((distributed.LOOPBACK, port))


def test_backend_and_rank_checks(cpu_target):
    assert distributed.backend_for(cpu_target) == "gloo"
    assert distributed.check_ranks(cpu_target, None) is None
    assert distributed.check_ranks(cpu_target, 4) is None  # more gloo ranks than cores is fine
    assert "--ranks" in distributed.check_ranks(cpu_target, 0)
    assert "--ranks" in distributed.check_ranks(cpu_target, distributed.MAX_RANKS + 1)


def test_launch_refuses_what_cannot_run(cpu_target):
    with pytest.raises(distributed.DistributedError, match="world size"):
        distributed.launch(sum_of_ranks, 0, target=cpu_target, args=(0,))
    with pytest.raises(distributed.DistributedError, match="module-level"):
        distributed.launch(lambda info: 1, 2, target=cpu_target)


def test_spawned_ranks_talk_over_loopback(cpu_target, tmp_path, monkeypatch):
    """Spawned ranks share this machine: gloo (CPU) and NCCL's bootstrap (GPU) use lo, unless the user chose."""
    import dataclasses

    seen = []

    class _Proc:
        def __init__(self, args, env, **kw):
            seen.append(env)

    monkeypatch.setattr(distributed.subprocess, "Popen", _Proc)
    monkeypatch.delenv("NCCL_SOCKET_IFNAME", raising=False)
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    gpu = dataclasses.replace(cpu_target, backend="cuda", torch_device="cuda:0")
    distributed._spawn(tmp_path, 2, gpu, 1234, 5.0, None)
    distributed._spawn(tmp_path, 1, cpu_target, 1234, 5.0, None)
    if os.path.exists("/sys/class/net/lo"):
        assert [e.get("NCCL_SOCKET_IFNAME") for e in seen] == ["lo", "lo", None]
        assert seen[2]["GLOO_SOCKET_IFNAME"] == "lo" and "GLOO_SOCKET_IFNAME" not in seen[0]
    assert [e["RANK"] for e in seen] == ["0", "1", "0"] and seen[0]["ROOFLAB_DIST_DEVICE"] == "cuda"
    seen.clear()
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "ib0")
    distributed._spawn(tmp_path, 1, gpu, 1234, 5.0, None)
    assert seen[0]["NCCL_SOCKET_IFNAME"] == "ib0"


# -- spawned gloo ranks -------------------------------------------------------------------------------------

def test_two_gloo_ranks_return_rank_zeros_value(cpu_target):
    out = distributed.launch(sum_of_ranks, 2, target=cpu_target, args=(10,), timeout_s=120)
    assert out == {"rank": 0, "world": 2, "backend": "gloo", "device": "cpu", "launcher": "spawn",
                   "sum": 21, "info_type": "bench.distributed", "interpreted": "1"}


def test_a_dead_rank_ends_the_launch_quickly_with_its_name(cpu_target):
    t0 = time.monotonic()
    with pytest.raises(distributed.DistributedError) as e:
        distributed.launch(one_rank_dies, 2, target=cpu_target, timeout_s=120, init_timeout_s=60)
    assert time.monotonic() - t0 < 30
    msg = str(e.value)
    assert "rank 1 of 2" in msg and "code 9" in msg and "\n" not in msg


def test_a_raising_rank_reports_its_error_in_one_line(cpu_target):
    with pytest.raises(distributed.DistributedError) as e:
        distributed.launch(one_rank_raises, 2, target=cpu_target, timeout_s=120)
    msg = str(e.value)
    assert "rank 1 of 2" in msg and "ValueError: rank one refuses" in msg and "\n" not in msg


def test_a_hung_rank_is_killed_at_the_deadline(cpu_target):
    t0 = time.monotonic()
    with pytest.raises(distributed.DistributedError, match="timed out after 6 s") as e:
        distributed.launch(one_rank_hangs, 2, target=cpu_target, timeout_s=6, init_timeout_s=120)
    assert time.monotonic() - t0 < 25
    assert "had not finished" in str(e.value)


# -- torchrun: every process is a rank, the function runs in place ------------------------------------------

TORCHRUN_SCRIPT = textwrap.dedent("""
    import sys
    sys.path[:0] = [{tests!r}, {root!r}]
    from bench import target, distributed
    import test_distributed

    tgt = target.configure("cpu")
    first = distributed.launch(test_distributed.sum_of_ranks, None, target=tgt, args=(100,))
    again = distributed.launch(test_distributed.sum_of_ranks, 2, target=tgt, args=(1,))  # the same group, reused
    # a later process group on the same torchrun store (as a second benchmark's worker would make) gets
    # a fresh namespace: it must not read the first group's keys
    import torch.distributed as dist
    dist.destroy_process_group()
    distributed._GROUP.clear()
    third = distributed.launch(test_distributed.sum_of_ranks, None, target=tgt, args=(5,))
    try:
        distributed.launch(test_distributed.sum_of_ranks, 3, target=tgt, args=(0,))
    except distributed.DistributedError as e:
        wrong = str(e)
    # one file per rank: two processes printing to one pipe can interleave their lines
    import os
    line = " ".join(map(str, ("RESULT", first["sum"], first["rank"], first["launcher"], again["sum"], third["sum"],
                              "WORLD_SIZE=2" in wrong)))
    open(f"result-{{os.environ['RANK']}}.txt", "w").write(line)
""")


def test_under_torchrun_each_process_runs_in_place_as_its_rank(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(TORCHRUN_SCRIPT.format(tests=str(ROOT / "tests"), root=str(ROOT)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [(tmp_path / f"result-{rank}.txt").read_text() for rank in (0, 1)]
    # both ranks report rank 0's answer (it is broadcast): 100 + 101, 1 + 2, 5 + 6
    assert lines == ["RESULT 201 0 torchrun 3 11 True"] * 2, r.stdout
