"""Profiles as artifacts: the spec library, sources, the JSON Schema, name resolution, merge, malformed input."""
import json

import pytest
from _pins import at_pinned_version

from bench import profile as prof
from bench.profile import build as profile_build

CARDS = ["a100-40gb-sxm", "a100-80gb-sxm", "a100-80gb-pcie", "h100-sxm", "h100-pcie", "h100-nvl", "h200", "h20",
         "b200", "gb200", "b300", "l40s", "l4", "a40", "a10", "rtx-4090", "rtx-5090", "rtx-6000-ada", "mi300x",
         "mi325x"]


def measured_h100(**peaks) -> prof.Profile:
    """A measured profile as the runner would write it on an H100 (numbers made up, shapes real)."""
    dev = prof.DeviceInfo(name="NVIDIA H100 80GB HBM3", backend="cuda", memory_bytes=85_520_809_984, compute_units=132,
                          cache_bytes=50 * 2**20, capability="9.0", driver="580.1", cuda_version="13.0")
    run = prof.RunInfo(mode="cuda", mode_reason="test", benchmarks=["hbm", "gemm"])
    pk = {"memory_bandwidth_Bps": 3.1e12, "copy_bandwidth_Bps": 2.9e12, "matmul_flops": {"bfloat16": 7.9e14}}
    pk.update(peaks)
    return prof.Profile(name="my h100", device=dev, run=run, software=profile_build.software_info(),
                        peaks=prof.Peaks(**pk))


def test_library_has_every_card_and_each_validates():
    lib = prof.library("spec")
    assert set(CARDS) <= set(lib), set(CARDS) - set(lib)
    for card, path in lib.items():
        p = prof.load(path)
        assert p.kind == "spec" and p.card == card and p.schema_version == prof.SCHEMA_VERSION
        assert p.device.memory_bytes > 1e9 and p.peaks.memory_bandwidth_Bps > 1e11
        assert p.peaks.matmul_flops["bfloat16"] > 1e13
        assert p.interconnect is not None and p.interconnect.scale_up_domain >= 1
        assert p.device_names, card
        # every number of the sheet carries a citation (the validator enforces it; this says it out loud)
        dump = p.model_dump(exclude_none=True)
        assert all(prof.has_source(p.sources, path_, dump) for path_ in prof.number_paths(p)), card


def test_spec_numbers_are_dense_datasheet_values():
    h100, h200, b200 = (prof.resolve(f"spec:{c}") for c in ("h100-sxm", "h200", "b200"))
    assert h100.peaks.matmul_flops["bfloat16"] == 989.4e12  # dense: half the 1979 sparse figure
    assert h100.peaks.memory_bandwidth_Bps == 3.35e12 and h100.device.memory_bytes == 80e9
    assert h100.interconnect.scale_up_Bps == 450e9  # NVLink 900 GB/s both directions, one direction per GPU
    assert h200.peaks.matmul_flops == h100.peaks.matmul_flops and h200.device.memory_bytes == 141e9
    assert b200.peaks.memory_bandwidth_Bps == 7.7e12
    # ridge point (bf16 FLOP/s / B/s): ≈ 295 for an H100 SXM, ≈ 206 for an H200
    assert h100.peaks.matmul_flops["bfloat16"] / h100.peaks.memory_bandwidth_Bps == pytest.approx(295, rel=0.01)
    assert h200.peaks.matmul_flops["bfloat16"] / h200.peaks.memory_bandwidth_Bps == pytest.approx(206, rel=0.01)


def test_json_schema_in_sync():
    committed, fresh = json.loads(prof.schema_path().read_text()), prof.json_schema()
    stale = "profiles/schema.json is stale: run `rooflab profile schema --write`"
    assert prof.schema_shape(committed) == prof.schema_shape(fresh), stale
    assert committed["$comment"] == fresh["$comment"] and "pydantic" not in committed["$comment"]  # no version stamp
    if at_pinned_version("pydantic"):  # another release may render descriptions differently: same substance
        assert committed == fresh, stale
    assert committed["properties"]["kind"]["enum"] == ["measured", "published", "spec"]
    assert {"Peaks", "DeviceInfo", "Price", "Interconnect", "Citation"} <= set(committed["$defs"])


def test_spec_round_trip_and_merged_round_trip(tmp_path):
    spec = prof.resolve("spec:h100-sxm")
    prof.save(spec, tmp_path / "s.json")
    assert prof.load(tmp_path / "s.json") == spec
    merged = prof.merge(measured_h100(), spec)
    prof.save(merged, tmp_path / "m.json")
    assert prof.load(tmp_path / "m.json") == merged


def test_spec_without_sources_is_refused(tmp_path):
    d = json.loads(prof.resolve_path("spec:l4").read_text())
    del d["sources"]["peaks.matmul_flops"]
    f = tmp_path / "l4.json"
    f.write_text(json.dumps(d))
    with pytest.raises(prof.ProfileError, match="peaks.matmul_flops.* has no source") as e:
        prof.load(f)
    assert "\n" not in str(e.value)


def test_sibling_source_field_counts_as_citation(tmp_path):
    d = json.loads(prof.resolve_path("spec:h100-sxm").read_text())
    del d["interconnect"]["scale_up_source"]
    with pytest.raises(prof.ProfileError, match="interconnect.scale_up_Bps has no source"):
        prof.load(_write(tmp_path, d))


def _write(tmp_path, data, name="bad.json"):
    f = tmp_path / name
    f.write_text(data if isinstance(data, str) else json.dumps(data))
    return f


@pytest.mark.parametrize("mutate,msg", [
    (lambda d: d.pop("device"), "device: Field required"),
    (lambda d: d["device"].pop("memory_bytes"), "memory_bytes"),
    (lambda d: d["peaks"].update(memory_bandwidth_Bps=-3e12), "memory_bandwidth_Bps"),
    (lambda d: d["peaks"]["matmul_flops"].update(bfloat16=-1.0), "bfloat16"),
    (lambda d: d["interconnect"].update(scale_up_domain=0), "scale_up_domain"),
    (lambda d: d["price"].update(usd_per_hour=0), "usd_per_hour"),
    (lambda d: d.update(schema_version=2), "schema_version 2"),
    (lambda d: d.update(kind="guess"), "kind"),
    (lambda d: d.update(surprise=1), "surprise"),
])
def test_malformed_spec_refused_one_line(tmp_path, mutate, msg):
    d = json.loads(prof.resolve_path("spec:h100-sxm").read_text())
    mutate(d)
    with pytest.raises(prof.ProfileError, match=msg) as e:
        prof.load(_write(tmp_path, d))
    assert "\n" not in str(e.value)


def test_nan_not_json_directory_and_huge(tmp_path, monkeypatch):
    text = prof.resolve_path("spec:h100-sxm").read_text().replace("3.35e+12", "NaN")
    assert "NaN" in text
    with pytest.raises(prof.ProfileError, match="not valid JSON"):
        prof.load(_write(tmp_path, text))
    with pytest.raises(prof.ProfileError, match="not valid JSON"):
        prof.load(_write(tmp_path, "{\"schema_version\": 1,"))
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(prof.ProfileError, match="not valid JSON"):
        prof.load(tmp_path / "bin.json")
    with pytest.raises(prof.ProfileError, match="not a regular file"):
        prof.load(tmp_path)
    monkeypatch.setattr(prof.io, "MAX_PROFILE_BYTES", 1000)
    with pytest.raises(prof.ProfileError, match="limit"):
        prof.load(prof.resolve_path("spec:h100-sxm"))


def test_resolve_by_name_prefix_and_path(tmp_path, monkeypatch):
    assert prof.resolve("spec:h200").card == "h200" and prof.resolve("spec:h200").kind == "spec"
    assert prof.resolve(str(prof.resolve_path("l4"))).card == "l4"
    assert prof.resolve("l4").kind == "spec"  # no published profile of an L4: the sheet is the most real there is
    with pytest.raises(prof.ProfileError, match="unknown profile 'h300'.*h100-sxm"):
        prof.resolve("h300")
    with pytest.raises(prof.ProfileError, match="no measured profile"):
        prof.resolve("measured:h200")
    with pytest.raises(prof.ProfileError, match="no published profile named 'l4'"):
        prof.resolve("published:l4")
    # a committed measured profile is found by name too, and wins a bare name over the spec
    (tmp_path / "specs").mkdir()
    (tmp_path / "measured").mkdir()
    (tmp_path / "specs" / "h100-sxm.json").write_text(prof.resolve_path("spec:h100-sxm").read_text())
    prof.save(measured_h100(), tmp_path / "measured" / "my-h100.json")
    prof.save(measured_h100(), tmp_path / "measured" / "h100-sxm.json")
    monkeypatch.setattr(prof.catalog, "profiles_dir", lambda: tmp_path)
    assert prof.resolve("my-h100").kind == "measured" and prof.source_kinds(prof.resolve("my-h100")) == "measured+spec"
    assert prof.resolve("h100-sxm").kind == "measured" and prof.resolve("spec:h100-sxm").kind == "spec"
    assert prof.resolve("measured:h100-sxm").provenance  # completed by the sheet
    assert prof.resolve_path("h100-sxm") == tmp_path / "measured" / "h100-sxm.json"  # the most real file


def test_card_for_device_is_exact():
    assert prof.card_for_device("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert prof.card_for_device("nvidia  h200") == "h200"
    assert prof.card_for_device("NVIDIA H100 NVL") == "h100-nvl"
    assert prof.card_for_device("NVIDIA H100 something new") is None
    assert prof.build._card_or_none(prof.DeviceInfo(name="NVIDIA L40S", backend="cuda")) == "l40s"
    assert prof.build._card_or_none(prof.DeviceInfo(name="NVIDIA L40S", backend="cpu")) is None


def test_merge_measured_overrides_spec_fills_and_marks():
    spec = prof.resolve("spec:h100-sxm")
    meas = measured_h100()
    m = prof.merge(meas, spec)
    assert m.kind == "measured" and m.card == "h100-sxm" and m.name == meas.name
    # measured values win ...
    assert m.peaks.memory_bandwidth_Bps == 3.1e12 and m.peaks.matmul_flops["bfloat16"] == 7.9e14
    assert m.device.memory_bytes == meas.device.memory_bytes and m.device.name == meas.device.name
    # ... unmeasured ones come from the spec, and each number says where it came from
    assert m.peaks.matmul_flops["float8_e4m3fn"] == spec.peaks.matmul_flops["float8_e4m3fn"]
    assert m.interconnect == spec.interconnect and m.price == spec.price and m.device.power_W == 700
    prov = m.provenance
    assert prov["peaks.memory_bandwidth_Bps"] == "measured" and prov["peaks.matmul_flops.bfloat16"] == "measured"
    assert prov["peaks.matmul_flops.float8_e4m3fn"] == "spec" and prov["interconnect.scale_up_Bps"] == "spec"
    assert prov["device.memory_bytes"] == "measured" and prov["device.power_W"] == "spec"
    assert set(prov.values()) == {"measured", "spec"}
    # citations are kept for what came from the sheet, dropped for what was measured
    assert "peaks.memory_bandwidth_Bps" not in m.sources and "interconnect.scale_up_domain" in m.sources
    assert m.interconnect.scale_up_source.startswith("NVLink")
    assert "peaks.matmul_flops" in m.sources  # fp8 etc. still come from it
    assert m.curves == meas.curves
    # the model completes a measured card with everything the library has: its published profile, then the sheet
    merged, used = prof.with_spec(meas)
    assert used is not None and used.card == "h100-sxm"
    assert merged == prof.merge(meas, prof.resolve("published:h100-sxm"))
    assert prof.with_spec(spec) == (spec, None) and prof.with_spec(merged) == (merged, None)
    with pytest.raises(prof.ProfileError, match="merge wants"):
        prof.merge(spec, spec)
    with pytest.raises(prof.ProfileError, match="merge wants"):
        prof.merge(spec, meas)


def test_from_measurements_still_builds_a_profile():
    dev = prof.DeviceInfo(name="NVIDIA H200", backend="cuda")
    run = prof.RunInfo(mode="cuda", mode_reason="test", benchmarks=[])
    p = profile_build.from_measurements([], dev, run)
    assert p.card == "h200" and p.kind == "measured" and p.run.points_ok == 0
