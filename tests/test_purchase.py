"""`rooflab compare` for a buyer: number formats, where each card's numbers come from, the closest public result,
and the purchase page (`--html`): self-contained, and checked in a real browser (headless Chromium)."""
import json
import re
import struct

import pytest
from _browser import find_chromium, load_page
from _cli import one_line_error, rooflab

from bench import models, roofline, serving
from bench import profile as prof
from bench.serving import buyer
from bench.serving.predict import predict

CARDS = ["h100-sxm", "h200", "b200", "mi300x"]
ARGS = ["--model", "llama-3.1-70b", "--weight-dtype", "fp8", "--context", "1024", "--target-tokens-per-user", "5"]


def test_source_kinds():
    assert prof.source_kinds(prof.resolve("spec:h100-sxm")) == "spec"
    dev = prof.DeviceInfo(name="NVIDIA H100 80GB HBM3", backend="cuda", memory_bytes=80 * 10**9)
    measured = prof.Profile(name="run", device=dev, peaks=prof.Peaks(memory_bandwidth_Bps=3.0e12,
                                                                     matmul_flops={"bfloat16": 8e14}))
    assert prof.source_kinds(measured) == "measured"
    # completed by the card's published profile, then its spec sheet
    assert prof.source_kinds(prof.with_spec(measured)[0]) == "measured+published+spec"


def test_compare_json_uses_the_formats_and_shows_sources_and_public_results(capsys):
    code, out, _ = rooflab(capsys, "compare", *CARDS, *ARGS, "--json")
    assert code == 0
    d = json.loads(out)
    assert d["weight_dtype"] == "fp8" and [r["gpu"] for r in d["rows"]] == CARDS
    mdl = models.resolve("llama-3.1-70b")
    base = roofline.Deployment(weight_dtype="fp8")
    entries = [(c, prof.resolve(c)) for c in CARDS]
    expect = roofline.compare(entries, mdl, context=1024, target_tokens_per_user=5, base=base)
    rows = serving.load()
    for r, e, (c, p) in zip(d["rows"], expect, entries):
        assert r["source"] == prof.source_kinds(prof.with_spec(p)[0])
        assert (r["gpus"], r["tp"], r["batch"], r["bound"]) == (e.gpus, e.tp, e.batch, e.bound)
        assert r["tokens_per_s_per_gpu"] == pytest.approx(e.tokens_per_s_per_gpu)
        want = buyer.closest_row(rows, c, mdl, ("fp8", "fp8"), 1024)
        if want is None:
            assert r["public"] is None and "no public result" in r["public_note"]
            continue
        row = next(x for x in rows if x.id == r["public"]["id"])
        assert row is want and row.formats == ("fp8", "fp8") and row.card == c
        assert r["public"]["fraction"] == pytest.approx(row.rate / predict(row, p).rate)
    # fp8 weights: more KV room than the bf16 default on the same card
    bf16 = roofline.compare(entries[:1], mdl, context=1024, target_tokens_per_user=5)[0]
    assert d["rows"][0]["max_batch"] > bf16.max_batch or d["rows"][0]["gpus"] < bf16.gpus


def test_closest_row_matches_the_architecture_and_prefers_throughput():
    rows = serving.load()
    got = buyer.closest_row(rows, "h100-sxm", models.resolve("llama-3.1-70b"), ("fp8", "fp8"), 1500)
    assert got is not None and got.scenario == "throughput" and got.model in ("llama-3.1-70b", "llama-3.3-70b")
    assert buyer.closest_row(rows, "h100-sxm", models.resolve("llama-3.1-70b"), ("fp4", "fp4"), 1500) is None
    assert buyer.same_architecture(models.resolve("llama-3.3-70b"), models.resolve("llama-3.1-70b"))
    assert not buyer.same_architecture(models.resolve("llama-2-70b"), models.resolve("llama-3.1-70b"))


@pytest.mark.parametrize("args,needle", [
    (["compare", "h100-sxm", "b200", "--model", "llama-3.1-70b", "--weight-dtype", "fp4"], "h100-sxm has no fp4"),
    (["compare", "a100-80gb-sxm", "--model", "llama-3.1-8b", "--kv-dtype", "fp8"], "a100-80gb-sxm has no fp8"),
    (["compare", "h100-sxm", "--model", "llama-3.1-8b", "--weight-dtype", "fp7"], "unknown dtype"),
    (["compare", "h100-sxm", "--model", "llama-3.1-8b", "--html", "page.pdf"], "--html"),
    (["compare", "h100-sxm", "--model", "llama-3.1-8b", "--html", "/proc/nonexistent/p.html"], "--html"),
])
def test_compare_bad_input_one_line_exit_2(capsys, args, needle):
    one_line_error(*rooflab(capsys, *args)[::2], needle)


def _page(capsys, tmp_path):
    page = tmp_path / "purchase.html"
    code, out, err = rooflab(capsys, "compare", *CARDS, *ARGS, "--html", str(page))
    assert code == 0, err
    assert f"wrote {page}" in out and "public result" in out
    return page


def test_the_purchase_page_is_self_contained(capsys, tmp_path):
    text = _page(capsys, tmp_path).read_text()
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", text)
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == 3
    for heading in ("Comparison", "Throughput vs interactivity", "At the target", "Spec vs published vs measured",
                    "Public serving results", "Notes"):
        assert f">{heading}</h2>" in text
    for card in CARDS:
        assert f"<td>{card}</td>" in text
    assert "github.com/NVIDIA/TensorRT-LLM" in text  # a public result's citation


def test_the_purchase_page_in_a_real_browser(capsys, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed and could not be: .ci/run installs Debian's chromium package "
                    "(apt-get install -y chromium) where apt-get is available")
    page = _page(capsys, tmp_path)
    shot = tmp_path / "purchase.png"
    seen = load_page(page, shot, chromium)
    assert seen.title.startswith("Purchase comparison: llama-3.1-70b")
    assert len(seen.images) == 3
    for img in seen.images:
        assert "error" not in img and img["width"] > 0 and img["height"] > 0, img
    assert seen.requests and all(u.startswith(("file:", "data:")) for u in seen.requests), seen.requests
    assert not seen.console_errors
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width >= 800 and height > width  # the whole page, not one screen
