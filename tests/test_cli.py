"""CLI behaviour: one-line errors with exit 2, and `rooflab run` end to end on the CPU."""
import json
import subprocess
import sys

import pytest

from bench import profile as P


def rooflab(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=timeout)


def test_version():
    r = rooflab("--version")
    assert r.returncode == 0 and r.stdout.startswith("rooflab ")


@pytest.mark.parametrize("args,needle", [
    (["run", "--bogus"], "No such option"),
    (["run", "--device", "tpu"], "--device"),
    (["run", "--only", "nonsense"], "unknown benchmark"),
    (["run", "--min-time", "-1"], "--min-time"),
    (["frobnicate"], "No such command"),
])
def test_bad_usage_is_one_line_exit_2(args, needle):
    r = rooflab(*args)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


def test_refuses_non_empty_out_dir(tmp_path):
    (tmp_path / "something").write_text("x")
    r = rooflab("run", "--device", "cpu", "--only", "hbm", "--out", str(tmp_path))
    assert r.returncode == 2 and "not empty" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_run_cpu_quick_end_to_end(tmp_path):
    out = tmp_path / "run"
    r = rooflab("run", "--device", "cpu", "--only", "hbm", "--quick", "--out", str(out), "--min-time", "0.02")
    assert r.returncode == 0, r.stderr
    prof = P.load(out / "profile.json")
    assert prof.kind == "measured" and prof.device.backend == "cpu"
    assert prof.run.mode == "cpu" and "interpreter" in prof.run.mode_reason
    assert prof.software.torch and prof.software.rooflab
    assert prof.peaks.memory_bandwidth_Bps > 1e8 and prof.peaks.copy_bandwidth_Bps > 1e8
    assert any(c.beyond_cache for c in prof.curves.hbm) and any(not c.beyond_cache for c in prof.curves.hbm)
    lines = (out / "measurements.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert all(r["status"] == "ok" for r in recs)
    assert {r["mode"] for r in recs} == {"cpu", "interpreter"}
    assert all(r["timing"] is None for r in recs if r["mode"] == "interpreter")
    report = (out / "report.md").read_text()
    assert "Peak memory bandwidth" in report and "interpreter" in report


def test_run_python_api_small(tmp_path, small_cpu_target):
    from bench import runner

    res = runner.run(["hbm"], small_cpu_target, tmp_path / "o", quick=True, min_time_s=0.001)
    assert not res.interrupted and res.profile.peaks.memory_bandwidth_Bps
    again = runner.finish(tmp_path / "o", small_cpu_target, ["hbm"], True, None)
    assert again.peaks == res.profile.peaks  # the profile is rebuilt from measurements.jsonl alone
