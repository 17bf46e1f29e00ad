"""Fuzzing the command line: whatever the arguments, `rooflab` exits 0 or 2 (usage) with one line on stderr,
never a traceback. Nothing is measured: the runner is replaced by a stand-in that only checks the output
directory, so each example takes milliseconds (the real runner is tested in test_runner / test_reliability)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import rooflab
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench import profile as prof
from bench import runner
from bench.profile import build as profile_build
from bench.runner import outdir

WORDS = ["run", "--device", "cpu", "cuda", "tpu", "auto", "--only", "hbm", "gemm", "hbm,gemm", ",", "hbm,,x",
         "nope", "--quick", "--full", "--out", "--resume", "--force", "--min-time", "--seed", "--budget",
         "--time-limit", "--json", "--help", "--version", "0", "-1", "1e9", "nan", "inf", "-inf", "0.5", "1e-300",
         "99999999999999999999999", "", " ", "--", "-", "x", "new_out", "run1", "badrun", "file.txt", "/dev/null",
         "/proc/nonexistent/x", "--bogus", "-h", "--only=hbm", "--budget=-3"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
TOKEN = st.one_of(st.sampled_from(WORDS), TEXT, st.integers(-10**20, 10**20).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr))
ARGV = st.one_of(st.lists(TOKEN, max_size=8), st.lists(TOKEN, max_size=8).map(lambda a: ["run", *a]))


@pytest.fixture
def sandbox(tmp_path, monkeypatch, cpu_target):
    """A working directory with a run to resume, a broken one and a file; `runner.run` replaced."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    run1 = tmp_path / "run1"
    run1.mkdir()
    settings_ = runner.Settings(selection=["hbm"], quick=True, seed=0, min_time_s=None, options={},
                                backend="cpu", device=cpu_target.name)
    outdir.run_file(run1, runner.SETTINGS).write_text(settings_.to_json())  # as a run writes them
    outdir.run_file(run1, runner.MEASUREMENTS).write_text("")
    bad = tmp_path / "badrun"
    bad.mkdir()
    (bad / runner.SETTINGS).write_text('{"version": 1, "seed": "zero"}')
    calls = []

    def fake_run(selection, target, out, **kw):
        runner.prepare_out_dir(Path(out), resume=kw["resume"], force=kw["force"])
        calls.append((selection, kw))
        info = prof.RunInfo(mode=target.backend, mode_reason="fuzz", benchmarks=[])
        profile = profile_build.from_measurements([], profile_build.device_info(target), info)
        return runner.RunResult(out_dir=Path(out), profile=profile, measurements=[])

    monkeypatch.setattr(runner, "run", fake_run)
    return calls


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGV)
@example(argv=["run", "--budget", "nan"])
@example(argv=["run", "--resume", "run1", "--json"])
@example(argv=["run", "--seed", "99999999999999999999999"])
def test_any_arguments_exit_0_or_2_with_one_line(sandbox, capsys, argv):
    code, _out, err = rooflab(capsys, *argv)
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err
    if code:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rooflab: "), (argv, err)


@pytest.mark.parametrize("argv,needle", [
    (["run", "--budget", "nan"], "--budget"),
    (["run", "--budget", "-5"], "--budget"),
    (["run", "--budget", "1e99"], "--budget"),
    (["run", "--time-limit", "0"], "--time-limit"),
    (["run", "--min-time", "inf"], "--min-time"),
    (["run", "--seed", "-1"], "--seed"),
    (["run", "--seed", "seven"], "--seed"),
    (["run", "--only", ""], "--only"),
    (["run", "--only", "hbm,,nope"], "unknown benchmark"),
    (["run", "--resume"], "--resume"),
    (["run", "--resume", "missing"], "nothing to resume"),
    (["run", "--resume", "file.txt"], "not a directory"),
    (["run", "--resume", "badrun"], "not a rooflab run file"),
    (["run", "--resume", "run1", "--force"], "--force"),
    (["run", "--resume", "run1", "--seed", "3"], "--seed"),
    (["run", "--resume", "run1", "--full"], "--quick/--full"),
    (["run", "--resume", "run1", "--out", "elsewhere"], "--out"),
    (["run", "--out", "file.txt"], "not a directory"),
    (["run", "--out", "/proc/nonexistent/x"], "cannot use"),
    (["run", "--device", "cuda"], "CUDA"),
])
def test_malformed_run_arguments(sandbox, capsys, argv, needle):
    code, _, err = rooflab(capsys, *argv)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert needle in line and line.startswith("rooflab: error: ")
    assert not sandbox  # nothing ran


def test_non_empty_out_needs_force_and_resume_keeps_the_settings(sandbox, capsys, tmp_path):
    code, _, err = rooflab(capsys, "run", "--out", "run1")
    assert code == 2 and "not empty" in err and "--force" in err
    code, out, _ = rooflab(capsys, "run", "--resume", "run1", "--json")
    assert code == 0 and json.loads(out)["kind"] == "measured"
    selection, kw = sandbox[-1]
    assert selection == ["hbm"] and kw["resume"] is True and kw["seed"] == 0 and kw["quick"] is True
    code, _, _ = rooflab(capsys, "run", "--out", "run1", "--force", "--only", "hbm", "--budget", "60", "--json")
    assert code == 0 and sandbox[-1][1]["budget_s"] == 60.0 and sandbox[-1][1]["force"] is True
