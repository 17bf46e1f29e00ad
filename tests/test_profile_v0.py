import json

import pytest

from bench import profile as P


def _profile():
    dev = P.DeviceInfo(name="Test GPU", backend="cuda", memory_bytes=80 * 10**9, compute_units=132,
                       cache_bytes=50 * 2**20, capability="9.0", driver="580.1", cuda_version="13.0")
    run = P.RunInfo(mode="cuda", mode_reason="test", benchmarks=["hbm"])
    return P.Profile(name="t", device=dev, run=run, software=P.software_info(),
                     peaks=P.Peaks(memory_bandwidth_Bps=3.1e12, copy_bandwidth_Bps=2.9e12))


def test_round_trip(tmp_path):
    p = _profile()
    P.save(p, tmp_path / "p.json")
    q = P.load(tmp_path / "p.json")
    assert q == p
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["schema_version"] == P.SCHEMA_VERSION and d["kind"] == "measured"
    assert d["created"].endswith("Z") and "T" in d["created"]
    assert d["peaks"]["memory_bandwidth_Bps"] == 3.1e12


@pytest.mark.parametrize("text,msg", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"schema_version": 99}', "schema_version 99"),
    ('{"schema_version": 1}', "Field required"),
])
def test_malformed_refused_one_line(tmp_path, text, msg):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(P.ProfileError, match=msg) as e:
        P.load(f)
    assert "\n" not in str(e.value)


def test_nan_and_negative_refused(tmp_path):
    d = json.loads(_profile().model_dump_json())
    d["peaks"]["memory_bandwidth_Bps"] = -1
    f = tmp_path / "neg.json"
    f.write_text(json.dumps(d))
    with pytest.raises(P.ProfileError, match="memory_bandwidth_Bps"):
        P.load(f)
    f.write_text(json.dumps(d).replace("-1", "NaN"))
    with pytest.raises(P.ProfileError):
        P.load(f)


def test_missing_and_huge_files(tmp_path, monkeypatch):
    with pytest.raises(P.ProfileError, match="cannot read"):
        P.load(tmp_path / "missing.json")
    f = tmp_path / "big.json"
    f.write_text("{}")
    monkeypatch.setattr(P, "MAX_PROFILE_BYTES", 1)
    with pytest.raises(P.ProfileError, match="limit"):
        P.load(f)


def test_atomic_write_leaves_no_temp(tmp_path):
    P.atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]
