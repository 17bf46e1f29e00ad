"""The spec-sheet verdict: card checks against the spec sheet, kernel checks against the trusted library."""
from __future__ import annotations

import pytest

from bench import profile as P
from bench import verdict as V

SPEC = P.resolve("spec:h100-sxm")
GB, TF = 1e9, 1e12


def _hbm(op, impl, bw, ws=8 * GB, beyond=True):
    return {"op": op, "impl": impl, "dtype": "float32", "working_set_bytes": int(ws), "bandwidth_Bps": bw,
            "median_s": ws / bw, "p10_s": ws / bw, "p90_s": ws / bw, "beyond_cache": beyond}


def _mm(impl, flops, n=8192):
    t = 2 * n ** 3 / flops
    return {"family": "square", "M": n, "N": n, "K": n, "dtype": "bfloat16", "impl": impl, "library": impl,
            "flops": flops, "median_s": t, "p10_s": t, "p90_s": t, "bytes": 6 * n * n, "efficiency": 0.8}


def _dec(impl, bw, **over):
    pt = dict(V.DECODE_POINT, **over)
    nbytes = 2 * pt["batch"] * pt["context"] * pt["kv_heads"] * pt["head_dim"] * 2
    t = nbytes / bw
    return {"model": "llama-3.1-8b", "impl": impl, "layout": "contiguous", **pt, "bytes": nbytes,
            "bandwidth_Bps": bw, "flops": 1e9, "median_s": t, "p10_s": t, "p90_s": t, "time_per_token_s": t / 64}


def _gpu_profile(*, best=3.15e12, copy=2.95e12, hbm=(), mm=(), dec=(), bf16=800 * TF, backend="cuda"):
    peaks = {"memory_bandwidth_Bps": best, "copy_bandwidth_Bps": copy, "matmul_flops": {"bfloat16": bf16}}
    return P.validate({
        "schema_version": P.SCHEMA_VERSION, "name": "t", "device": {"name": "NVIDIA H100 80GB HBM3",
                                                                    "backend": backend},
        "peaks": peaks, "curves": {"hbm": list(hbm), "matmul": list(mm), "decode": list(dec)}})


def _by_name(checks):
    return {c.name: c for c in checks}


def test_healthy_h100_passes_every_check():
    prof = _gpu_profile(hbm=[_hbm("copy", "torch", 2.90e12), _hbm("copy", "triton", 2.95e12)],
                        mm=[_mm("torch", 800 * TF), _mm("triton", 720 * TF)],
                        dec=[_dec("triton", 2.6e12), _dec("torch_sdpa", 1.5e12)])
    c = _by_name(V.evaluate(prof, SPEC))
    best = c["memory bandwidth, best kernel"]
    assert best.status == "pass" and best.ratio == pytest.approx(3.15e12 / 3.35e12)
    assert c["memory bandwidth, copy"].status == "pass"
    assert c["matmul bfloat16"].status == "pass" and c["matmul bfloat16"].ratio == pytest.approx(800 / 989.4)
    assert c["Triton copy vs torch copy_"].ratio == pytest.approx(2.95 / 2.90)
    assert c["Triton bf16 matmul vs cuBLAS"].ratio == pytest.approx(0.9)
    assert c["Triton decode attention vs measured copy"].ratio == pytest.approx(2.6 / 2.95)
    sd = c["Triton decode attention vs SDPA"]
    assert sd.status == "pass" and sd.ratio == pytest.approx(2.6 / 1.5)
    # fp16 and fp8 were not measured in this profile: n/a, not a pass
    assert c["matmul float16"].status == "n/a" and "not measured" in c["matmul float16"].detail
    assert V.summary(list(c.values())).startswith("card: PASS (3/3")


def test_bands_warn_and_fail_and_kernel_miss():
    # 0.85 x spec: under 0.92 but within 0.8 x 0.92 -> warn; 0.6 x spec -> fail
    prof = _gpu_profile(best=0.85 * 3.35e12, copy=0.6 * 3.35e12,
                        hbm=[_hbm("copy", "torch", 2.9e12), _hbm("copy", "triton", 2.7e12),
                             _hbm("copy", "triton", 3.2e12, ws=1e6, beyond=False)],  # in-cache: ignored
                        mm=[_mm("torch", 800 * TF), _mm("triton", 600 * TF)],
                        dec=[_dec("triton", 1.0e12), _dec("torch_sdpa", 1.5e12),
                             _dec("triton", 3.0e12, batch=1)])  # another point: not the reference one
    c = _by_name(V.evaluate(prof, SPEC))
    assert c["memory bandwidth, best kernel"].status == "warn"
    assert c["memory bandwidth, copy"].status == "fail"
    assert c["Triton copy vs torch copy_"].status == "miss"
    assert c["Triton copy vs torch copy_"].ratio == pytest.approx(2.7 / 2.9)
    assert c["Triton bf16 matmul vs cuBLAS"].status == "miss"
    assert c["Triton decode attention vs measured copy"].ratio == pytest.approx(1.0 / 2.01)
    assert c["Triton decode attention vs SDPA"].status == "miss"
    s = V.summary(list(c.values()))
    assert s.startswith("card: FAIL") and "kernels: 0/4" in s


def test_cpu_profile_gets_no_verdict_and_says_why():
    prof = P.load("tests/fixtures/report/profile.json")
    checks = V.evaluate(prof, None)
    assert all(c.status == "n/a" for c in checks)
    assert any("CPU mode" in c.detail for c in checks if c.kind == "card")
    assert all("interpreter" in c.detail for c in checks if c.kind == "kernel")
    assert V.summary(checks) == "card: no verdict; kernels: no verdict"


def test_gpu_profile_without_spec_or_points_names_what_is_missing():
    checks = _by_name(V.evaluate(_gpu_profile(), None))
    assert checks["memory bandwidth, best kernel"].status == "n/a"
    assert "--spec" in checks["memory bandwidth, best kernel"].detail
    assert "Triton decode point" in checks["Triton decode attention vs measured copy"].detail


def test_report_shows_the_verdict_table():
    from bench.report import data, markdown

    prof = _gpu_profile(hbm=[_hbm("copy", "torch", 2.90e12), _hbm("copy", "triton", 2.95e12)],
                        mm=[_mm("torch", 800 * TF), _mm("triton", 600 * TF)])
    md = markdown.render(prof, [], rd=data.build(prof, [], spec=SPEC, spec_name="h100-sxm"))
    sect = md.split("## Verdict", 1)[1].split("\n## ", 1)[0]
    assert "card: PASS (3/3 at spec targets); kernels: 1/2 reach their targets" in sect
    row = next(line for line in sect.splitlines() if "Triton bf16 matmul vs cuBLAS" in line)
    assert "MISS" in row and "| 75% |" in row and "≥ 85%" in row
    assert "| n/a |" in next(line for line in sect.splitlines() if "matmul float16" in line)


def test_run_summary_prints_the_verdict_lines():
    from rich.console import Console

    from bench import cli

    prof = _gpu_profile(hbm=[_hbm("copy", "torch", 2.90e12), _hbm("copy", "triton", 2.95e12)])
    prof = prof.model_copy(update={"card": "h100-sxm"})
    con = Console(record=True, width=200)
    cli.run._verdict(con, prof)
    out = con.export_text()
    assert "verdict: card: PASS (3/3 at spec targets); kernels: 1/1 reach their targets" in out
    assert "PASS memory bandwidth, best kernel: 94.0% (needs 92%)" in out
    assert "decode" not in out  # n/a checks are left out of the terminal summary
