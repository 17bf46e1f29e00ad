"""Reliability, end to end with worker processes: a benchmark that raises, hangs or kills its process costs
its point and nothing else; a run killed with SIGKILL resumes to the profile an uninterrupted run makes;
Ctrl-C / SIGTERM write what was measured and exit non-zero."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import _fakebench as F
import pytest

from bench import measurement as meas
from bench import profile as prof
from bench import runner

TESTS = Path(__file__).resolve().parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _status(res):
    return {(m.benchmark, m.params["i"]): m for m in res.measurements}


def test_raise_hang_kill_and_cuda_error_leave_the_rest_measured(tmp_path, monkeypatch, cpu_target):
    names = ["f_raise", "f_hang", "f_die", "f_cuda", "f_ok"]
    F.install(monkeypatch, tmp_path, *names)
    t0 = time.monotonic()
    res = runner.run(names, cpu_target, tmp_path / "o", point_limit_s=1.5)
    assert time.monotonic() - t0 < 60
    st = _status(res)
    assert len(st) == 15 and not res.interrupted
    bad = {k: m.reason for k, m in st.items() if m.status != "ok"}
    assert set(bad) == {("f_raise", 1), ("f_hang", 1), ("f_die", 1), ("f_cuda", 1)}
    assert bad[("f_raise", 1)].startswith("ValueError: fake failure")
    assert bad[("f_hang", 1)].startswith("timeout: no result after 1.5 s")
    assert bad[("f_die", 1)].startswith("worker crashed (killed by SIGKILL)")
    assert bad[("f_cuda", 1)].startswith("CUDA error: RuntimeError: CUDA error")
    # each benchmark ran in processes of its own; after a hang, a kill or a CUDA error a fresh one went on
    pid = {k: m.extra["pid"] for k, m in st.items() if m.status == "ok"}
    assert os.getpid() not in pid.values()
    assert pid[("f_raise", 0)] == pid[("f_raise", 2)]  # an exception costs the point, not the process
    for b in ("f_hang", "f_die", "f_cuda"):
        assert pid[(b, 0)] != pid[(b, 2)]
    assert pid[("f_ok", 0)] == pid[("f_ok", 2)] not in {pid[(b, 0)] for b in names[:-1]}
    assert res.profile.run.points_ok == 11 and res.profile.run.points_failed == 4
    assert prof.load(tmp_path / "o" / runner.PROFILE).run.points_failed == 4


def test_a_timeout_kills_the_whole_process_group(tmp_path, monkeypatch, cpu_target):
    F.install(monkeypatch, tmp_path, "f_spawn")
    pidfile = tmp_path / "grandchild.pid"
    res = runner.run(["f_spawn"], cpu_target, tmp_path / "o", point_limit_s=3, options={"pidfile": str(pidfile)})
    st = _status(res)
    assert st[("f_spawn", 0)].reason.startswith("timeout") and st[("f_spawn", 1)].status == "ok"
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)  # what the benchmark spawned (ranks) died with its worker


def test_a_benchmark_past_its_time_limit_is_stopped_and_the_suite_goes_on(tmp_path, monkeypatch, cpu_target):
    F.install(monkeypatch, tmp_path, "f_hang", "f_ok2")
    # no per-point limit: the benchmark's own limit (counted from its worker's start) stops the hang
    res = runner.run(["f_hang", "f_ok2"], cpu_target, tmp_path / "o", time_limit_s=8, point_limit_s=0)
    st = _status(res)
    assert st[("f_hang", 0)].status == "ok"
    assert st[("f_hang", 1)].status == "failed"
    assert st[("f_hang", 1)].reason.startswith("timeout: benchmark f_hang reached its time limit of 8 s")
    assert st[("f_hang", 2)].status == "skipped" and st[("f_hang", 2)].reason.startswith("time limit")
    assert runner.is_retry(st[("f_hang", 2)]) and not runner.is_retry(st[("f_hang", 1)])
    assert [st[("f_ok2", i)].status for i in range(2)] == ["ok", "ok"]


_SCRIPT = """
import sys
sys.path[:0] = [{tests!r}]
import pytest
from pathlib import Path
from bench import target
tgt = target.configure("cpu")
import _fakebench as F
F.install(pytest.MonkeyPatch(), Path({mods!r}), *{names!r})
{body}
"""


def _spawn(tmp_path, names, body):
    mods = tmp_path / "mods"
    mods.mkdir(exist_ok=True)
    code = _SCRIPT.format(tests=str(TESTS), mods=str(mods), names=list(names), body=textwrap.dedent(body))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(path: Path, n: int, proc, timeout=60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists():
            recs = [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]
            if len(recs) >= n:
                return recs
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records in {path} after {timeout} s")


def test_sigkill_mid_sweep_then_resume_gives_every_point_and_the_same_profile(tmp_path, monkeypatch, cpu_target):
    names = ["f_slow", "f_ok2"]
    out = tmp_path / "killed"
    proc = _spawn(tmp_path, names, f"""
        from bench import runner
        runner.run({names!r}, tgt, Path({str(out)!r}))
    """)
    try:
        recs = _wait_for_records(out / runner.MEASUREMENTS, 3, proc)
    finally:
        proc.kill()  # SIGKILL: no handler runs, nothing is finished
        proc.communicate()
    worker = recs[-1]["extra"]["pid"]
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)  # the worker died with its runner: nothing appends behind a resume's back
    assert not (out / runner.PROFILE).exists()
    with open(out / runner.MEASUREMENTS, "a") as f:
        f.write('{"benchmark": "f_slow", "kernel": "co')  # as if the kill had hit a write
    F.install(monkeypatch, tmp_path, *names)
    res = runner.run(names, cpu_target, out, resume=True)
    assert res.skipped_existing >= 3 and not res.interrupted
    ref = runner.run(names, cpu_target, tmp_path / "ref", isolate=False)
    got = prof.load(out / runner.PROFILE)
    assert got.curves == ref.profile.curves and got.peaks == ref.profile.peaks
    assert (got.run.points_ok, got.run.points_failed, got.run.points_skipped) == (10, 0, 0)
    lines = (out / runner.MEASUREMENTS).read_text().splitlines()
    assert len(lines) == 10 and len({json.loads(x)["key"] for x in lines}) == 10


def _cli_body(argv):
    return f"""
        from bench import cli
        cli.main({argv!r})
    """


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_signal_writes_what_was_measured_and_resume_finishes(tmp_path, monkeypatch, sig, code):
    out = tmp_path / "o"
    proc = _spawn(tmp_path, ["f_slow"], _cli_body(["run", "--only", "f_slow", "--device", "cpu", "--out", str(out)]))
    try:
        _wait_for_records(out / runner.MEASUREMENTS, 2, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("rooflab:")]  # one line says what happened
    assert f"interrupted by {sig.name}" in line and f"--resume {out}" in line
    profile = prof.load(out / runner.PROFILE)
    recs = meas.read(out / runner.MEASUREMENTS)
    assert profile.run.points_ok == sum(m.status == "ok" for m in recs) >= 2
    if sig == signal.SIGINT:  # the point in flight was finished, not abandoned
        assert not [m for m in recs if m.status != "ok"]
    proc = _spawn(tmp_path, ["f_slow"], _cli_body(["run", "--resume", str(out)]))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    recs = meas.read(out / runner.MEASUREMENTS)
    assert sorted(m.params["i"] for m in recs) == list(range(8)) and all(m.status == "ok" for m in recs)
