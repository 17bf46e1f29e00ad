"""Published profiles and the merge of the three kinds: the library, citations, bad input, measured > published >
spec number by number, name resolution, and the cited fixed-cost defaults the model uses for cards nobody measured."""
import json

import pytest
from _cli import rooflab

from bench import models, roofline
from bench import profile as prof

REQUIRED = {"h100-sxm", "h200", "b200", "a100-80gb-sxm", "mi300x", "mi325x"}


def _doc(card: str) -> dict:
    return json.loads(prof.resolve_path(f"published:{card}").read_text())


def _write(tmp_path, data, name="p.json"):
    f = tmp_path / name
    f.write_text(json.dumps(data))
    return f


def one_line_exit_2(capsys, needle, *args):
    code, _, err = rooflab(capsys, *args)
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------------------------ the library
def test_published_library_validates_and_cites_every_number():
    lib = prof.library("published")
    assert REQUIRED <= set(lib), REQUIRED - set(lib)
    for card, path in lib.items():
        p = prof.load(path)
        prof.check_card(p)
        assert p.kind == "published" and p.card == card and not p.provenance
        assert p.device.architecture is not None and p.notes, card  # what it leaves out is said
        paths = prof.number_paths(p)
        assert paths, card
        for q in paths:  # one citation record per number, at its own path, findable and with its conversion
            c = p.sources[q]
            assert isinstance(c, prof.Citation), (card, q)
            assert c.tool and c.as_published and c.conversion and (c.commit or c.date or "://" in c.source)


def test_published_numbers_are_plausible_against_their_sheet():
    """A unit slip (GB/s read as TB/s, TFLOP/s as GFLOP/s) would land far from the sheet; a measurement may pass the
    sheet only slightly (a card boosting above its rated clock)."""
    for card in prof.library("published"):
        pub, spec = prof.load(prof.resolve_path(f"published:{card}")), prof.resolve(f"spec:{card}")
        pairs = [(pub.peaks.memory_bandwidth_Bps, spec.peaks.memory_bandwidth_Bps),
                 (pub.peaks.copy_bandwidth_Bps, spec.peaks.memory_bandwidth_Bps)]
        pairs += [(v, spec.peaks.matmul_flops[dt]) for dt, v in pub.peaks.matmul_flops.items()]
        if pub.host_link and spec.host_link and card != "gb200":  # GB200's host link is NVLink-C2C, not PCIe
            pairs += [(pub.host_link.peak_h2d_Bps, spec.host_link.theoretical_Bps),
                      (pub.host_link.peak_d2h_Bps, spec.host_link.theoretical_Bps)]
        for got, sheet in pairs:
            if got is not None:
                assert 0.3 * sheet <= got <= 1.05 * sheet, (card, got, sheet)


def test_published_matmul_is_below_spec_where_the_issue_says():
    """The MI300X's maximum achievable bf16 matmul is about half its sheet; its read stream well under 5.3 TB/s."""
    mi = prof.resolve("mi300x")
    sheet = prof.resolve("spec:mi300x")
    assert mi.peaks.matmul_flops["bfloat16"] / sheet.peaks.matmul_flops["bfloat16"] == pytest.approx(0.51, abs=0.02)
    assert mi.peaks.memory_bandwidth_Bps < 0.8 * sheet.peaks.memory_bandwidth_Bps


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["sources"].pop("peaks.matmul_flops.bfloat16"),
     "published number peaks.matmul_flops.bfloat16 has no citation record"),
    (lambda d: d["sources"].update({"peaks.matmul_flops.bfloat16": "mamf-finder, somewhere"}),
     "published number peaks.matmul_flops.bfloat16 has no citation record"),
    (lambda d: d["sources"]["peaks.matmul_flops.bfloat16"].pop("tool"), "tool: Field required"),
    (lambda d: d["sources"]["peaks.matmul_flops.bfloat16"].update(conversion=" "), "non-blank conversion"),
    (lambda d: [d["sources"]["peaks.matmul_flops.bfloat16"].pop(k) for k in ("commit", "date")],
     "needs the commit or the date"),
    (lambda d: d["sources"]["peaks.matmul_flops.bfloat16"].update(date="last spring"), "date"),
    (lambda d: d["peaks"]["matmul_flops"].update(bfloat16=-1.0), "bfloat16"),
    (lambda d: d["peaks"].update(memory_bandwidth_Bps=0), "memory_bandwidth_Bps"),
    (lambda d: d.pop("card"), "names its card"),
    (lambda d: d.update(peaks={}, interconnect={}, host_link={}, sources={}), "has no numbers"),
])
def test_bad_published_profile_is_one_line_exit_2(tmp_path, capsys, mutate, needle):
    d = _doc("h100-sxm")
    mutate(d)
    f = _write(tmp_path, d)
    with pytest.raises(prof.ProfileError, match=needle) as e:
        prof.load(f)
    assert "\n" not in str(e.value)
    one_line_exit_2(capsys, needle.split(":")[0], "profile", "validate", str(f))


def test_nan_and_unknown_card_are_one_line_exit_2(tmp_path, capsys):
    text = prof.resolve_path("published:h100-sxm").read_text().replace("794500000000000.0", "NaN")
    assert "NaN" in text
    f = tmp_path / "nan.json"
    f.write_text(text)
    one_line_exit_2(capsys, "not valid JSON", "profile", "validate", str(f))
    d = _doc("h100-sxm")
    d["card"] = "h900"
    one_line_exit_2(capsys, "unknown card 'h900'", "profile", "validate", str(_write(tmp_path, d)))
    one_line_exit_2(capsys, "no published profile named 'h900'", "profile", "show", "published:h900")
    one_line_exit_2(capsys, "unknown profile 'h900'", "roofline", "--gpu", "h900", "--model", "llama-3.1-8b")


def test_merged_needs_a_card_the_library_knows(tmp_path, capsys):
    dev = prof.DeviceInfo(name="NVIDIA H900", backend="cuda", memory_bytes=10**11)
    f = tmp_path / "m.json"
    prof.save(prof.Profile(name="m", device=dev, peaks=prof.Peaks(memory_bandwidth_Bps=1e12)), f)
    one_line_exit_2(capsys, "no spec or published profile found", "profile", "show", "--merged", str(f))
    code, out, _ = rooflab(capsys, "profile", "show", "--merged", "spec:l4")  # a sheet: nothing to merge, all spec
    assert code == 0 and "numbers from: spec" in out


def test_validate_takes_the_whole_library(capsys):
    paths = [str(p) for p in prof.library("published").values()]
    code, out, _ = rooflab(capsys, "profile", "validate", *paths)
    assert code == 0 and out.count("ok: ") == len(paths) and "published profile" in out
    code, out, _ = rooflab(capsys, "profile", "validate", "--json", *paths)
    d = json.loads(out)
    assert code == 0 and d["ok"] and {p["kind"] for p in d["profiles"]} == {"published"}


# ------------------------------------------------------------------------------------------------ merge
def _measured_h100() -> prof.Profile:
    dev = prof.DeviceInfo(name="NVIDIA H100 80GB HBM3", backend="cuda", memory_bytes=85_520_809_984)
    pk = prof.Peaks(memory_bandwidth_Bps=3.1e12, matmul_flops={"bfloat16": 7.6e14})
    return prof.Profile(name="my h100", device=dev, peaks=pk, overheads=prof.Overheads(launch_s=5e-6))


def test_measured_over_published_over_spec_number_by_number():
    meas = _measured_h100()
    pub, spec = prof.resolve_path("published:h100-sxm"), prof.resolve("spec:h100-sxm")
    m = prof.merge(meas, prof.load(pub), spec)
    assert m == prof.with_spec(meas)[0] and m.kind == "measured" and m.card == "h100-sxm"
    prov = m.provenance
    assert (prov["peaks.memory_bandwidth_Bps"], m.peaks.memory_bandwidth_Bps) == ("measured", 3.1e12)
    assert (prov["peaks.copy_bandwidth_Bps"], m.peaks.copy_bandwidth_Bps) == ("published", 2.9e12)
    assert (prov["peaks.matmul_flops.float8_e4m3fn"], m.peaks.matmul_flops["float8_e4m3fn"]) == ("published", 1.4026e15)
    assert (prov["peaks.matmul_flops.float64"], m.peaks.matmul_flops["float64"]) == ("spec", 6.7e13)
    assert prov["overheads.launch_s"] == "measured" and prov["interconnect.all_reduce.latency_s"] == "published"
    assert prov["device.memory_bytes"] == "measured" and prov["interconnect.scale_up_domain"] == "spec"
    assert prof.source_kinds(m) == "measured+published+spec"
    # citations: a record for each published number, the sheet's text for its own, none for a measured one
    assert isinstance(m.sources["peaks.matmul_flops.float8_e4m3fn"], prof.Citation)
    assert "peaks.matmul_flops.bfloat16" not in m.sources and "peaks.memory_bandwidth_Bps" not in m.sources
    assert isinstance(m.sources["peaks.matmul_flops"], str)  # float64, int8 still come from the sheet
    # the sheet's text for the NVLink rate is dropped with the number it cited
    assert m.interconnect.scale_up_source is None and prov["interconnect.scale_up_Bps"] == "published"
    assert prof.validate(json.loads(m.model_dump_json(exclude_none=True))) == m  # a valid profile: it round-trips


def test_resolution_picks_the_most_real_and_prefixes_pick_one():
    bare, pub, spec = prof.resolve("h100-sxm"), prof.resolve("published:h100-sxm"), prof.resolve("spec:h100-sxm")
    assert bare == pub and bare.kind == "published" and prof.source_kinds(bare) == "published+spec"
    assert spec.kind == "spec" and not spec.provenance and prof.source_kinds(spec) == "spec"
    assert bare.peaks.matmul_flops["bfloat16"] == 794.5e12 and spec.peaks.matmul_flops["bfloat16"] == 989.4e12
    assert bare.device.memory_bytes == spec.device.memory_bytes  # from the sheet: nobody publishes a capacity
    assert prof.source_kinds(prof.resolve("l4")) == "spec"  # nothing published: the sheet
    raw = prof.load(prof.resolve_path("published:mi325x"))
    assert prof.source_kinds(raw) == "published" and prof.with_spec(raw)[1].card == "mi325x"


def test_profile_show_merged_says_where_each_number_came_from(capsys):
    code, out, _ = rooflab(capsys, "profile", "show", "--merged", "h100-sxm")
    assert code == 0 and "published+spec" in out
    row = next(line for line in out.splitlines() if "memory bandwidth" in line)
    assert "3.18 TB/s" in row and "published" in row and "Azure" in row
    assert any("matmul float64" in line and "spec" in line for line in out.splitlines())
    code, out, _ = rooflab(capsys, "profile", "list", "--json")
    kinds = {(p["name"], p["kind"]) for p in json.loads(out)["profiles"]}
    assert ("mi300x", "published") in kinds and ("mi300x", "spec") in kinds


# ------------------------------------------------------------------------------------------------ fixed costs
def test_every_default_resolves_and_published_ones_have_one_home():
    table = prof.fixed_cost_defaults()
    assert set(table.architectures) == set(prof.ARCHITECTURES)
    for arch, costs in table.architectures.items():
        for name, entry in costs:
            if entry is None:
                continue
            d = prof.default_cost(arch, name)
            assert d is not None and d.value_s > 0 and d.source, (arch, name)
            if entry.published:  # the published profile's number, not a copy of it
                pub = prof.load(prof.resolve_path(f"published:{entry.published}"))
                where = prof.defaults.PUBLISHED_PATH[name]
                assert d.value_s == prof.defaults._number_at(pub.model_dump(), where)
            if entry.architecture:
                assert d.value_s == prof.default_cost(entry.architecture, name).value_s and entry.note
    for card, path in prof.library("spec").items():  # every sheet's GPU has launch defaults
        arch = prof.load(path).device.architecture
        assert prof.default_cost(arch, "launch_s") and prof.default_cost(arch, "graph_launch_s"), card


@pytest.mark.parametrize("entry,needle", [
    ({"value_s": 1e-6}, "value_s with its citation"),
    ({"published": "h100-sxm", "architecture": "ampere"}, "value_s with its citation"),
    ({"value_s": -1.0, "citation": {"source": "https://x.example", "tool": "t", "as_published": "1",
                                    "conversion": "c"}}, "value_s"),
])
def test_bad_default_entries_are_refused(tmp_path, entry, needle):
    doc = {"about": "test", "architectures": {"hopper": {"launch_s": entry}}}
    with pytest.raises(prof.ProfileError, match=needle):
        prof.fixed_cost_defaults(_write(tmp_path, doc))


def test_broken_references_are_one_line_errors():
    table = prof.defaults.FixedCostDefaults.model_validate({"about": "t", "architectures": {
        "hopper": {"launch_s": {"architecture": "ada"}}, "ada": {"launch_s": {"architecture": "hopper"}},
        "ampere": {"launch_s": {"published": "h900"}}, "cdna3": {"graph_launch_s": {"published": "mi325x"}}}})
    for arch, name, needle in (("hopper", "launch_s", "no value of its own"), ("ampere", "launch_s", "h900"),
                               ("cdna3", "graph_launch_s", "has no overheads.graph_launch_s")):
        with pytest.raises(prof.ProfileError, match=needle) as e:
            prof.defaults._resolve(table, arch, name)
        assert "\n" not in str(e.value)


def _step(gpu, model="llama-3.1-8b", batch=1, context=1024, **dep):
    hw = roofline.Hardware(prof.resolve(gpu) if isinstance(gpu, str) else gpu)
    rl = roofline.Roofline(hw, models.resolve(model), roofline.Deployment(**dep))
    return rl.step(batch, context), hw


def test_spec_only_batch_1_pays_the_default_launches():
    m = models.resolve("llama-3.1-8b")
    s, hw = _step("spec:h100-sxm")
    launch = prof.default_cost("hopper", "launch_s").value_s
    assert s.overhead_time_s == pytest.approx(m.decode_kernels() * launch) and s.kernels_per_step == 326
    assert s.step_time_s == pytest.approx(s.memory_time_s + s.overhead_time_s)  # memory bound, plus the launches
    assert any("default eager launch cost" in n and "hopper" in n for n in hw.notes)
    g, hw = _step("spec:h100-sxm", cuda_graphs=True)
    assert g.overhead_time_s == pytest.approx(326 * prof.default_cost("hopper", "graph_launch_s").value_s)
    assert any("default CUDA-graph launch cost" in n for n in hw.notes)
    b, hw = _step("spec:b200")  # no Blackwell launch measured publicly: Hopper's stands in, and the note says so
    assert b.overhead_time_s == pytest.approx(326 * launch) and any("hopper's default" in n for n in hw.notes)


def test_published_overheads_win_over_the_default():
    s, hw = _step("a100-80gb-sxm")
    pub = prof.load(prof.resolve_path("published:a100-80gb-sxm")).overheads
    assert s.overhead_time_s == pytest.approx(326 * pub.launch_s)
    assert any("published eager launch cost" in n for n in hw.notes)
    cpu = prof.Profile(name="cpu", device=prof.DeviceInfo(name="cpu", backend="cpu", memory_bytes=10**10),
                       peaks=prof.Peaks(memory_bandwidth_Bps=2e10, matmul_flops={"float32": 1e11}))
    s, hw = _step(cpu, "llama-3.1-8b", context=16, weight_dtype="fp32")
    assert s.overhead_time_s == 0 and any("the overhead term is 0" in n for n in hw.notes)


def test_all_reduce_latency_published_else_default_by_link():
    m = models.resolve("llama-3.1-70b")
    msg = 4 * m.hidden * 2
    # the sheet: the Hopper NVLink default latency + the ring's bytes at the NVLink rate
    s, hw = _step("spec:h100-sxm", "llama-3.1-70b", batch=4, tp=8)
    lat = prof.default_cost("hopper", "all_reduce_latency_scale_up_s").value_s
    assert s.tp_comm_time_s == pytest.approx(m.layers * 2 * (lat + 2 * 7 / 8 * msg / 450e9))
    assert any("default latency" in n for n in hw.notes)
    # published: the card's own small-message time and bus bandwidth
    s, hw = _step("h100-sxm", "llama-3.1-70b", batch=4, tp=8)
    ar = prof.resolve("h100-sxm").interconnect.all_reduce
    assert s.tp_comm_time_s == pytest.approx(m.layers * 2 * (ar.latency_s + 2 * 7 / 8 * msg / ar.peak_busbw_Bps))
    assert any("published latency" in n and "published all-reduce bus bandwidth" in n for n in hw.notes)
    # an Ada card has no NVLink: over PCIe, the PCIe default (an RTX 4090 server's published time)
    s, hw = _step("spec:l40s", "llama-3.1-70b", batch=4, tp=4)
    pcie = prof.default_cost("ada", "all_reduce_latency_pcie_s").value_s
    bw, link = hw.link(4)
    assert "PCIe" in link and s.tp_comm_time_s == pytest.approx(m.layers * 2 * (pcie + 2 * 3 / 4 * msg / bw))
    # beyond the scale-up domain nobody published a small-message time: the link formula alone, said so
    s, hw = _step("spec:h100-sxm", "llama-3.1-70b", batch=4, tp=16)
    assert s.tp_comm_time_s == pytest.approx(m.layers * 2 * (2 * 15 / 16 * msg / 50e9))
    assert any("latency 0" in n and "scale-out" in n for n in hw.notes)
