import json

import pytest

from bench import profile as prof
from bench.profile import build as profile_build


def _profile():
    dev = prof.DeviceInfo(name="Test GPU", backend="cuda", memory_bytes=80 * 10**9, compute_units=132,
                          cache_bytes=50 * 2**20, capability="9.0", driver="580.1", cuda_version="13.0")
    run = prof.RunInfo(mode="cuda", mode_reason="test", benchmarks=["hbm"])
    return prof.Profile(name="t", device=dev, run=run, software=profile_build.software_info(),
                        peaks=prof.Peaks(memory_bandwidth_Bps=3.1e12, copy_bandwidth_Bps=2.9e12))


def test_round_trip(tmp_path):
    p = _profile()
    prof.save(p, tmp_path / "p.json")
    q = prof.load(tmp_path / "p.json")
    assert q == p
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["schema_version"] == prof.SCHEMA_VERSION and d["kind"] == "measured"
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
    with pytest.raises(prof.ProfileError, match=msg) as e:
        prof.load(f)
    assert "\n" not in str(e.value)


def test_nan_and_negative_refused(tmp_path):
    d = json.loads(_profile().model_dump_json())
    d["peaks"]["memory_bandwidth_Bps"] = -1
    f = tmp_path / "neg.json"
    f.write_text(json.dumps(d))
    with pytest.raises(prof.ProfileError, match="memory_bandwidth_Bps"):
        prof.load(f)
    f.write_text(json.dumps(d).replace("-1", "NaN"))
    with pytest.raises(prof.ProfileError):
        prof.load(f)


def test_missing_and_huge_files(tmp_path, monkeypatch):
    with pytest.raises(prof.ProfileError, match="cannot read"):
        prof.load(tmp_path / "missing.json")
    f = tmp_path / "big.json"
    f.write_text("{}")
    monkeypatch.setattr(prof.io, "MAX_PROFILE_BYTES", 1)
    with pytest.raises(prof.ProfileError, match="limit"):
        prof.load(f)


def test_atomic_write_leaves_no_temp(tmp_path):
    prof.atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]
