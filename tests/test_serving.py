"""Published serving results (profiles/serving.json, bench/serving/): the data file's rules, the predictions,
`rooflab validate --published`'s three summaries, and one-line errors with exit 2 for a bad file."""
import copy
import json
import math

import pytest
from _cli import one_line_error, rooflab

from bench import models, roofline, serving
from bench import profile as prof
from bench.serving import published as pub
from bench.serving.predict import assumed_kv, predict
from bench.serving.rows import deployment_for, spec_profile

ROWS = serving.load()
RAW = json.loads(serving.default_path().read_text())


# ---------------------------------------------------------------------------------------------- the data
def test_the_data_file_covers_cards_models_and_both_scenarios():
    assert len(ROWS) >= 30
    assert len({r.card for r in ROWS}) >= 5 and len({r.model for r in ROWS}) >= 3
    latency = [r for r in ROWS if r.scenario == "latency"]
    assert latency and all((r.concurrency or 1) == 1 and (r.batch or 1) == 1 for r in latency)
    assert any(r.scenario == "throughput" and r.batch is None and r.concurrency is None for r in ROWS)
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_every_row_is_cited_and_known_to_the_library():
    for r in ROWS:
        assert r.source.strip() and r.as_published.strip() and r.date.strip(), r.id
        assert r.card in prof.library("spec") and r.model in models.PRESETS, r.id
        assert r.value > 0 and math.isfinite(r.value)
        assert "SPECULATIVE" not in r.note.upper() or "no speculative" in r.note.lower() \
            or "no mtp" in r.note.lower(), r.id


def test_rates_and_contexts():
    for r in ROWS:
        if r.metric in ("tpot_ms", "itl_ms"):
            assert r.rate == pytest.approx(1000.0 / r.value)
        else:
            assert r.rate == r.value
        if r.context is None:
            assert r.decode_context == round(r.input_len + r.output_len / 2)
    tp2 = next(r for r in ROWS if r.conversion.endswith("/ 2") and "output tokens/s for the 2 GPUs" in r.conversion)
    total = float(tp2.conversion.split()[0])
    assert tp2.value == pytest.approx(total / 2, rel=1e-6)


def test_new_presets_keep_their_architecture():
    assert models.resolve("llama-3.3-70b").params == models.resolve("llama-3.1-70b").params
    assert models.resolve("deepseek-r1").kv_bytes_per_token() == models.resolve("deepseek-v3").kv_bytes_per_token()
    m = models.resolve("llama-2-7b")
    assert m.kv_heads == m.heads and m.weight_dtype == "fp16"


def test_native_support():
    h100, a100, b200 = (spec_profile(c) for c in ("h100-sxm", "a100-80gb-sxm", "b200"))
    assert roofline.native_support(h100, "fp8") and not roofline.native_support(h100, "fp4")
    assert not roofline.native_support(a100, "fp8") and roofline.native_support(a100, "bf16")
    assert roofline.native_support(b200, "nvfp4") and roofline.native_support(b200, "mxfp4")
    assert assumed_kv(h100) == "fp8" and assumed_kv(a100) == "bf16"


# -------------------------------------------------------------------------------------------- predictions
def _row(**kw):
    base = next(r for r in RAW["rows"] if r["scenario"] == "throughput" and r["card"] == "h100-sxm"
                and r["model"] == "llama-3.1-8b")
    d = {**copy.deepcopy(base), **kw}
    return serving.parse({"schema_version": 1, "rows": [d]})[0]


def test_a_latency_row_is_one_batch_1_step():
    r = next(x for x in ROWS if x.scenario == "latency" and x.kv_dtype is None)
    p = predict(r, spec_profile(r.card))
    spec = spec_profile(r.card)
    rl = roofline.Roofline(roofline.Hardware(spec), r.model_spec(), deployment_for(r, assumed_kv(spec)))
    assert p.batch == 1 and p.rate == pytest.approx(1.0 / rl.step(1, r.decode_context).step_time_s)
    assert p.assumed and "not stated" in p.assumed[0]


def test_a_throughput_row_with_a_batch_and_without_one():
    spec = spec_profile("h100-sxm")
    rl = roofline.Roofline(roofline.Hardware(spec), models.resolve("llama-3.1-8b").model_copy(
        update={"weight_dtype": "fp8"}), roofline.Deployment(kv_dtype="fp8"))
    r = _row(batch=64, id="b64")
    assert predict(r, spec).rate == pytest.approx(rl.step(64, r.decode_context).tokens_per_s_per_gpu)
    best = predict(_row(id="free"), spec)
    cap = rl.max_batch(r.decode_context)
    assert best.batch <= cap
    assert best.rate == pytest.approx(max(rl.step(b, r.decode_context).tokens_per_s_per_gpu
                                          for b in roofline.batch_grid(cap)))
    big = predict(_row(batch=10**6, id="big"), spec)  # capped by the KV capacity, and said so
    assert big.batch == cap and any("KV capacity" in a for a in big.assumed)


def test_kendall_tau():
    assert pub.kendall_tau([3, 2, 1], [30, 20, 10]) == 1.0
    assert pub.kendall_tau([3, 2, 1], [10, 20, 30]) == -1.0
    assert pub.kendall_tau([3, 2, 1], [30, 10, 20]) == pytest.approx(1 / 3)
    assert pub.kendall_tau([3, 2, 1], [10, 10, 10]) == 0.0


def test_the_three_summaries():
    res = pub.run(ROWS)
    assert "spec" in res.kinds and len(res.rows) == len(ROWS)
    for x in res.rows:
        ratio = x.ratio("spec")
        assert ratio == pytest.approx(x.row.rate / x.predictions["spec"].rate)
        assert (x.row.id in {f["id"] for f in res.upper_bound["spec"]}) == (ratio > 1)
    engines = {f["engine"] for f in res.fractions if f["card"] == "all cards"}
    assert engines == {r.engine for r in ROWS}
    for g in res.rankings:
        assert len(g["published_order"]) >= pub.MIN_CARDS
        s = g["spec"]
        assert -1 <= s["tau"] <= 1 and s["pairs"] == len(g["published_order"]) * (len(g["published_order"]) - 1) // 2
    totals = pub.ranking_totals(res.rankings, res.kinds)["spec"]
    assert totals["groups"] == len(res.rankings) >= 3


def test_a_result_above_the_roofline_is_flagged_and_a_wrong_order_named():
    h100, h200, l40s = (_row(card=c, id=c, value=v) for c, v in (("h100-sxm", 1e6), ("h200", 1e3), ("l40s", 2e3)))
    res = pub.run([h100, h200, l40s], profiles_of=lambda card: {"spec": spec_profile(card)})
    assert [f["id"] for f in res.upper_bound["spec"]] == ["h100-sxm"]
    (g,) = res.rankings
    assert g["published_order"] == ["h100-sxm", "l40s", "h200"]
    pred = {x.row.card: x.predictions["spec"].rate for x in res.rows}
    assert pred["h200"] > pred["h100-sxm"] > pred["l40s"]  # the spec sheets' order: bandwidth
    assert set(g["spec"]["wrong_pairs"]) == {"h100-sxm > h200", "l40s > h200"}
    assert g["spec"]["tau"] == pytest.approx(-1 / 3)


def test_a_row_a_profile_cannot_predict_is_skipped_with_its_reason():
    bare = spec_profile("h100-sxm").model_copy(update={"interconnect": None, "host_link": None})
    one, two = _row(id="one"), _row(id="two", gpus=2, tp=2)

    def profiles_of(card):
        return {"spec": spec_profile(card), "published": "no published profile", "measured": bare}

    res = pub.run([one, two], profiles_of=profiles_of)
    a, b = res.rows
    assert a.predictions["measured"] is not None and b.predictions["measured"] is None
    assert b.reasons["measured"].startswith("skipped:") and "link bandwidth" in b.reasons["measured"]
    assert a.reasons["published"] == pub.NO_PUBLISHED and b.predictions["spec"] is not None


def test_the_published_column_resolves_published_profiles():
    got = pub.library_profiles("h100-sxm")
    assert isinstance(got["spec"], prof.Profile)
    assert isinstance(got["published"], prof.Profile) or got["published"] == pub.NO_PUBLISHED


# -------------------------------------------------------------------------------------------------- CLI
def test_validate_published_cli(capsys):
    code, out, _ = rooflab(capsys, "validate", "--published")
    assert code == 0
    assert "upper-bound check" in out and "fraction of the roofline" in out and "ranking agreement" in out
    code, out, _ = rooflab(capsys, "validate", "--published", "--gpu", "mi300x", "--json")
    d = json.loads(out)
    assert code == 0 and d["rows"] and {r["card"] for r in d["rows"]} == {"mi300x"}
    assert d["summary"]["median_ratio"]["spec"] > 0 and "upper_bound" in d["summary"]


def _bad(tmp_path, **change):
    d = copy.deepcopy(RAW)
    row = d["rows"][0]
    for k, v in change.items():
        if v is None:
            row.pop(k, None)
        else:
            row[k] = v
    f = tmp_path / "serving.json"
    f.write_text(json.dumps(d))
    return str(f)


@pytest.mark.parametrize("change,needle", [
    ({"source": None}, "source"),
    ({"source": "  "}, "citation"),
    ({"value": -5}, "value"),
    ({"card": "h900"}, "unknown card"),
    ({"model": "llama-9"}, "unknown model"),
    ({"card": "a100-80gb-sxm", "weight_dtype": "fp8"}, "has no fp8"),
    ({"model": "llama-3.1-405b", "card": "l40s", "gpus": 1, "tp": 1}, "cannot hold"),
    ({"gpus": 3, "tp": 2}, "multiple"),
    ({"scenario": "latency"}, "per-user"),
    ({"weight_dtype": "fp7"}, "unknown dtype"),
    ({"input_len": None}, "input_len"),
])
def test_a_bad_row_is_one_line_and_exit_2(capsys, tmp_path, change, needle):
    one_line_error(*rooflab(capsys, "validate", "--published", "--serving", _bad(tmp_path, **change))[::2], needle)


def test_bad_files_and_options(capsys, tmp_path):
    f = tmp_path / "nan.json"
    f.write_text(json.dumps(RAW).replace('"value": 17537.96', '"value": NaN', 1))
    one_line_error(*rooflab(capsys, "validate", "--published", "--serving", str(f))[::2], "not valid JSON")
    d = copy.deepcopy(RAW)
    d["rows"].append(d["rows"][0])
    f.write_text(json.dumps(d))
    one_line_error(*rooflab(capsys, "validate", "--published", "--serving", str(f))[::2], "two rows")
    one_line_error(*rooflab(capsys, "validate", "--published", "--serving", str(tmp_path / "none.json"))[::2],
                   "cannot read")
    one_line_error(*rooflab(capsys, "validate", "--published", "--gpu", "h900")[::2], "unknown card")
    one_line_error(*rooflab(capsys, "validate", "--published", "--gpu", "a10")[::2], "no serving rows")
    one_line_error(*rooflab(capsys, "validate", "--gpu", "h200")[::2], "--published")
    one_line_error(*rooflab(capsys, "validate", "--published", "--model", "llama-3.1-8b")[::2], "--model")
