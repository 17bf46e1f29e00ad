import json

import pytest

from bench import measurement as M
from bench.timing import summarize


def _timing(median=0.5):
    return summarize([median] * 5, "perf_counter")


def test_derived_rates_from_stated_counts():
    m = M.measured(benchmark="hbm", kernel="copy", impl="torch", params={"n": 1}, mode="cpu", device="x",
                   timing=_timing(0.5), bytes=1000, flop_count=4000, check=M.Check(passed=True))
    assert m.bandwidth_Bps == pytest.approx(2000.0)
    assert m.flops == pytest.approx(8000.0)
    assert m.ok and m.timed


def test_failed_check_yields_no_number():
    m = M.measured(benchmark="hbm", kernel="copy", impl="triton", params={}, mode="cuda", device="x",
                   timing=_timing(), bytes=1000, check=M.Check(passed=False, rel_err=0.5, detail="bad"))
    assert m.status == "failed" and m.timing is None and m.bandwidth_Bps is None
    assert "correctness" in m.reason and not m.timed


def test_interpreter_records_carry_no_timing():
    with pytest.raises(ValueError):
        M.measured(benchmark="hbm", kernel="copy", impl="triton", params={}, mode="interpreter", device="x",
                   timing=_timing(), bytes=10)
    m = M.measured(benchmark="hbm", kernel="copy", impl="triton", params={}, mode="interpreter", device="x",
                   timing=None, bytes=10, check=M.Check(passed=True))
    assert m.ok and not m.timed and m.bandwidth_Bps is None


def test_point_key_is_order_independent():
    assert M.point_key("hbm", {"a": 1, "b": "x"}) == M.point_key("hbm", {"b": "x", "a": 1})
    assert M.point_key("hbm", {"a": 1}) != M.point_key("gemm", {"a": 1})


def test_jsonl_append_read_and_torn_line(tmp_path):
    p = tmp_path / "m.jsonl"
    recs = [M.measured(benchmark="hbm", kernel="copy", impl="torch", params={"i": i}, mode="cpu", device="x",
                       timing=_timing(), bytes=8) for i in range(3)]
    M.append(p, recs[:2])
    with open(p, "a") as f:  # a kill in the middle of a write leaves half a line
        f.write(json.dumps(recs[2].model_dump(mode="json"))[:40])
    got = M.read(p)
    assert [r.params["i"] for r in got] == [0, 1]
    M.append(p, recs[2:])  # the next append starts on a fresh line
    got = M.read(p)
    assert [r.params["i"] for r in got] == [0, 1, 2]


def test_read_missing_file_is_empty(tmp_path):
    assert M.read(tmp_path / "nope.jsonl") == []


def test_non_finite_values_stored_as_null(tmp_path):
    p = tmp_path / "m.jsonl"
    m = M.Measurement(benchmark="b", kernel="k", impl="i", mode="cpu", extra={"x": float("nan")})
    M.append(p, [m])
    assert json.loads(p.read_text())["extra"]["x"] is None


def test_not_measured_is_a_record_without_numbers():
    m = M.not_measured(benchmark="b", params={"n": 1}, mode="cpu", device="x", reason="no GPU")
    assert (m.status, m.reason, m.kernel, m.impl) == ("skipped", "no GPU", "*", "*")
    assert m.timing is None and m.bandwidth_Bps is None and not m.ok and m.extra == {}
    f = M.not_measured(benchmark="b", kernel="k", impl="torch", params={}, mode="cuda", device="x",
                       reason="broke", status="failed", extra={"library": "cuBLAS"})
    assert f.status == "failed" and f.extra == {"library": "cuBLAS"}
