"""Reports: Markdown + self-contained HTML + PNGs from a CPU-mode run and from the committed fixture,
reproducible from measurements.jsonl + profile.json alone, escaping every text, and saying "not measured"
for what was not measured instead of failing."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_plots import FIXTURE, gpu_like

from bench import measurement as M
from bench import profile as P
from bench import runner
from bench.report import build
from bench.report import data as D
from bench.report import html as H
from bench.report import markdown as MD

EVIL = '<script>alert("x")</script> & <img src="http://evil.example/x.png"> | *bold* [a](https://evil.example)'


def rooflab(*args):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300)


def assert_self_contained(page: str) -> None:
    """No script, no stylesheet link, no frame, and no URL other than embedded images and in-page anchors."""
    low = page.lower()
    assert "<script" not in low and "<link" not in low and "<iframe" not in low and "<object" not in low
    assert "@import" not in low and "url(" not in low
    for attr, url in re.findall(r'\b(src|href|action|poster)\s*=\s*"([^"]*)"', page, flags=re.I):
        assert url.startswith("data:image/png;base64,") if attr.lower() == "src" else url.startswith("#"), url
    assert not re.search(r"(src|href)\s*=\s*'", page, flags=re.I)


def _sections(md: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", md, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_cpu_run_writes_both_reports_and_plots_reproducibly(tmp_path, small_cpu_target):
    out = tmp_path / "run"
    runner.run(["hbm"], small_cpu_target, out, min_time_s=0.001)
    for f in ("report.md", "report.html", "plots/roofline.png", "plots/cache_cliff.png"):
        assert (out / f).stat().st_size > 500, f
    assert not (out / "plots" / "matmul.png").exists()  # nothing measured, nothing drawn
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    secs = _sections(md)
    assert "![roofline chart](plots/roofline.png)" in secs["Roofline"]
    assert "plots/cache_cliff.png" in secs["Memory bandwidth"] and "Peak memory bandwidth" in md
    for name in ("Matmul", "Decode attention", "All-to-all"):
        assert "not measured" in secs[name], name
    assert "No spec profile" in secs["Spec vs measured"]
    assert_self_contained(page)
    assert page.count('src="data:image/png;base64,') == 2
    # the same files again from measurements.jsonl + profile.json alone, as `rooflab report` makes them
    again = tmp_path / "again"
    again.mkdir()
    for f in ("measurements.jsonl", "profile.json"):
        shutil.copy(out / f, again / f)
    p, recs, _ = build.load_run(again)
    build.write(again, p, recs)
    assert (again / "report.md").read_text() == md
    assert (again / "report.html").read_text() == page
    assert (again / "plots" / "roofline.png").read_bytes() == (out / "plots" / "roofline.png").read_bytes()


def test_cli_report_from_the_committed_fixture(tmp_path):
    before = sorted(x.name for x in FIXTURE.iterdir())
    r = rooflab("report", str(FIXTURE), "--html", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert sorted(x.name for x in FIXTURE.iterdir()) == before  # --out: the fixture is only read
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    prof = P.load(FIXTURE / "profile.json")
    assert prof.device.name in md and "Peak memory bandwidth" in md and "CPU mode" in md
    assert_self_contained(page)
    pngs = sorted(x.name for x in (tmp_path / "plots").iterdir())
    assert pngs == ["cache_cliff.png", "decode.png", "matmul.png", "roofline.png"]  # what the fixture measured
    assert page.count("<img ") == len(pngs)
    assert "not measured" in _sections(md)["All-to-all"]
    # without --html only the Markdown and the plots
    r = rooflab("report", str(FIXTURE / "profile.json"), "--out", str(tmp_path / "md"), "--json")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "md" / "report.md").exists() and not (tmp_path / "md" / "report.html").exists()
    assert '"matmul": "ok"' in r.stdout and '"all_to_all": "not measured"' in r.stdout


def _evil_profile() -> tuple[P.Profile, list[M.Measurement]]:
    p = P.load(FIXTURE / "profile.json")
    p = p.model_copy(update={"name": EVIL, "device": p.device.model_copy(update={"name": EVIL})})
    recs = M.read(FIXTURE / "measurements.jsonl")
    recs.append(M.Measurement(benchmark="hbm", kernel="copy", impl="torch", params={"note": EVIL}, status="failed",
                              reason=EVIL, mode="cpu"))
    return p, recs


def test_html_escapes_every_text_and_stays_self_contained():
    p, recs = _evil_profile()
    rd = gpu_like(D.build(p, recs))
    rd.health = [{"check": EVIL, "status": "FAIL", "reason": EVIL}]
    rd.telemetry = {EVIL: EVIL}
    page = H.render(p, recs, plots={"roofline": b"\x89PNG fake"}, rd=rd)
    assert_self_contained(page)
    assert "evil.example" in page  # the text is there, inert
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 5  # title, device, failure, health...
    assert "<img src=" not in page


def test_markdown_escapes_every_text():
    p, recs = _evil_profile()
    md = MD.render(p, recs)
    assert "<script" not in md and "<img" not in md and not re.search(r"(?<!\\)\]\(https", md)
    assert "&lt;script&gt;" in md
    env = _sections(md)["Environment and provenance"]
    device_row = next(line for line in env.splitlines() if line.startswith("| device |"))
    assert len(re.findall(r"(?<!\\)\|", device_row)) == 3  # the name's "|" cannot add a column


def test_missing_sections_render_not_measured(tmp_path):
    p = P.Profile(name="bare", device=P.DeviceInfo(name="bare device", backend="cuda"))  # no run, peaks, curves
    w = build.write(tmp_path, p, [])
    assert all(v == "not measured" for v in w.plots.values())
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    secs = _sections(md)
    for name in ("Summary", "Roofline", "Memory bandwidth", "Matmul", "Decode attention", "All-to-all"):
        assert "not measured" in secs[name], name
    assert "not available" in secs["Inference: throughput vs interactivity"]
    assert "no health verdict" in secs["Spec vs measured"]
    assert page.count('class="missing"') >= 8 and "<img" not in page
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())


def test_loose_or_odd_curve_points_are_refused_by_the_profile_not_fatal():
    """Curve points are typed (bench/profile/schema.py): a loose or odd point is refused in one line when the profile
    is read, so a report only ever sees whole points, read by their field names."""
    doc = json.loads((FIXTURE / "profile.json").read_text())
    odd = [("matmul", {}), ("matmul", {"M": "x", "N": 2, "K": 3, "flops": 1.0}),
           ("matmul", {"M": 2, "N": 2, "K": 2, "flops": float("nan")}),
           ("matmul", {"m": 4, "n": 5, "k": 6, "flops": 1e12, "dtype": "bfloat16"}),
           ("decode", {"batch": 8, "context": None, "bandwidth_Bps": 1e12}), ("decode", {"batch": True}),
           ("all_to_all", {"message_bytes": 1024, "world_size": 4, "busbw_Bps": 1e9}), ("all_to_all", [1])]
    for curve, point in odd:
        bad = json.loads(json.dumps(doc))
        bad["curves"][curve] = [point]
        with pytest.raises(P.ProfileError, match=f"curves.{curve}") as e:
            P.validate(bad)
        assert "\n" not in str(e.value)
    mm = P.MatmulPoint(family="llm", M=4, N=5, K=6, dtype="bfloat16", impl="torch", library="cuBLAS", flops=1e12,
                       median_s=1e-6, p10_s=1e-6, p90_s=1e-6, bytes=100, efficiency=0.5)
    assert D._matmul([mm]) == [D.MatmulRow(4, 5, 6, "bfloat16", "torch", 1e12, "", 0.5, "llm")]
    a2a = P.AllToAllPoint(world_size=4, backend="nccl", message_bytes=1024, algbw_Bps=4e9 / 3, busbw_Bps=1e9,
                          median_s=1e-6, p10_s=1e-6, p90_s=1e-6)
    assert [a.world_size for a in D._a2a([a2a])] == [4]


def test_gpu_like_report_has_every_section(tmp_path):
    rd = gpu_like()
    rd.health = [{"check": "HBM bandwidth", "status": "PASS", "value": 3.1e12, "reason": "93% of spec"}]
    rd.telemetry = {"status": "ok", "points": 40, "sm_clock_Hz": {"min": 1.755e9, "median": 1.98e9, "max": 1.98e9},
                    "power_W": {"min": 80.0, "median": 650.0, "max": 699.0},
                    "clocks_event_share": {"sw_power_cap": 0.25},
                    "peak_conditions": {"matmul_flops.bfloat16": {
                        "measurement": "gemm torch 8192³", "throttled": True, "throttle_reasons": ["sw_power_cap"],
                        "sm_clock_Hz": {"min": 1.6e9, "median": 1.7e9, "max": 1.98e9}}}}
    rd.throttled = ["gemm {'M': 8192}: sw_power_cap"]
    w = build.write(tmp_path, rd.profile, rd.records, rd=rd)
    assert set(w.plots.values()) == {"ok"} and len(w.plots) == 7
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    for name in w.plots:
        assert f"(plots/{name}.png)" in md
    assert page.count('src="data:image/png;base64,') == 7
    assert_self_contained(page)
    secs = _sections(md)
    assert "| HBM bandwidth | PASS |" in secs["Spec vs measured"]
    env = secs["Environment and provenance"]
    assert "| sm\\_clock\\_Hz | 1755 MHz | 1980 MHz | 1980 MHz |" in env
    assert "| clocks\\_event\\_share.sw\\_power\\_cap | 25% |" in env
    assert "| matmul\\_flops.bfloat16 | gemm torch 8192³ | 1700 MHz | – | – | sw\\_power\\_cap |" in env
    assert "throttling" in env and "- gemm {'M': 8192}: sw\\_power\\_cap" in env
    assert "| h200 (spec) |" in secs["Inference: throughput vs interactivity"]


@pytest.mark.parametrize("args,needle", [
    (["report", "/nonexistent/run"], "does not exist"),
    (["report", str(FIXTURE), "--price", "h100-sxm"], "--price"),
    (["report", str(FIXTURE), "--price", "h100-sxm=-3"], "--price"),
    (["report", str(FIXTURE), "--context", "0"], "--context"),
    (["report", str(FIXTURE / "README.md")], "not valid JSON"),
])
def test_report_bad_input_is_one_line_exit_2(args, needle):
    r = rooflab(*args)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_report_out_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = rooflab("report", str(FIXTURE), "--out", str(f))
    assert r.returncode == 2 and "not a directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _gpu_named_run(tmp_path: Path) -> Path:
    """The fixture's profile under an H100's device name (its numbers stay CPU numbers): enough to exercise the
    spec lookup, the spec roofs and the inference section end to end without a GPU."""
    d = json.loads((FIXTURE / "profile.json").read_text())
    d["device"].update(backend="cuda", name="NVIDIA H100 80GB HBM3")
    d["run"]["mode"] = "cuda"
    run = tmp_path / "h100"
    run.mkdir()
    (run / "profile.json").write_text(json.dumps(d))
    shutil.copy(FIXTURE / "measurements.jsonl", run / "measurements.jsonl")
    return run


def test_spec_of_the_card_and_the_inference_frontier(tmp_path):
    run = _gpu_named_run(tmp_path)
    r = rooflab("report", str(run), "--html", "--cards", "h200", "--price", "h200=4.5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["plots"]["spec_vs_measured"] == "ok" and out["plots"]["pareto"] == "ok"
    md = (run / "report.md").read_text()
    secs = _sections(md)
    assert "Compared with the spec profile h100-sxm" in secs["Spec vs measured"]
    assert "| memory bandwidth (best kernel) |" in secs["Spec vs measured"]
    assert "| matmul tf32 | not measured | 495 TFLOP/s |" in secs["Spec vs measured"]  # no TF32 on a CPU
    inf = secs["Inference: throughput vs interactivity"]
    for label in ("h100-sxm (measured)", "h100-sxm (spec)", "h200 (published)"):  # a bare name: the most real
        assert f"| {label} |" in inf, label
    assert "h200 $4.50" in inf
    assert_self_contained((run / "report.html").read_text())

    p, recs, _ = build.load_run(run)
    rd = build.report_data(p, recs, cards=["h200"])
    assert rd.spec_name == "h100-sxm" and rd.spec_memory_Bps == P.resolve("spec:h100-sxm").peaks.memory_bandwidth_Bps
    for c in rd.pareto.curves:  # a frontier: giving up speed per user always buys throughput per GPU
        xs = [q["tokens_per_s_per_user"] for q in c.points]
        ys = [q["tokens_per_s_per_gpu"] for q in c.points]
        assert len(xs) >= 3 and xs == sorted(xs, reverse=True) and ys == sorted(ys), c.label
    # a merged profile's published and spec numbers are not drawn as measured roofs
    merged = P.merge(p, P.resolve("h100-sxm"))  # the published profile, completed by the sheet
    rdm = D.build(merged, recs)
    assert set(merged.peaks.matmul_flops) > set(p.peaks.matmul_flops)  # published and spec filled tf32, fp8, ...
    assert rdm.compute_roofs == p.peaks.matmul_flops
    assert rdm.measured_memory_Bps == p.peaks.memory_bandwidth_Bps


def test_compare_plot(tmp_path):
    png = tmp_path / "cmp.png"
    r = rooflab("compare", "h100-sxm", "h200", "--model", "llama-3.1-8b", "--plot", str(png), "--price", "h200=4")
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = rooflab("compare", "h100-sxm", "h200", "--model", "llama-3.1-8b", "--plot", str(tmp_path / "cmp.pdf"))
    assert r.returncode == 2 and "--plot" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_report_unknown_model_or_card_is_exit_2(tmp_path):
    for args, needle in ((["--model", "no-such-model"], "unknown model"),
                         (["--cards", "no-such-card"], "unknown profile")):
        r = rooflab("report", str(FIXTURE), "--out", str(tmp_path), *args)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
