"""The runner's pieces, in this process (isolate=False): records that count, coarse-to-fine order, out-of-memory
skipping, the budget, signals, resume settings and the output directory's protection."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading

import _fakebench as F
import pytest
from _cli import rooflab
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import measurement as meas
from bench import registry, runner
from bench.registry import RunContext
from bench.runner import RunError, outdir, plan, point, records


def _by_key(records):
    out = {}
    for m in records:
        out.setdefault(m.key, []).append(m)
    return out


# -- records that count ---------------------------------------------------------------------------------


def _rec(key, status="ok", retry=False, bench="b"):
    return meas.Measurement(benchmark=bench, kernel="k", impl="torch", key=key, status=status, mode="cpu",
                            extra={runner.RETRY: True} if retry else {})


def test_effective_drops_replaced_retryable_records():
    recs = [_rec("a", "skipped", retry=True), _rec("b"), _rec("c", "skipped", retry=True),
            _rec("c", "skipped", retry=True), _rec("a"), _rec("a")]
    eff = runner.effective(recs)
    keys = [(m.key, m.status) for m in eff]
    assert keys == [("b", "ok"), ("c", "skipped"), ("a", "ok"), ("a", "ok")]
    assert eff[1] is recs[3]  # of two retryable records of one point, the last counts


def test_compact_rewrites_the_log_without_replaced_records(tmp_path):
    path = tmp_path / runner.MEASUREMENTS
    meas.append(path, [_rec("a", "skipped", retry=True), _rec("b")])
    with open(path, "a") as f:
        f.write('{"benchmark": "b", "kern')  # a torn line from a kill
    meas.append(path, [_rec("a")])
    kept = records.compact(path)
    assert [(m.key, m.status) for m in kept] == [("b", "ok"), ("a", "ok")]
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["status"] == "ok" for x in lines)


# -- order under a budget --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("xyz"), st.integers(0, 50)), max_size=30, unique=True))
def test_coarse_to_fine_is_a_permutation_largest_then_smallest_first(pairs):
    class B:
        series_key = staticmethod(lambda p: p["s"])
        size_of = staticmethod(lambda p: p["size"])

    points = [{"s": s, "size": n} for s, n in pairs]
    order = runner.coarse_to_fine(B(), points)
    assert sorted(map(json.dumps, order)) == sorted(map(json.dumps, points))
    for s in {p["s"] for p in points}:
        mine = [p["size"] for p in order if p["s"] == s]
        assert mine[0] == max(mine) and (len(mine) == 1 or mine[1] == min(mine))
    if points:  # every series' largest point comes before any series' third
        n_series = len({p["s"] for p in points})
        assert {p["s"] for p in order[:n_series]} == {p["s"] for p in points}


def test_coarse_to_fine_without_sizes_keeps_the_last_point_first():
    pts = [{"i": i} for i in range(7)]
    assert [p["i"] for p in runner.coarse_to_fine(object(), pts)] == [6, 0, 3, 1, 4, 2, 5]


# -- the worker protocol -------------------------------------------------------------------------------------


def test_a_job_goes_to_the_worker_and_back_unchanged(cpu_target):
    from bench.runner.protocol import Job

    tgt = dataclasses.replace(cpu_target, capability=(9, 0))
    job = Job(parent_pid=1, target=tgt, benchmark="b", module="m", points=[{"i": 0}], out_file="/x/m.jsonl",
              quick=True, min_time_s=None, seed=3, options={"ranks": 2}, soft_deadline=12.5, estimate_s=None,
              oom_points=[])
    line = job.to_json()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert Job.from_json(line) == job


def test_events_that_are_not_events_are_ignored():
    from bench.runner.protocol import decode_event, encode_event

    ev = {"ev": "done", "key": "b:{}", "status": "ok", "elapsed_s": 0.5, "oom": False}
    assert decode_event(encode_event(ev).strip()) == ev
    for junk in (b"", b"not json", b"[1]", b'{"ev": "nope"}', b'{"ev": "start"}', b'{"ev": "stop", "reason": 1}'):
        assert decode_event(junk) is None


def test_a_benchmark_without_series_hooks_skips_nothing(cpu_target):
    class Plain(registry.Benchmark):
        name, title = "plain", "plain"

        def sweep(self, ctx):
            return [{"i": 0}]

        def run_point(self, ctx, point):
            return []

        def summarize(self, measurements, device):
            return {}

    assert point.series_size(Plain(), {"i": 0}) is None
    assert plan.estimate_point_s(Plain(), RunContext(target=cpu_target, min_time_s=0.1), {"i": 0}) == 1.5


# -- one point: how an exception is read --------------------------------------------------------------------


class _Raiser:
    def __init__(self, exc):
        self.exc = exc

    def run_point(self, ctx, point):
        raise self.exc


@pytest.mark.parametrize("exc,oom,cuda", [
    (ValueError("bad\nsecond line"), False, False),
    (MemoryError(), True, False),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False, True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True, False),
])
def test_run_one_point_turns_exceptions_into_failed_records(cpu_target, exc, oom, cuda):
    ctx = RunContext(target=cpu_target)
    res = runner.run_one_point(ctx, _Raiser(exc), "x", {"n": 3})
    assert (res.oom, res.cuda_error) == (oom, cuda)
    (rec,) = res.records
    assert rec.status == "failed" and rec.key == registry.key_of("x", {"n": 3})
    assert "\n" not in rec.reason and type(exc).__name__ in rec.reason


def test_torch_out_of_memory_error_is_out_of_memory(cpu_target):
    import torch

    exc = torch.OutOfMemoryError("tried to allocate")
    res = runner.run_one_point(RunContext(target=cpu_target), _Raiser(exc), "x", {})
    assert res.oom and res.records[0].reason.startswith("out of memory")


def test_memory_is_released_after_the_failed_points_tensors_are_gone(cpu_target, monkeypatch):
    import weakref

    class Held:  # stands in for the point's device tensors, referenced from its frame
        pass

    box = {}

    class Holder:
        def run_point(self, ctx, point):
            big = Held()
            box["ref"] = weakref.ref(big)
            raise MemoryError("out of memory")

    freed = []
    monkeypatch.setattr(point, "release_memory", lambda ctx: freed.append(box["ref"]() is None))
    res = runner.run_one_point(RunContext(target=cpu_target), Holder(), "x", {})
    assert res.oom and freed == [True]  # empty_cache after the traceback let go of the tensors, not before


def test_a_budget_caps_the_point_limit(tmp_path, monkeypatch, cpu_target):
    F.install(monkeypatch, tmp_path, "f_ok")
    ctx = RunContext(target=cpu_target)
    out = tmp_path / "m.jsonl"

    def limit(**kw):
        kw = {"budget_s": None, "time_limit_s": None, "point_limit_s": None, **kw}
        (one,) = plan.make_plans(ctx, ["f_ok"], set(), out, kw["budget_s"], kw["time_limit_s"], kw["point_limit_s"])
        return one.point_limit_s

    assert limit() == runner.DEFAULT_POINT_LIMIT_S  # 15 min without a budget
    assert limit(budget_s=380.0) == runner.BUDGET_POINT_FLOOR_S  # a hang costs 2 min of a 6-min budget, not all
    assert limit(budget_s=2000.0) == pytest.approx(500.0)
    assert limit(budget_s=10_000.0) == runner.DEFAULT_POINT_LIMIT_S
    assert limit(budget_s=380.0, point_limit_s=30.0) == 30.0  # an explicit limit wins


# -- in-process runs of fake benchmarks -------------------------------------------------------------------


def test_out_of_memory_skips_the_larger_points_of_its_series(tmp_path, monkeypatch, cpu_target):
    F.install(monkeypatch, tmp_path, "f_oom", "f_oom_noseries")
    res = runner.run(["f_oom", "f_oom_noseries"], cpu_target, tmp_path / "o", isolate=False)
    st_ = {(m.benchmark, m.params.get("s"), m.params["i"]): m for m in res.measurements}
    assert st_[("f_oom", "a", 2)].status == "failed" and "out of memory" in st_[("f_oom", "a", 2)].reason
    assert [st_[("f_oom", "a", i)].status for i in (3, 4)] == ["skipped", "skipped"]
    assert [st_[("f_oom", "a", i)].status for i in (0, 1)] == ["ok", "ok"]
    assert all(st_[("f_oom", "b", i)].status == "ok" for i in range(5))  # another series goes on
    # without series_key / size_of nothing is skipped
    assert [st_[("f_oom_noseries", None, i)].status for i in range(4)] == ["ok", "failed", "ok", "ok"]


def test_budget_skips_what_does_not_fit_and_resume_measures_it(tmp_path, monkeypatch, cpu_target):
    F.install(monkeypatch, tmp_path, "f_budget", "f_ok")
    ref = runner.run(["f_budget", "f_ok"], cpu_target, tmp_path / "ref", isolate=False)
    # 12 points of 0.2 s + 3 instant ones; 0.5 s of the 2 s budget is kept for the profile and report
    res = runner.run(["f_budget", "f_ok"], cpu_target, tmp_path / "b", isolate=False, budget_s=2.0)
    assert res.wall_time_s < 2.0 and not res.interrupted
    ok = [m for m in res.measurements if m.status == "ok"]
    skipped = [m for m in res.measurements if m.status == "skipped"]
    assert 2 <= len([m for m in ok if m.benchmark == "f_budget"]) <= 9
    assert skipped and all(m.reason.startswith("budget") and runner.is_retry(m) for m in skipped)
    assert res.budget_skipped == len(skipped) and res.profile.run.points_skipped == len(skipped)
    # coarse to fine: the largest and the smallest point of the sweep were measured first
    assert {m.params["i"] for m in ok if m.benchmark == "f_budget"} >= {0, 11}
    again = runner.run(["f_budget", "f_ok"], cpu_target, tmp_path / "b", isolate=False, resume=True)
    assert again.skipped_existing == len(ok)
    assert [m.status for m in again.measurements].count("ok") == 15 and again.profile.run.points_skipped == 0
    assert again.profile.curves == ref.profile.curves
    assert len(_by_key(again.measurements)) == 15  # no point twice: the "budget" records were replaced


def test_resume_refuses_other_settings(tmp_path, monkeypatch, cpu_target):
    F.install(monkeypatch, tmp_path, "f_ok", "f_ok2")
    runner.run(["f_ok"], cpu_target, tmp_path / "o", isolate=False)
    for kw, word in [({"seed": 1}, "seed"), ({"quick": False}, "quick"),
                     ({"selection": ["f_ok", "f_ok2"]}, "selection")]:
        args = {"selection": ["f_ok"], **kw}
        sel = args.pop("selection")
        with pytest.raises(RunError, match=word):
            runner.run(sel, cpu_target, tmp_path / "o", isolate=False, resume=True, **args)


def test_sigint_finishes_the_point_in_flight_sigterm_abandons_it(tmp_path, monkeypatch, cpu_target):
    F.install(monkeypatch, tmp_path, "f_slow")
    for sig, code in [(signal.SIGINT, 130), (signal.SIGTERM, 143)]:
        out = tmp_path / sig.name
        before = signal.getsignal(sig)
        timer = threading.Timer(0.6, os.kill, (os.getpid(), sig))  # mid-way through the third point
        timer.start()
        try:
            res = runner.run(["f_slow"], cpu_target, out, isolate=False)
        finally:
            timer.cancel()
        assert res.interrupted and res.signal == sig.name and res.exit_code == code
        assert (out / runner.PROFILE).exists() and (out / runner.REPORT).exists()
        statuses = [m.status for m in res.measurements]
        assert 1 <= statuses.count("ok") < 8
        abandoned = [m for m in res.measurements if m.status == "skipped"]
        if sig == signal.SIGINT:
            assert not abandoned  # the point in flight was finished
        else:
            assert len(abandoned) == 1 and abandoned[0].reason == "interrupted: abandoned on SIGTERM"
        assert signal.getsignal(sig) == before  # the handlers are given back
        done = runner.run(["f_slow"], cpu_target, out, isolate=False, resume=True)
        assert [m.status for m in done.measurements] == ["ok"] * 8


# -- the output directory -----------------------------------------------------------------------------------


def test_out_dir_is_never_overwritten_without_force(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    outdir.run_file(out, runner.PROFILE).write_text("{}")  # a file a run wrote (the manifest lists it)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        runner.prepare_out_dir(out)
    runner.prepare_out_dir(out, force=True)
    assert not (out / runner.PROFILE).exists() and (out / "notes.txt").read_text() == "mine"
    (out / runner.REPORT).write_text("mine too")  # a run's name, but not written by rooflab: never deleted
    with pytest.raises(RunError, match="did not write"):
        runner.prepare_out_dir(out, force=True)
    assert (out / runner.REPORT).read_text() == "mine too"
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunError, match="not a directory"):
        runner.prepare_out_dir(tmp_path / "f")
    with pytest.raises(RunError, match="nothing to resume"):
        runner.prepare_out_dir(tmp_path / "missing", resume=True)
    with pytest.raises(RunError, match="nothing to resume"):
        runner.prepare_out_dir(out, resume=True)  # no measurements.jsonl: not a run
    with pytest.raises(RunError, match="cannot use"):
        runner.prepare_out_dir(tmp_path / "f" / "sub")


@pytest.mark.parametrize("text,needle", [
    ("not json", "not valid JSON"),
    ('{"version": 1, "selection": ["hbm"], "quick": true, "seed": NaN, "min_time_s": null, "backend": "cpu", '
     '"device": "x"}', "not valid JSON"),
    ("[1, 2]", "not a rooflab run file"),
    ('{"version": 2}', "not a rooflab run file"),
    ('{"version": 1, "selection": "hbm", "quick": true, "seed": 0, "min_time_s": null, "backend": "cpu", '
     '"device": "x"}', "not a rooflab run file"),
    ('{"version": 1, "selection": ["hbm"], "quick": 1, "seed": 0, "min_time_s": null, "backend": "cpu", '
     '"device": "x"}', "not a rooflab run file"),
    ('{"version": 1, "selection": ["hbm"], "quick": true, "seed": true, "min_time_s": null, "backend": "cpu", '
     '"device": "x"}', "not a rooflab run file"),
])
def test_bad_run_settings_are_one_line_errors(tmp_path, text, needle):
    (tmp_path / runner.SETTINGS).write_text(text)
    with pytest.raises(RunError, match=needle) as e:
        runner.load_settings(tmp_path)
    assert "\n" not in str(e.value)


def test_real_benchmarks_declare_their_oom_series(cpu_target):
    """hbm, gemm and decode name a series and a size for every sweep point, so an out-of-memory point
    skips the larger points of its series; sizes grow within a series the way memory use does."""
    ctx = RunContext(target=cpu_target, quick=False)
    for name in ("hbm", "gemm", "decode"):
        bench = registry.get(name)
        placed = [point.series_size(bench, p) for p in bench.sweep(ctx)]
        assert placed and all(x is not None for x in placed), name
        assert all(size > 0 for _, size in placed), name


# -- the --model option: stored with the run's settings ------------------------------------------------------

def test_the_model_option_is_a_run_setting_a_resume_keeps(tmp_path, monkeypatch, capsys, cpu_target):
    from pathlib import Path

    from bench import models
    from bench import profile as prof
    from bench.profile import build as profile_build

    calls = []

    def fake_run(selection, target, out, **kw):  # the runner stand-in: writes run.json as the runner does
        runner.prepare_out_dir(Path(out), resume=kw["resume"], force=kw["force"])
        calls.append(kw)
        if not kw["resume"]:
            runner.save_settings(Path(out), runner.Settings(selection=selection, quick=kw["quick"], seed=kw["seed"],
                                                            min_time_s=kw["min_time_s"], options=kw["options"],
                                                            backend=target.backend, device=target.name).to_json())
        info = prof.RunInfo(mode=target.backend, mode_reason="test", benchmarks=[])
        profile = profile_build.from_measurements([], profile_build.device_info(target), info)
        return runner.RunResult(out_dir=Path(out), profile=profile, measurements=[])

    monkeypatch.setattr(runner, "run", fake_run)
    out = tmp_path / "o"
    code, _, err = rooflab(capsys, "run", "--device", "cpu", "--only", "gemm", "--model", "qwen3-30b-a3b", "--out", out,
                           "--json")
    assert code == 0, err
    stored = calls[-1]["options"]["models"]
    assert [m["name"] for m in stored] == ["qwen3-30b-a3b"]
    assert models.ModelSpec.model_validate(stored[0]) == models.resolve("qwen3-30b-a3b")  # the fields, not a name
    assert runner.load_settings(out).options["models"] == stored
    code, _, err = rooflab(capsys, "run", "--resume", out, "--json")
    assert code == 0 and calls[-1]["options"]["models"] == stored  # a resume measures the same shapes
    code, _, err = rooflab(capsys, "run", "--resume", out, "--model", "llama-3.1-8b")
    assert code == 2 and "drop --model (it was started with qwen3-30b-a3b)" in err
    assert len(err.strip().splitlines()) == 1
    # the sweeps read it: the gemm benchmark measures that model's shapes only
    ctx = RunContext(target=cpu_target, quick=True, options=calls[-1]["options"])
    llm = {(p["N"], p["K"]) for p in registry.get("gemm").sweep(ctx) if p["family"] == "llm"}
    assert llm == {(mm.n, mm.k) for mm in models.resolve("qwen3-30b-a3b").matmuls()}


@pytest.mark.parametrize("value,needle", [("nope", "unknown model"), (" , ", "at least one model"),
                                          ("missing.json", "missing.json")])
def test_a_bad_model_option_is_one_line_exit_2(tmp_path, capsys, value, needle):
    code, _, err = rooflab(capsys, "run", "--device", "cpu", "--only", "hbm", "--model", value, "--out", tmp_path / "o")
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
