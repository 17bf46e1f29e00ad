import json

import pytest

from bench import measurement
from bench.timing import summarize


def _timing(median=0.5):
    return summarize([median] * 5, "perf_counter")


def test_derived_rates_from_stated_counts():
    m = measurement.measured(benchmark="hbm", kernel="copy", impl="torch", params={"n": 1}, mode="cpu", device="x",
                             timing=_timing(0.5), bytes=1000, flop_count=4000, check=measurement.Check(passed=True))
    assert m.bandwidth_Bps == pytest.approx(2000.0)
    assert m.flops == pytest.approx(8000.0)
    assert m.ok and m.timed


def test_failed_check_yields_no_number():
    bad = measurement.Check(passed=False, rel_err=0.5, detail="bad")
    m = measurement.measured(benchmark="hbm", kernel="copy", impl="triton", params={}, mode="cuda", device="x",
                             timing=_timing(), bytes=1000, check=bad)
    assert m.status == "failed" and m.timing is None and m.bandwidth_Bps is None
    assert "correctness" in m.reason and not m.timed


def test_interpreter_records_carry_no_timing():
    with pytest.raises(ValueError):
        measurement.measured(benchmark="hbm", kernel="copy", impl="triton", params={}, mode="interpreter", device="x",
                             timing=_timing(), bytes=10)
    m = measurement.measured(benchmark="hbm", kernel="copy", impl="triton", params={}, mode="interpreter", device="x",
                             timing=None, bytes=10, check=measurement.Check(passed=True))
    assert m.ok and not m.timed and m.bandwidth_Bps is None


def test_point_key_is_order_independent():
    assert measurement.point_key("hbm", {"a": 1, "b": "x"}) == measurement.point_key("hbm", {"b": "x", "a": 1})
    assert measurement.point_key("hbm", {"a": 1}) != measurement.point_key("gemm", {"a": 1})


def test_jsonl_append_read_and_torn_line(tmp_path):
    p = tmp_path / "m.jsonl"
    recs = [measurement.measured(benchmark="hbm", kernel="copy", impl="torch", params={"i": i}, mode="cpu", device="x",
                                 timing=_timing(), bytes=8) for i in range(3)]
    measurement.append(p, recs[:2])
    with open(p, "a") as f:  # a kill in the middle of a write leaves half a line
        f.write(json.dumps(recs[2].model_dump(mode="json"))[:40])
    got = measurement.read(p)
    assert [r.params["i"] for r in got] == [0, 1]
    measurement.append(p, recs[2:])  # the next append starts on a fresh line
    got = measurement.read(p)
    assert [r.params["i"] for r in got] == [0, 1, 2]


def test_read_missing_file_is_empty(tmp_path):
    assert measurement.read(tmp_path / "nope.jsonl") == []


def test_non_finite_values_stored_as_null(tmp_path):
    p = tmp_path / "m.jsonl"
    m = measurement.Measurement(benchmark="b", kernel="k", impl="i", mode="cpu", extra={"x": float("nan")})
    measurement.append(p, [m])
    assert json.loads(p.read_text())["extra"]["x"] is None


def test_not_measured_is_a_record_without_numbers():
    m = measurement.not_measured(benchmark="b", params={"n": 1}, mode="cpu", device="x", reason="no GPU")
    assert (m.status, m.reason, m.kernel, m.impl) == ("skipped", "no GPU", "*", "*")
    assert m.timing is None and m.bandwidth_Bps is None and not m.ok and m.extra == {}
    f = measurement.not_measured(benchmark="b", kernel="k", impl="torch", params={}, mode="cuda", device="x",
                                 reason="broke", status="failed", extra={"library": "cuBLAS"})
    assert f.status == "failed" and f.extra == {"library": "cuBLAS"}


def test_int_param_is_typed_and_strict():
    m = measurement.Measurement(benchmark="hbm", kernel="copy", impl="torch", mode="cpu",
                                params={"size_bytes": 4096, "dtype": "float32", "flag": True, "x": 1.5})
    assert m.int_param("size_bytes") == 4096
    with pytest.raises(KeyError, match="no parameter 'missing'"):
        m.int_param("missing")
    for name in ("dtype", "flag", "x"):  # a string, a bool and a float are not ints
        with pytest.raises(TypeError, match=f"parameter '{name}'"):
            m.int_param(name)


def test_timed_records_pairs_each_timed_record_with_its_timing():
    ok = measurement.measured(benchmark="hbm", kernel="copy", impl="torch", params={}, mode="cpu", device="x",
                              timing=_timing(0.25), bytes=8)
    interp = measurement.measured(benchmark="hbm", kernel="copy", impl="triton", params={}, mode="interpreter",
                                  device="x", timing=None, bytes=8)
    skipped = measurement.not_measured(benchmark="hbm", params={}, mode="cpu", device="x", reason="no GPU")
    pairs = list(measurement.timed_records([interp, ok, skipped]))
    assert pairs == [(ok, ok.timing)] and pairs[0][1].median_s == 0.25
