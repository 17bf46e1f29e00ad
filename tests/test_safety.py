"""A run folder is the user's data: rooflab never deletes outside it, never hangs on an input, never reads one
without bound and never mixes two runs in one folder. One test per defect an adversarial pass found (the
number is the defect's), each written the way a careless or hostile user would cause it.

Readers that hung are called in a thread that a writer unblocks after a timeout, and reads that grew without
bound run in a subprocess under a memory limit, so a regression fails fast instead of stalling the suite.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import _fakebench as F
import pytest
from _cli import one_line_error, rooflab

from bench import distributed, jsonio, models, runner
from bench import measurement as meas
from bench import profile as prof
from bench.report import build
from bench.runner import RunError, outdir

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    mods = tmp_path / "mods"
    mods.mkdir()
    return lambda *names: F.install(monkeypatch, mods, *names)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _finished_run(tmp_path, fakes, cpu_target):
    """A run folder ``tmp_path/d`` holding a finished run of the three-point fake (in process)."""
    fakes("f_ok")
    d = tmp_path / "d"
    runner.run(["f_ok"], cpu_target, d, isolate=False)
    return d


# -- 1. --force deletes only what a run wrote, never through a symlink; / and home are never an output folder


def test_1_force_never_deletes_through_a_symlink(tmp_path, fakes, cpu_target):
    fakes("f_ok")
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "holiday.png").write_bytes(b"not a plot")
    (pics / "trip.log").write_text("mine")
    d = tmp_path / "d"
    d.mkdir()
    (d / "plots").symlink_to(pics)
    (d / "logs").symlink_to(pics)
    with pytest.raises(RunError, match="symbolic link") as e:
        runner.run(["f_ok"], cpu_target, d, force=True, isolate=False)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in pics.iterdir()) == ["holiday.png", "trip.log"]
    assert (pics / "holiday.png").read_bytes() == b"not a plot"


def test_1_force_removes_exactly_the_files_the_run_wrote(tmp_path, fakes, cpu_target):
    fakes("f_ok", "f_ok2")
    d = tmp_path / "d"
    for name, text in (("plots/holiday.png", "png"), ("logs/mine.log", "log"), ("notes.txt", "notes")):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    runner.run(["f_ok"], cpu_target, d, force=True, isolate=False)  # a folder rooflab never wrote: nothing goes
    assert (d / "plots/holiday.png").read_text() == "png" and (d / "logs/mine.log").read_text() == "log"
    first = json.loads((d / outdir.MANIFEST).read_text())["files"]
    assert {"run.json", "measurements.jsonl", "profile.json", "report.md", "plots/cache_cliff.png"} <= set(first)
    assert "plots/holiday.png" not in first and "notes.txt" not in first
    res = runner.run(["f_ok2"], cpu_target, d, force=True, isolate=False)  # start over: the first run's files go
    assert {m.benchmark for m in meas.read(d / runner.MEASUREMENTS)} == {"f_ok2"} and not res.interrupted
    assert (d / "plots/holiday.png").read_text() == "png" and (d / "notes.txt").read_text() == "notes"
    # a file with a run's name that rooflab cannot prove it wrote is never deleted: the run refuses instead
    other = tmp_path / "other"
    other.mkdir()
    (other / runner.PROFILE).write_text('{"mine": true}')
    with pytest.raises(RunError, match="did not write") as e:
        runner.run(["f_ok"], cpu_target, other, force=True, isolate=False)
    assert "\n" not in str(e.value) and (other / runner.PROFILE).read_text() == '{"mine": true}'


def test_1_root_and_home_are_never_an_output_folder(tmp_path, monkeypatch):
    for p in (Path("/"), Path.home(), Path.home() / "x" / ".."):
        with pytest.raises(RunError, match="never an output folder"):
            outdir.check_out_dir(p)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(RunError, match="never an output folder"):
        outdir.check_out_dir(home)
    (tmp_path / "link").symlink_to(home)
    with pytest.raises(RunError, match="never an output folder"):
        outdir.check_out_dir(tmp_path / "link")  # not through a symlink either
    assert outdir.check_out_dir(home / "runs" / "a") == (home / "runs" / "a").resolve()
    assert not (home / "runs").exists()  # the check writes nothing


# -- 2. a FIFO (or a device, or a folder) where a file belongs hangs no reader ------------------------------


def _returns(fn, fifos: list[Path], timeout: float = 10.0):
    """What ``fn()`` returned or raised; fails (after unblocking it) if it still runs after ``timeout``."""
    box: dict = {}

    def call():
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        for f in fifos:  # a writer that closes at once: the blocked reader sees end of file and returns
            try:
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        t.join(10)
        pytest.fail(f"{fn} hung on a FIFO")
    return box


def _run_dir_with(tmp_path, cpu_target, fifo_name: str) -> Path:
    d = tmp_path / f"run-{fifo_name}"
    d.mkdir()
    s = runner.Settings(selection=["hbm"], quick=True, seed=0, min_time_s=None, options={}, backend="cpu",
                        device=cpu_target.name)
    (d / runner.SETTINGS).write_text(s.to_json())
    (d / runner.MEASUREMENTS).write_text("")
    prof.save(prof.Profile(name="p", device=prof.DeviceInfo(name="cpu", backend="cpu")), d / runner.PROFILE)
    (d / fifo_name).unlink()
    os.mkfifo(d / fifo_name)
    return d


def test_2_a_fifo_hangs_no_reader(tmp_path, cpu_target):
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    hf = tmp_path / "hf"
    hf.mkdir()
    os.mkfifo(hf / "config.json")
    run_json = _run_dir_with(tmp_path, cpu_target, runner.SETTINGS)
    jsonl = _run_dir_with(tmp_path, cpu_target, runner.MEASUREMENTS)
    profile_json = _run_dir_with(tmp_path, cpu_target, runner.PROFILE)
    cases = [
        (lambda: prof.load(fifo), prof.ProfileError),  # profile show / validate, roofline --gpu, compare, --cards
        (lambda: prof.resolve(str(fifo)), prof.ProfileError),
        (lambda: models.resolve(str(fifo)), models.ModelError),  # roofline / compare / validate --model
        (lambda: models.resolve(str(hf)), models.ModelError),  # a HF model folder
        (lambda: runner.load_settings(run_json), RunError),  # --resume
        (lambda: runner.run(["hbm"], cpu_target, jsonl, resume=True, isolate=False), RunError),
        (lambda: build.load_run(profile_json), build.ReportError),  # report
        (lambda: build.load_run(jsonl), build.ReportError),
        (lambda: jsonio.read_json(fifo, 1000, "input", ValueError), ValueError),
    ]
    fifos = [fifo, hf / "config.json", run_json / runner.SETTINGS, jsonl / runner.MEASUREMENTS,
             profile_json / runner.PROFILE]
    for fn, error in cases:
        got = _returns(fn, fifos)
        assert isinstance(got.get("error"), error), got
        msg = str(got["error"])
        assert "\n" not in msg and "not a regular file" in msg, msg


def test_2_the_cli_refuses_a_fifo_in_one_line(tmp_path):
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    r = subprocess.run([sys.executable, "-m", "bench", "profile", "validate", str(fifo)], capture_output=True,
                       text=True, timeout=60)
    one_line_error(r.returncode, r.stderr, "not a regular file")


# -- 3. every read is bounded ----------------------------------------------------------------------------------


_BOUNDED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from bench import runner
try:
    runner.load_settings(sys.argv[1])
except BaseException as e:
    print(type(e).__name__, str(e).replace("\\n", " "))
"""


def test_3_run_json_pointing_at_dev_zero_is_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / runner.SETTINGS).symlink_to("/dev/zero")
    r = subprocess.run([sys.executable, "-c", _BOUNDED, str(d)], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("RunError ") and "symbolic link" in r.stdout, (r.stdout, r.stderr[-500:])
    (d / runner.SETTINGS).unlink()
    with open(d / runner.SETTINGS, "wb") as f:  # sparse: 4 GiB that take no disk
        f.truncate(4 << 30)
    r = subprocess.run([sys.executable, "-c", _BOUNDED, str(d)], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("RunError ") and "limit" in r.stdout, (r.stdout, r.stderr[-500:])


def _append_huge_line(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(b'{"benchmark": "')
        f.seek(size, os.SEEK_CUR)  # a hole: zeros that take no disk
        f.write(b'"}\n')


def test_3_a_huge_line_costs_no_memory(tmp_path, fakes, cpu_target):
    d = _finished_run(tmp_path, fakes, cpu_target)
    size = 128 << 20
    _append_huge_line(d / runner.MEASUREMENTS, size)
    tracemalloc.start()
    try:
        _, recs, _ = build.load_run(d)  # `rooflab report`
        report_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        notes: list[str] = []
        res = runner.run(["f_ok"], cpu_target, d, resume=True, isolate=False, log=notes.append)
        resume_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(recs) == 3 and len(res.measurements) == 3
    assert report_peak < 32 << 20 and resume_peak < 64 << 20, (report_peak, resume_peak)
    aside = d / outdir.UNREADABLE
    assert aside.stat().st_size == size + len(b'{"benchmark": "') + 3  # set aside whole, not lost
    assert any(outdir.UNREADABLE in n for n in notes)


def test_3_a_log_over_its_limit_is_one_line(tmp_path, fakes, cpu_target):
    d = _finished_run(tmp_path, fakes, cpu_target)
    with open(d / runner.MEASUREMENTS, "ab") as f:
        f.truncate(meas.MAX_LOG_BYTES + 1)
    with pytest.raises(RunError, match="limit") as e:
        runner.run(["f_ok"], cpu_target, d, resume=True, isolate=False)
    assert "\n" not in str(e.value)
    with pytest.raises(build.ReportError, match="limit"):
        build.load_run(d)


# -- 4. one run at a time in a run folder --------------------------------------------------------------------


_HOLDER = """
import sys
sys.path[:0] = [{tests!r}, {mods!r}]
from pathlib import Path
from bench import registry, runner, target
registry.REGISTRY = {{"f_wait": "rooflab_fake_f_wait"}}
runner.run(["f_wait"], target.configure("cpu"), Path({out!r}), isolate=False)
"""


def test_4_a_run_folder_holds_one_run_at_a_time(tmp_path, fakes, cpu_target):
    fakes("f_wait")
    d = tmp_path / "d"
    code = _HOLDER.format(tests=str(TESTS), mods=str(tmp_path / "mods"), out=str(d))
    holder = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "ROOFLAB_FAKE_HANG": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ((d / runner.MEASUREMENTS).exists() and (d / runner.MEASUREMENTS).read_bytes().endswith(b"\n")):
            assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()
            time.sleep(0.05)
        before = (d / runner.MEASUREMENTS).read_bytes()  # point 0 done, point 1 hangs: the run is in progress
        for kw in ({"resume": True}, {"force": True}):
            with pytest.raises(RunError, match=f"in use by rooflab \\(pid {holder.pid} on ") as e:
                runner.run(["f_wait"], cpu_target, d, isolate=False, **kw)
            assert "\n" not in str(e.value)
        assert (d / runner.MEASUREMENTS).read_bytes() == before  # nothing appended, nothing deleted
    finally:
        holder.kill()  # SIGKILL: its lock is left behind, stale
        holder.communicate()
    notes: list[str] = []
    res = runner.run(["f_wait"], cpu_target, d, resume=True, isolate=False, log=notes.append)
    assert any("stale lock" in n and f"pid {holder.pid}" in n for n in notes), notes
    keys = [m.key for m in res.measurements]
    assert len(keys) == 3 == len(set(keys)) and all(m.status == "ok" for m in res.measurements)
    assert not (d / outdir.LOCK).exists()  # given back at the end


# -- 5. a resume is the same run: another device's records are refused --------------------------------------


def test_5_resume_refuses_another_devices_records(tmp_path, fakes, cpu_target):
    d = _finished_run(tmp_path, fakes, cpu_target)
    lines = _lines(d / runner.MEASUREMENTS)
    rec = json.loads(lines[1])
    rec.update(mode="cuda", device="NVIDIA H100 80GB HBM3", bandwidth_Bps=rec["bandwidth_Bps"] * 100)
    lines[1] = (json.dumps(rec) + "\n").encode()
    (d / runner.MEASUREMENTS).write_bytes(b"".join(lines))
    with pytest.raises(RunError, match="line 2") as e:
        runner.run(["f_ok"], cpu_target, d, resume=True, isolate=False)
    assert "NVIDIA H100" in str(e.value) and "\n" not in str(e.value)
    assert (d / runner.MEASUREMENTS).read_bytes() == b"".join(lines)  # refused before anything changed


# -- 6. a resume never drops a line: unreadable ones move aside, and are named ------------------------------


def test_6_unreadable_lines_are_moved_aside_and_named(tmp_path, fakes, cpu_target):
    d = _finished_run(tmp_path, fakes, cpu_target)
    good = _lines(d / runner.MEASUREMENTS)
    extra = json.loads(good[1])
    extra["from_a_newer_rooflab"] = 1  # a valid record with one field this rooflab does not know
    bad = [b"not json\n", (json.dumps(extra) + "\n").encode(), b"\xff\xfe binary\n", b'{"benchmark": "f_o']
    (d / runner.MEASUREMENTS).write_bytes(bad[0] + good[0] + bad[1] + good[2] + bad[2] + bad[3])
    notes: list[str] = []
    res = runner.run(["f_ok"], cpu_target, d, resume=True, isolate=False, log=notes.append)
    aside = _lines(d / outdir.UNREADABLE)
    assert aside == bad[:3] + [bad[3] + b"\n"]  # every line kept, byte for byte
    (note,) = [n for n in notes if outdir.UNREADABLE in n]
    assert "4 " in note and "lines 1, 3, 5, 6" in note
    assert sorted(m.params["i"] for m in res.measurements) == [0, 1, 2]  # point 1 was measured again
    assert all(m.status == "ok" for m in res.measurements)


# -- 7. settings from run.json pass the command line's checks -------------------------------------------------


@pytest.mark.parametrize("change,needle", [
    ({"options": {"ranks": 5000}}, "options.ranks"),
    ({"options": {"ranks": "2"}}, "options.ranks"),
    ({"min_time_s": -5}, "min_time_s"),
    ({"min_time_s": 1e9}, "min_time_s"),
    ({"seed": -1}, "seed"),
    ({"selection": ["nope"]}, "unknown benchmark"),
    ({"selection": []}, "selection"),
])
def test_7_a_tampered_run_json_is_refused(tmp_path, capsys, cpu_target, change, needle):
    d = tmp_path / "d"
    d.mkdir()
    s = json.loads(runner.Settings(selection=["hbm"], quick=True, seed=0, min_time_s=None, options={},
                                   backend="cpu", device=cpu_target.name).to_json())
    s.update(change)
    (d / runner.SETTINGS).write_text(json.dumps(s))
    (d / runner.MEASUREMENTS).write_text("")
    with pytest.raises(RunError, match=needle) as e:
        runner.load_settings(d)
    assert "\n" not in str(e.value)
    if "selection" in change:  # the command line says so in one line, not "internal error"
        one_line_error(*rooflab(capsys, "run", "--resume", d)[::2], needle)


# -- 8. workers never import from the current folder ---------------------------------------------------------


def test_8_workers_and_ranks_ignore_the_current_folder(tmp_path, fakes, monkeypatch, cpu_target):
    fakes("f_ok")
    cwd = tmp_path / "cwd"
    (cwd / "bench").mkdir(parents=True)
    marker = tmp_path / "stray-code-ran"
    for f in ("numpy.py", "bench/__init__.py", "runpy.py"):
        (cwd / f).write_text(f"open({str(marker)!r}, 'a').write({f!r} + '\\n')\nraise ImportError('stray')\n")
    monkeypatch.chdir(cwd)
    res = runner.run(["f_ok"], cpu_target, tmp_path / "o")
    assert [m.status for m in res.measurements] == ["ok"] * 3
    paths = distributed.launch(_rank_path, 1, target=cpu_target, timeout_s=120)
    assert str(cwd) not in paths and "" not in paths
    assert not marker.exists(), marker.read_text()


def _rank_path(info):
    return list(sys.path)


def test_8_a_run_with_failed_points_exits_non_zero_and_keeps_the_rest(tmp_path, fakes, capsys):
    fakes("f_ok", "f_raise")
    d = tmp_path / "d"
    code, out, err = rooflab(capsys, "run", "--device", "cpu", "--out", d)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert "1 point(s) failed" in line and f"rooflab run --resume {d} --retry-failed" in line, line
    assert "fake failure" in out  # the failure itself is named in the summary
    recs = meas.read(d / runner.MEASUREMENTS)
    assert sorted(m.status for m in recs) == ["failed"] + ["ok"] * 5
    assert prof.load(d / runner.PROFILE).run.points_failed == 1
    code, _, err = rooflab(capsys, "run", "--device", "cpu", "--only", "f_ok", "--out", tmp_path / "e")
    assert code == 0, err


# -- 9. data reaches the terminal as text: no markup, no control characters -------------------------------------


NASTY = "[/oops] [bold]x\x1b[31mred\nline\u202e"


def test_9_markup_and_control_characters_in_data_are_shown_as_text(tmp_path, capsys, fakes, cpu_target):
    spec = json.loads(prof.resolve_path("spec:h100-sxm").read_text())
    spec.update(name=NASTY)
    spec["device"]["name"] = NASTY
    p = tmp_path / "p.json"
    p.write_text(json.dumps(spec))
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"_name_or_path": NASTY, "model_type": "llama", "hidden_size": 4096,
                               "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                               "intermediate_size": 14336, "vocab_size": 128256}))  # a HF config.json
    for args in (["profile", "show", p], ["profile", "validate", p], ["roofline", "--gpu", p, "--model", cfg],
                 ["compare", p, "h200", "--model", cfg]):
        code, out, err = rooflab(capsys, *args)
        assert code == 0, err
        assert "[/oops] [bold]x" in out and "\x1b" not in out and "\u202e" not in out, out
        assert not any(line.endswith("x\\x1b[31mred") for line in out.splitlines())  # the name stays one line
    code, out, _ = rooflab(capsys, "profile", "validate", p)
    assert out.count("\n") == 1 and "\\x1b" in out and "\\n" in out
    # the summary of a resumed run, with a record's reason and impl from the file
    d = _finished_run(tmp_path, fakes, cpu_target)
    lines = _lines(d / runner.MEASUREMENTS)
    rec = json.loads(lines[0])
    rec.update(status="failed", reason=NASTY, impl=NASTY, timing=None, bandwidth_Bps=None)
    lines[0] = (json.dumps(rec) + "\n").encode()
    (d / runner.MEASUREMENTS).write_bytes(b"".join(lines))
    code, out, err = rooflab(capsys, "run", "--resume", d)
    assert code == 1, err  # the record says failed
    assert "[/oops] [bold]x" in out and "\x1b" not in out


# -- 10. a profile that validates evaluates --------------------------------------------------------------------


@pytest.mark.parametrize("path,value,needle", [
    (("peaks", "memory_bandwidth_Bps"), 5e-324, "memory_bandwidth_Bps"),
    (("peaks", "memory_bandwidth_Bps"), 1e16, "memory_bandwidth_Bps"),
    (("peaks", "matmul_flops", "bfloat16"), 5e-324, "matmul_flops"),
    (("peaks", "memory_bandwidth_Bps"), "42e9", "memory_bandwidth_Bps"),
    (("device", "memory_bytes"), "80000000000", "memory_bytes"),
    (("price", "usd_per_hour"), 5e-324, "usd_per_hour"),
    (("device", "boost_clock_Hz"), 1e-300, "boost_clock_Hz"),
])
def test_10_implausible_or_mistyped_numbers_are_refused(path, value, needle):
    doc = json.loads(prof.resolve_path("spec:h100-sxm").read_text())
    x = doc
    for k in path[:-1]:
        x = x[k]
    x[path[-1]] = value
    with pytest.raises(prof.ProfileError, match=needle):
        prof.validate(doc)


@pytest.mark.parametrize("path,value,needle", [
    (("telemetry", "power_limit_W"), "700", "power_limit_W"),
    (("telemetry", "sm_clock_Hz"), {"min": 1e-300, "median": 1.98e9, "max": 1.98e9}, "sm_clock_Hz"),
    (("telemetry", "power_W"), {"min": 100.0, "median": 300.0, "max": 1e12}, "power_W"),
    (("telemetry", "samples"), True, "samples"),
    (("telemetry", "peak_conditions"), {"copy": {"measurement": "copy", "throttled": "no"}}, "throttled"),
])
def test_10_telemetry_numbers_follow_the_same_rules(path, value, needle):
    doc = json.loads((TESTS / "fixtures" / "report" / "profile.json").read_text())
    doc["telemetry"].update(status="ok", points=3, samples=30)
    prof.validate(doc)
    doc[path[0]][path[1]] = value
    with pytest.raises(prof.ProfileError, match=needle):
        prof.validate(doc)


def test_10_booleans_are_booleans():
    doc = json.loads((TESTS / "fixtures" / "report" / "profile.json").read_text())
    doc["run"]["quick"] = "yes"
    with pytest.raises(prof.ProfileError, match="quick"):
        prof.validate(doc)


def test_10_a_profile_at_the_bounds_evaluates(tmp_path, capsys):
    """At the extremes the bounds allow, `roofline` and `compare` answer (exit 0) or say in one line why they
    cannot (exit 2); never a division by zero or a float overflow (exit 1)."""
    lo_bw, hi_bw = prof.unit_limits("memory_bandwidth_Bps")
    lo_fl, hi_fl = prof.unit_limits("matmul_flops")
    lo_usd, hi_usd = prof.unit_limits("usd_per_hour")
    for bw, fl, usd in ((lo_bw, hi_fl, lo_usd), (hi_bw, lo_fl, hi_usd), (lo_bw, lo_fl, lo_usd), (hi_bw, hi_fl, hi_usd)):
        doc = json.loads(prof.resolve_path("spec:h100-sxm").read_text())
        doc["peaks"]["memory_bandwidth_Bps"] = bw
        doc["peaks"]["matmul_flops"] = dict.fromkeys(doc["peaks"]["matmul_flops"], fl)
        doc["price"].update(usd_per_hour=usd, low_usd_per_hour=usd, high_usd_per_hour=usd)
        p = tmp_path / "edge.json"
        p.write_text(json.dumps(doc))
        prof.load(p)
        for args in (["roofline", "--gpu", p, "--model", "deepseek-v3", "--json"],
                     ["compare", p, "h200", "--model", "llama-3.1-8b", "--json"]):
            code, out, err = rooflab(capsys, *args)
            if code == 0:
                json.loads(out)
            else:
                one_line_error(code, err)


# -- 11. a read-only output folder is one line ---------------------------------------------------------------


def _read_only(d: Path, request) -> None:
    d.chmod(0o555)
    request.addfinalizer(lambda: d.chmod(0o755))
    probe = d / ".probe"
    try:
        probe.touch()
    except OSError:
        return
    probe.unlink()
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0:  # root ignores modes
        request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(d)], capture_output=True))
        try:
            probe.touch()
        except OSError:
            return
        probe.unlink()
    pytest.skip("cannot make a read-only folder here")


def test_11_a_read_only_output_folder_is_one_line(tmp_path, capsys, request):
    d = tmp_path / "ro"
    d.mkdir()
    _read_only(d, request)
    one_line_error(*rooflab(capsys, "run", "--device", "cpu", "--only", "overhead", "--out", d)[::2], str(d))


# -- 12. the smaller ones ---------------------------------------------------------------------------------------


def test_12_compare_plot_into_a_missing_folder_creates_nothing(tmp_path, capsys):
    code, _, err = rooflab(capsys, "compare", "h100-sxm", "h200", "--model", "llama-3.1-8b", "--plot",
                        tmp_path / "nonexistent" / "x.png")
    one_line_error(code, err, "--plot")
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize("opt", ["--tp", "--ep"])
def test_12_compare_tp_0_is_refused(capsys, opt):
    one_line_error(*rooflab(capsys, "compare", "h100-sxm", "--model", "llama-3.1-8b", opt, "0")[::2], opt)


def test_12_ranks_are_checked_against_the_cores(capsys, monkeypatch, cpu_target):
    why = distributed.check_ranks(cpu_target, 1000)
    assert why is not None and "cores" in why
    assert distributed.check_ranks(cpu_target, 2) is None
    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("nothing may run"))
    one_line_error(*rooflab(capsys, "run", "--device", "cpu", "--only", "a2a", "--ranks", "1000")[::2], "cores")


def test_12_a_measurements_symlink_is_never_followed(tmp_path, fakes, cpu_target):
    d = _finished_run(tmp_path, fakes, cpu_target)
    elsewhere = tmp_path / "elsewhere.jsonl"
    (d / runner.MEASUREMENTS).rename(elsewhere)
    (d / runner.MEASUREMENTS).symlink_to(elsewhere)
    before = elsewhere.read_bytes()
    with pytest.raises(RunError, match="symbolic link"):
        runner.run(["f_ok"], cpu_target, d, resume=True, isolate=False)
    with pytest.raises(OSError):
        meas.append(d / runner.MEASUREMENTS, meas.read(elsewhere, follow=True)[:1])
    assert elsewhere.read_bytes() == before


def test_12_a_killed_launch_leaves_no_temp_folder(tmp_path, monkeypatch, cpu_target):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"rooflab-dist-{dead.pid}-abc"  # what a SIGKILLed launch leaves behind
    stale.mkdir()
    (stale / "payload.pkl").write_bytes(b"pickle")
    alive = tmp_path / f"rooflab-dist-{os.getpid()}-xyz"  # a launch still running: not touched
    alive.mkdir()
    with pytest.raises(distributed.DistributedError, match="cannot send"):
        distributed.launch(lambda info: 1, 1, target=cpu_target)  # not picklable: fails before any rank starts
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name]


def test_12_a_killed_launch_is_swept_by_the_next(tmp_path, monkeypatch, cpu_target):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    code = textwrap.dedent(f"""
        import sys, tempfile, time
        sys.path[:0] = [{str(TESTS)!r}]
        tempfile.tempdir = {str(tmp_path)!r}
        from bench import distributed, target
        import test_safety
        distributed.launch(test_safety._rank_sleeps, 1, target=target.configure("cpu"), timeout_s=300)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("rooflab-dist-*/rank0.log")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert list(tmp_path.glob("rooflab-dist-*"))
    assert distributed.launch(_rank_path, 1, target=cpu_target, timeout_s=120)
    assert not list(tmp_path.glob("rooflab-dist-*"))


def _rank_sleeps(info):
    time.sleep(300)


def test_12_retry_failed_measures_a_crashed_point_again(tmp_path, fakes, monkeypatch, capsys, cpu_target):
    fakes("f_die_once")
    monkeypatch.setenv("ROOFLAB_FAKE_MARKERS", str(tmp_path))
    d = tmp_path / "d"
    res = runner.run(["f_die_once"], cpu_target, d)
    (crashed,) = [m for m in res.measurements if m.status == "failed"]
    assert crashed.reason.startswith("worker crashed")
    assert runner.run(["f_die_once"], cpu_target, d, resume=True).measurements == res.measurements  # kept
    one_line_error(*rooflab(capsys, "run", "--retry-failed", "--out", tmp_path / "x")[::2], "--retry-failed")
    code, _, err = rooflab(capsys, "run", "--resume", d, "--retry-failed", "--json")
    assert code == 0, err
    recs = meas.read(d / runner.MEASUREMENTS)
    assert [(m.params["i"], m.status) for m in sorted(recs, key=lambda m: m.params["i"])] == \
        [(0, "ok"), (1, "ok"), (2, "ok")]
