"""Property-based tests (hypothesis) of the profile and model loaders and of the roofline model's invariants.

Loaders (on the spec and published libraries): whatever a file holds, loading gives a valid object or one line of
error (ProfileError / ModelError), never another exception; NaN/inf, negative numbers, wrong types and unknown
schema versions are errors. Roofline (on the spec sheets and the published profiles completed by them, presets
and random models): every step's terms are finite and non-negative,
the step time never falls as batch or context grows, and it respects its bounds (the larger of compute and
memory time, the batch-1 latency floor, peak FLOP/s and bandwidth); the maximum batch agrees with ``fits``.
The one reader (bench/jsonio.py): whatever sits at a path (a file, a FIFO, a folder, a link, a device), it
gives a regular file's bytes within the limit or one line of error, and its line stream hands back every
byte while holding no line past its limit. The run-folder lock: one holder at a time, whatever a stale lock
file held.
"""
from __future__ import annotations

import copy
import io
import json
import math
import os

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bench import jsonio, roofline
from bench import models as M
from bench import profile as prof
from bench.runner import RunError, outdir

SPECS = {name: json.loads(path.read_text()) for name, path in sorted(prof.library("spec").items())}
PUBLISHED = {name: json.loads(path.read_text()) for name, path in sorted(prof.library("published").items())}
DOCS = {**{f"spec:{n}": d for n, d in SPECS.items()}, **{f"published:{n}": d for n, d in PUBLISHED.items()}}
# what the model reads: each sheet alone, and each card's most real profile (published numbers, the sheet's
# where there are none)
PROFILES = {**{f"spec:{n}": prof.validate(d) for n, d in SPECS.items()},
            **{n: prof.resolve(n) for n in PUBLISHED}}
PRESETS = sorted(M.PRESETS)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=6),
                    st.floats(allow_nan=False, allow_infinity=False))
JSON = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c,
                                                                                          max_size=3)), max_leaves=8)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def _paths(d, pre=()):
    """Every (path, value) in a JSON document, containers included."""
    yield pre, d
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, pre + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, pre + (i,))


def _set(doc, path, value):
    x = doc
    for k in path[:-1]:
        x = x[k]
    x[path[-1]] = value


def _one_line(e: Exception) -> None:
    assert str(e) and "\n" not in str(e) and "Traceback" not in str(e)


def _numbers(obj):
    return [v for _, v in _paths(obj) if isinstance(v, float)]


# -- the profile loader -------------------------------------------------------------------------------------


def _load_profile(tmp_path, text: str):
    f = tmp_path / "p.json"
    f.write_text(text)
    try:
        return prof.load(f)
    except prof.ProfileError as e:
        _one_line(e)
        return e


@FAST
@given(card=st.sampled_from(sorted(DOCS)), data=st.data())
def test_profile_loader_gives_a_profile_or_one_line(tmp_path_factory, card, data):
    doc = copy.deepcopy(DOCS[card])
    paths = [p for p, _ in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    kind = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if kind == "replace":
        _set(doc, path, data.draw(JSON))
    elif kind == "delete":
        x = doc
        for k in path[:-1]:
            x = x[k]
        del x[path[-1]]
    else:
        x = doc
        for k in path[:-1]:
            x = x[k]
        if isinstance(x, dict):
            x[data.draw(st.text(min_size=1, max_size=6))] = data.draw(JSON)
    got = _load_profile(tmp_path_factory.mktemp("p"), json.dumps(doc))
    if isinstance(got, prof.Profile):  # what loads is finite and survives a save/load round trip
        assert all(math.isfinite(v) for v in _numbers(got.model_dump()))
        out = tmp_path_factory.mktemp("rt") / "p.json"
        prof.save(got, out)
        assert prof.load(out) == got


@FAST
@given(card=st.sampled_from(sorted(DOCS)), data=st.data())
def test_profile_non_finite_or_negative_numbers_are_errors(tmp_path_factory, card, data):
    doc = copy.deepcopy(DOCS[card])
    nums = [p for p, v in _paths(doc) if isinstance(v, (int, float)) and not isinstance(v, bool)
            and p[0] in prof.SPEC_SECTIONS]
    path = data.draw(st.sampled_from(nums))
    bad = data.draw(st.one_of(NON_FINITE, st.floats(max_value=-1e-300, allow_infinity=False),
                              st.integers(max_value=-1)))
    _set(doc, path, bad)
    got = _load_profile(tmp_path_factory.mktemp("p"), json.dumps(doc))  # NaN/Infinity written as JSON tokens
    assert isinstance(got, prof.ProfileError), (path, bad)


@FAST
@given(card=st.sampled_from(sorted(SPECS)), version=st.one_of(st.integers(), st.text(max_size=3), st.none(),
                                                               st.floats(allow_nan=False, allow_infinity=False)))
def test_profile_unknown_schema_versions_are_errors(tmp_path_factory, card, version):
    assume(not (version == prof.SCHEMA_VERSION and type(version) is int))
    doc = copy.deepcopy(SPECS[card])
    doc["schema_version"] = version
    got = _load_profile(tmp_path_factory.mktemp("p"), json.dumps(doc))
    assert isinstance(got, prof.ProfileError) and "schema_version" in str(got)


@FAST
@given(card=st.sampled_from(sorted(SPECS)), cut=st.floats(0, 0.999), junk=st.binary(max_size=40))
def test_profile_truncated_or_garbage_files_are_errors(tmp_path_factory, card, cut, junk):
    text = json.dumps(SPECS[card])
    d = tmp_path_factory.mktemp("p")
    assert isinstance(_load_profile(d, text[: int(len(text) * cut)]), prof.ProfileError)
    (d / "g.json").write_bytes(junk + b"\xff")
    with pytest.raises(prof.ProfileError):
        prof.load(d / "g.json")


@pytest.mark.parametrize("path,value", [
    (("peaks", "memory_bandwidth_Bps"), 1e30),  # 1e18 TB/s
    (("device", "memory_bytes"), 10**30),
    (("peaks", "memory_bandwidth_Bps"), True),
])
def test_profile_absurd_values_and_booleans_are_errors(path, value):
    doc = copy.deepcopy(SPECS["h100-sxm"])
    _set(doc, path, value)
    with pytest.raises(prof.ProfileError):
        prof.validate(doc)


# -- the model loader -------------------------------------------------------------------------------------


def _load_model(tmp_path, text: str):
    f = tmp_path / "m.json"
    f.write_text(text)
    try:
        return M.load(f)
    except M.ModelError as e:
        _one_line(e)
        return e


@FAST
@given(name=st.sampled_from(PRESETS), data=st.data())
def test_model_loader_gives_a_model_or_one_line(tmp_path_factory, name, data):
    doc = M.PRESETS[name].model_dump()
    key = data.draw(st.sampled_from(sorted(doc) + ["unknown_field"]))
    doc[key] = data.draw(st.one_of(JSON, NON_FINITE))
    got = _load_model(tmp_path_factory.mktemp("m"), json.dumps(doc))
    if isinstance(got, M.ModelSpec):
        assert got.layers >= 1 and got.params > 0 and got.kv_bytes_per_token() > 0
    else:
        assert isinstance(got, M.ModelError)
        if isinstance(doc[key], float) and not math.isfinite(doc[key]):
            assert "not valid JSON" in str(got)


HF_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "num_key_value_heads",
           "intermediate_size", "head_dim", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size",
           "kv_lora_rank", "qk_rope_head_dim", "first_k_dense_replace", "sliding_window", "layer_types",
           "tie_word_embeddings", "torch_dtype", "quantization_config", "text_config", "model_type"]


@FAST
@given(cfg=st.dictionaries(st.sampled_from(HF_KEYS), st.one_of(st.integers(-3, 70000), JSON), max_size=12))
def test_hf_config_loader_gives_a_model_or_one_line(tmp_path_factory, cfg):
    got = _load_model(tmp_path_factory.mktemp("m"), json.dumps({"model_type": "llama", **cfg}))
    assert isinstance(got, (M.ModelSpec, M.ModelError))


def test_hf_config_with_an_overflowing_number_is_a_model_error(tmp_path):
    text = '{"hidden_size": 1e400, "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32000}'
    assert isinstance(_load_model(tmp_path, text), M.ModelError)


# -- the roofline model's invariants -------------------------------------------------------------------------


@st.composite
def random_models(draw):
    kv = draw(st.integers(1, 16))
    heads = kv * draw(st.sampled_from([1, 2, 4, 8]))
    head_dim = draw(st.sampled_from([64, 80, 128]))
    base = dict(name="random", layers=draw(st.integers(1, 96)), hidden=draw(st.integers(64, 16384)), heads=heads,
                kv_heads=kv, head_dim=head_dim, vocab=draw(st.integers(1000, 256000)))
    if draw(st.booleans()):
        spec = M.ModelSpec(family="dense", ffn_intermediate=draw(st.integers(64, 65536)), **base)
    else:
        experts = draw(st.integers(2, 256))
        spec = M.ModelSpec(family="moe", routed_experts=experts,
                           experts_per_token=draw(st.integers(1, min(8, experts))),
                           moe_intermediate=draw(st.integers(64, 8192)), shared_experts=draw(st.integers(0, 2)), **base)
    return spec


MODELS = st.one_of(st.sampled_from(PRESETS).map(M.PRESETS.get), random_models())


def _roofline(card, model, tp, ep, graphs):
    try:
        hw = roofline.Hardware(PROFILES[card])
        dep = roofline.Deployment(tp=tp, ep=ep if model.is_moe else 1, cuda_graphs=graphs)
        return roofline.Roofline(hw, model, dep)
    except roofline.RooflineError:
        return None


def _step(rl, b, c):
    try:
        return rl.step(b, c)
    except roofline.RooflineError as e:  # e.g. tp over a link the card's sheet does not give
        _one_line(e)
        return None


def _check_step(rl, s, card):
    vals = {k: v for k, v in s.as_dict().items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert all(math.isfinite(v) and v >= 0 for v in vals.values()), vals
    assert s.step_time_s > 0 and s.tokens_per_s > 0
    eps = 1 - 1e-9
    assert s.step_time_s >= max(s.compute_time_s, s.memory_time_s) * eps
    assert s.step_time_s >= rl.latency_floor_s() * eps
    assert s.tokens_per_s_per_user <= 1 / (rl.latency_floor_s() * eps)
    peaks = PROFILES[card].peaks
    assert s.memory_time_s >= s.weight_bytes / s.gpus / peaks.memory_bandwidth_Bps * eps
    assert s.compute_time_s >= s.flops / s.gpus / max(peaks.matmul_flops.values()) * eps
    mb = rl.max_batch(s.context)
    assert s.fits is None or s.fits == (s.batch <= mb)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(card=st.sampled_from(sorted(PROFILES)), model=MODELS, tp=st.sampled_from([1, 2, 4, 8]),
       ep=st.sampled_from([1, 2, 4, 8]), graphs=st.booleans(),
       batches=st.lists(st.integers(1, 4096), min_size=2, max_size=2).map(sorted),
       contexts=st.lists(st.integers(0, 131072), min_size=2, max_size=2).map(sorted))
def test_roofline_step_is_monotonic_bounded_finite(card, model, tp, ep, graphs, batches, contexts):
    rl = _roofline(card, model, tp, ep, graphs)
    assume(rl is not None)
    (b1, b2), (c1, c2) = batches, contexts
    grid = {(b, c): _step(rl, b, c) for b in (b1, b2) for c in (c1, c2)}
    assume(all(s is not None for s in grid.values()))
    for s in grid.values():
        _check_step(rl, s, card)
    tol = 1 + 1e-9
    for c in (c1, c2):
        assert grid[(b1, c)].step_time_s <= grid[(b2, c)].step_time_s * tol  # more batch: never faster a step
    for b in (b1, b2):
        assert grid[(b, c1)].step_time_s <= grid[(b, c2)].step_time_s * tol  # more context: never faster
        assert grid[(b, c1)].kv_bytes <= grid[(b, c2)].kv_bytes * tol
    mb1, mb2 = rl.max_batch(c1), rl.max_batch(c2)
    assert mb1 is None or mb1 >= mb2  # a longer context never fits more sequences


@pytest.mark.parametrize("field,value", [("layers", True), ("layers", 10**12), ("vocab", 10**30)])
def test_model_spec_refuses_booleans_and_absurd_dimensions(field, value):
    base = dict(name="m", family="dense", layers=2, hidden=64, heads=4, kv_heads=4, head_dim=16, vocab=1000,
                ffn_intermediate=128)
    with pytest.raises(ValueError):
        M.ModelSpec(**{**base, field: value})
    M.ModelSpec(**base)  # the same spec with plain values is fine


# -- the one reader -----------------------------------------------------------------------------------------


INPUT_KINDS = ["file", "fifo", "folder", "link to a file", "link to /dev/zero", "dangling link", "missing"]


@FAST
@given(content=st.binary(max_size=300), kind=st.sampled_from(INPUT_KINDS), limit=st.integers(0, 400),
       follow=st.booleans())
def test_the_reader_gives_a_regular_files_bytes_or_one_line(tmp_path_factory, content, kind, limit, follow):
    d = tmp_path_factory.mktemp("r")
    (d / "target").write_bytes(content)
    p = d / "input"
    if kind == "file":
        p.write_bytes(content)
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "folder":
        p.mkdir()
    elif kind == "link to a file":
        p.symlink_to(d / "target")
    elif kind == "link to /dev/zero":
        p.symlink_to("/dev/zero")
    elif kind == "dangling link":
        p.symlink_to(d / "nowhere")
    ok = (kind == "file" or (kind == "link to a file" and follow)) and len(content) <= limit
    try:
        got = jsonio.read_bytes(p, limit, "input", jsonio.InputError, follow=follow)
    except jsonio.InputError as e:
        _one_line(e)
        assert not ok, e
    else:
        assert ok and got == content


@FAST
@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12), torn=st.booleans(),
       limit=st.integers(0, 30), chunk=st.integers(1, 9))
def test_the_line_stream_gives_back_every_byte_and_holds_no_line_past_its_limit(tmp_path_factory, lines, torn,
                                                                                 limit, chunk):
    content = b"".join(x + b"\n" for x in lines)
    if torn and content:
        content = content[:-1]
    p = tmp_path_factory.mktemp("l") / "log"
    p.write_bytes(content)
    saved, jsonio.CHUNK = jsonio.CHUNK, chunk  # small reads: lines cross every chunk boundary
    try:
        with jsonio.Lines(p, line_limit=limit, total_limit=len(content), what="log") as r:
            got = list(r)
            copied = io.BytesIO()
            for line in got:
                r.copy(line, copied)
    finally:
        jsonio.CHUNK = saved
    assert copied.getvalue() == content  # offsets and sizes cover the file, byte for byte
    raw = content.split(b"\n")[:-1] if content.endswith(b"\n") else content.split(b"\n") if content else []
    assert [line.number for line in got] == list(range(1, len(raw) + 1))
    for line, want in zip(got, raw):
        assert line.data == (want if len(want) <= limit else None)
    assert all(line.complete for line in got[:-1])
    assert not got or got[-1].complete == content.endswith(b"\n")
    if content:
        with pytest.raises(jsonio.InputError, match="limit"):
            jsonio.Lines(p, line_limit=limit, total_limit=len(content) - 1, what="log")


# -- the run-folder lock ------------------------------------------------------------------------------------


@FAST
@given(ops=st.lists(st.tuples(st.integers(0, 2), st.booleans()), max_size=16),
       stale=st.one_of(st.none(), st.binary(max_size=200), st.sampled_from([
           b'{"pid": 1, "host": "elsewhere", "started": "2026-01-01T00:00:00Z"}', b'{"pid": "x\\u001b[31m"}'])))
def test_the_lock_admits_one_holder_at_a_time(tmp_path_factory, ops, stale):
    d = tmp_path_factory.mktemp("lock")
    if stale is not None:
        (d / outdir.LOCK).write_bytes(stale)  # left by a process that died: nobody holds it
    notes: list[str] = []
    locks = [outdir.RunLock(d, log=notes.append) for _ in range(3)]
    holder = None
    try:
        for who, take in ops:
            lock = locks[who]
            if take and lock.fd < 0:
                try:
                    lock.acquire()
                except RunError as e:
                    _one_line(e)
                    assert holder is not None and holder != who and f"pid {os.getpid()} on " in str(e)
                else:
                    assert holder is None
                    holder = who
                    assert json.loads((d / outdir.LOCK).read_text())["pid"] == os.getpid()
            elif not take:
                lock.release()
                if holder == who:
                    holder = None
    finally:
        for lock in locks:
            lock.release()
    took = any(take for _, take in ops)
    assert not (took and (d / outdir.LOCK).exists())  # given back: no lock file is left
    assert all(n.isprintable() and "stale lock" in n for n in notes)
    assert len(notes) == (1 if took and stale is not None and stale.strip() else 0)
