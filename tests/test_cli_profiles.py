"""`rooflab profile list|show|validate|schema`, `rooflab roofline`, `rooflab compare`: one JSON object with --json,
one-line errors with exit 2."""
import json

import pytest
from _cli import one_line_error, rooflab
from _pins import at_pinned_version

from bench import profile as prof


def test_profile_list_json(capsys):
    code, out, _ = rooflab(capsys, "profile", "list", "--json")
    assert code == 0
    d = json.loads(out)
    names = {p["name"] for p in d["profiles"]}
    assert {"h100-sxm", "mi300x", "rtx-5090"} <= names
    h = next(p for p in d["profiles"] if p["name"] == "h100-sxm")
    assert h["kind"] == "spec" and h["memory_bandwidth_Bps"] == 3.35e12
    code, out, _ = rooflab(capsys, "profile", "list")
    assert code == 0 and "h100-sxm" in out and "3.35 TB/s" in out


def test_profile_show_name_and_path(capsys, tmp_path):
    code, out, _ = rooflab(capsys, "profile", "show", "h200", "--json")
    assert code == 0 and prof.validate(json.loads(out)).card == "h200"
    code, out, _ = rooflab(capsys, "profile", "show", str(prof.resolve_path("l4")))
    assert code == 0 and "NVIDIA L4" in out and "NVIDIA L4 datasheet" in out
    m = tmp_path / "m.json"
    dev = prof.DeviceInfo(name="NVIDIA H100 80GB HBM3", backend="cuda", memory_bytes=85 * 10**9)
    prof.save(prof.Profile(name="mine", device=dev, peaks=prof.Peaks(memory_bandwidth_Bps=3.0e12,
                                                                matmul_flops={"bfloat16": 8e14})), m)
    code, out, _ = rooflab(capsys, "profile", "show", str(m), "--merged", "--json")
    d = json.loads(out)
    assert code == 0 and d["provenance"]["peaks.memory_bandwidth_Bps"] == "measured"
    # measured > published > spec, number by number
    assert d["provenance"]["interconnect.scale_up_Bps"] == "published" and d["card"] == "h100-sxm"
    assert d["provenance"]["interconnect.scale_up_domain"] == "spec"


def test_profile_validate(capsys, tmp_path):
    code, out, _ = rooflab(capsys, "profile", "validate", str(prof.resolve_path("b200")))
    assert code == 0 and out.startswith("ok: ")
    bad = json.loads(prof.resolve_path("b200").read_text())
    bad["peaks"]["memory_bandwidth_Bps"] = -1
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    one_line_error(*rooflab(capsys, "profile", "validate", str(f))[::2], "memory_bandwidth_Bps")
    f.write_text("{oops")
    one_line_error(*rooflab(capsys, "profile", "validate", str(f))[::2], "not valid JSON")
    f.write_text(json.dumps({**bad, "schema_version": 7}))
    one_line_error(*rooflab(capsys, "profile", "validate", str(f))[::2], "schema_version 7")
    one_line_error(*rooflab(capsys, "profile", "validate", str(tmp_path / "missing.json"))[::2], "cannot read")


def test_profile_schema_prints_the_committed_schema(capsys):
    code, out, _ = rooflab(capsys, "profile", "schema")
    printed, committed = json.loads(out), json.loads(prof.schema_path().read_text())
    assert code == 0 and prof.schema_shape(printed) == prof.schema_shape(committed)
    if at_pinned_version("pydantic"):  # byte for byte only where the same pydantic rendered both
        assert printed == committed


def test_roofline_json_is_one_object(capsys):
    code, out, _ = rooflab(capsys, "roofline", "--gpu", "spec:h100-sxm", "--model", "llama-3.1-8b", "--batch", "1,8,64",
                           "--context", "2048", "--price", "2", "--prompt", "512", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["gpu"] == "h100-sxm" and d["model"] == "llama-3.1-8b" and d["price_usd_per_hour"] == 2
    assert d["optimal_batch"] == pytest.approx(989.4 / 3.35, rel=1e-6)
    assert [r["batch"] for r in d["rows"]] == [1, 8, 64]
    r1 = d["rows"][0]
    assert r1["bound"] == "memory" and r1["step_time_s"] >= d["latency_floor_s"]
    assert r1["usd_per_mtok"] == pytest.approx(2 / 3600 / r1["tokens_per_s"] * 1e6)
    assert d["prefill"]["prompt_tokens"] == 512


def test_roofline_table_and_moe(capsys):
    code, out, _ = rooflab(capsys, "roofline", "--gpu", "h200", "--model", "deepseek-v3", "--ep", "8",
                           "--batch", "1,64", "--context", "4096")
    assert code == 0 and "deepseek-v3 on h200" in out and "memory" in out


@pytest.mark.parametrize("args,needle", [
    (["roofline", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--batch", "0"], "--batch"),
    (["roofline", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--batch", "a,b"], "--batch"),
    (["roofline", "--gpu", "h999", "--model", "llama-3.1-8b"], "unknown profile"),
    (["roofline", "--gpu", "h100-sxm", "--model", "llama-9"], "unknown model"),
    (["roofline", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--ep", "4"], "dense"),
    (["roofline", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--price", "-3"], "--price"),
    (["roofline", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--context", "-1"], "--context"),
    (["roofline", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--kv-dtype", "fp7"], "unknown dtype"),
    (["roofline", "--gpu", "h100-sxm"], "--model"),
    (["compare", "h100-sxm", "--model", "llama-3.1-8b", "--price", "h200=2"], "not among"),
    (["compare", "h100-sxm", "--model", "llama-3.1-8b", "--price", "h100-sxm=x"], "--price"),
    (["profile", "show", "nope"], "unknown profile"),
])
def test_bad_input_one_line_exit_2(capsys, args, needle):
    code, _, err = rooflab(capsys, *args)
    one_line_error(code, err, needle)


def test_compare_json(capsys):
    code, out, _ = rooflab(capsys, "compare", "h100-sxm", "h200", "mi300x", "--model", "llama-3.1-70b",
                           "--context", "4096", "--target-tokens-per-user", "20", "--price", "h200=3", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["model"] == "llama-3.1-70b" and [r["gpu"] for r in d["rows"]] == ["h100-sxm", "h200", "mi300x"]
    for r in d["rows"]:
        assert r["meets_target"] and r["tokens_per_s_per_user"] >= 20 and r["bound"] in ("memory", "compute",
                                                                                           "communication")
        assert r["max_batch"] >= r["batch"] >= 1
    assert d["rows"][1]["price_usd_per_hour"] == 3
    code, out, _ = rooflab(capsys, "compare", "h100-sxm", "l40s", "--model", "mixtral-8x7b")
    assert code == 0 and "l40s" in out and "$/Mtok" in out
