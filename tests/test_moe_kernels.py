"""kernels/moe.py: routing, Triton permute / un-permute / grouped GEMM in the interpreter, on tiny odd shapes."""
import pytest
import torch

from bench import checks
from kernels import moe as kern

# (tokens, hidden, experts, top_k): odd sizes that are no multiple of any block, top-1 to top-3
SHAPES = [(1, 5, 3, 1), (13, 37, 5, 2), (29, 70, 7, 3)]


def _case(T, H, E, k, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=g).to(dtype)
    ids, w = kern.route(torch.randn(T, E, generator=g), k)
    return g, x, ids, w


def test_route_picks_top_k_with_normalised_weights():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, -1.0, 4.0, 0.5]])
    ids, w = kern.route(logits, 2)
    assert ids.tolist() == [[1, 3], [0, 2]]
    assert torch.allclose(w.sum(1), torch.ones(2))
    assert w[0, 0] > w[0, 1]  # the larger logit gets the larger weight
    with pytest.raises(ValueError):
        kern.route(logits, 5)
    with pytest.raises(ValueError):
        kern.route(logits[0], 1)


@pytest.mark.parametrize("T,H,E,k", SHAPES)
def test_sort_by_expert_is_a_stable_inverse_permutation(T, H, E, k):
    _, _, ids, _ = _case(T, H, E, k, seed=1)
    src, pos, counts = kern.sort_by_expert(ids, E)
    assert counts.sum().item() == T * k and counts.tolist() == torch.bincount(ids.reshape(-1), minlength=E).tolist()
    experts_in_order = ids.reshape(-1)[pos.reshape(-1).argsort()]
    assert torch.all(experts_in_order[1:] >= experts_in_order[:-1])  # grouped by expert
    for t in range(T):
        for j in range(k):
            assert src[pos[t, j]].item() == t  # pair (t, j) lands on a row that came from token t
    assert sorted(pos.reshape(-1).tolist()) == list(range(T * k))
    with pytest.raises(ValueError):
        kern.sort_by_expert(ids, int(ids.max()))  # an id out of range


@pytest.mark.parametrize("T,H,E,k", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_permute_matches_gather(T, H, E, k, dtype):
    _, x, ids, _ = _case(T, H, E, k, seed=2, dtype=dtype)
    src, _, _ = kern.sort_by_expert(ids, E)
    out = checks.poison(torch.empty(T * k, H, dtype=dtype))
    kern.triton_permute(x, src, out)
    assert torch.equal(out.double(), kern.reference_permute(x, src))  # a copy: exact
    assert torch.equal(kern.torch_permute(x, src), out)


@pytest.mark.parametrize("T,H,E,k", SHAPES)
def test_triton_unpermute_weighted_combine(T, H, E, k):
    g, _, ids, w = _case(T, H, E, k, seed=3)
    _, pos, _ = kern.sort_by_expert(ids, E)
    y = torch.randn(T * k, H, generator=g)
    out = checks.poison(torch.empty(T, H))
    kern.triton_unpermute(y, pos, w, out)
    ref = kern.reference_unpermute(y, pos, w)
    for got in (out, kern.torch_unpermute(y, pos, w)):
        chk = checks.compare(got, ref, checks.tolerance(torch.float32), "f64")
        assert chk.passed, chk.detail


def test_permute_then_unpermute_with_unit_weights_sums_copies():
    _, x, ids, w = _case(11, 23, 4, 2, seed=4)
    src, pos, _ = kern.sort_by_expert(ids, 4)
    back = kern.triton_unpermute(kern.triton_permute(x, src), pos, torch.full_like(w, 0.5))
    assert torch.allclose(back, x, atol=1e-6)  # each token's two copies, half weight each


@pytest.mark.parametrize("counts", [[5, 0, 17, 1], [0, 0, 3], [33]])
def test_triton_grouped_mm_matches_per_expert_matmul(counts):
    g = torch.Generator().manual_seed(5)
    R, K, N = sum(counts), 21, 19
    a = torch.randn(R, K, generator=g)
    w = torch.randn(len(counts), K, N, generator=g)
    out = checks.poison(torch.empty(R, N))
    kern.triton_grouped_mm(a, w, counts, out=out)
    ref = torch.empty(R, N, dtype=torch.float64)
    row = 0
    for e, c in enumerate(counts):
        ref[row:row + c] = a[row:row + c].double() @ w[e].double()
        row += c
    for got in (out, kern.torch_grouped_mm(a, w, counts)):
        chk = checks.compare(got, ref, checks.tolerance(torch.float32), "f64")
        assert chk.passed, chk.detail


def test_rows_bucket_keys_the_autotuner_by_rows_per_active_expert():
    assert kern._rows_bucket([0, 0, 3]) == 4 and kern._rows_bucket([8, 0, 8]) == 8 and kern._rows_bucket([]) == 1
    assert kern._rows_bucket([1024] * 32) == 1024 and kern._rows_bucket([10 ** 6]) == 4096
    assert "ROWS_PER_EXPERT" in kern._grouped_mm_tuned.keys


def test_grouped_schedule_covers_every_row_once():
    counts = [5, 0, 17, 1]
    te, ts, tend = kern.grouped_schedule(counts, 4, "cpu")
    covered = []
    for e, s, end in zip(te.tolist(), ts.tolist(), tend.tolist()):
        covered += [(e, r) for r in range(s, min(s + 4, end))]
    want = [(e, r) for e, (lo, c) in enumerate(zip([0, 5, 5, 22], counts)) for r in range(lo, lo + c)]
    assert covered == want


@pytest.mark.parametrize("impl", ["triton", "torch"])
def test_grouped_mlp_and_moe_layer_match_float64(impl):
    T, H, E, k, inter = 9, 37, 5, 2, 19
    g, x, ids, w = _case(T, H, E, k, seed=6)
    w13 = torch.randn(E, H, 2 * inter, generator=g) / H ** 0.5
    w2 = torch.randn(E, inter, H, generator=g) / inter ** 0.5
    src, pos, counts = kern.sort_by_expert(ids, E)
    xs = kern.triton_permute(x, src)
    ys = kern.grouped_mlp(xs, counts.tolist(), w13, w2, impl)
    chk = checks.compare(ys, kern.reference_grouped_mlp(xs, counts.tolist(), w13, w2), 1e-6, "f64")
    assert chk.passed, chk.detail
    out = kern.triton_unpermute(ys, pos, w)
    # the whole layer, against a float64 reference computed token by token from its definition
    ref = torch.zeros(T, H, dtype=torch.float64)
    for t in range(T):
        for j in range(k):
            ref[t] += w[t, j].double() * kern.reference_mlp(x[t:t + 1], w13[ids[t, j]], w2[ids[t, j]])[0]
    assert checks.compare(kern.reference_moe(x, ids, w, w13, w2), ref, 1e-12, "f64").passed
    chk = checks.compare(out, ref, 1e-6, "f64")
    assert chk.passed, chk.detail


def test_launchers_refuse_bad_inputs():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError):
        kern.triton_permute(x.t(), torch.arange(2))  # rows not contiguous
    with pytest.raises(ValueError):
        kern.triton_permute(x, torch.arange(2), torch.empty(3, 6))  # wrong output shape
    with pytest.raises(ValueError):
        kern.triton_unpermute(x, torch.zeros(2, 2, dtype=torch.long), torch.ones(2, 3))
    with pytest.raises(ValueError):
        kern.triton_grouped_mm(x, torch.randn(2, 6, 3), [1, 2])  # counts do not sum to the rows
    with pytest.raises(ValueError):
        kern.grouped_mlp(x, [4], torch.randn(1, 6, 4), torch.randn(1, 2, 6), impl="cuda-magic")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_compiled_kernels_on_the_gpu(gpu_target, dtype):
    """The compiled (autotuned) kernels on CUDA tensors, for two rows-per-expert buckets (two autotune keys):
    bf16 as a2a times them, fp32 with IEEE dots (no TF32) and configs that may not fit in shared memory."""
    dev = gpu_target.torch_device
    g = torch.Generator(device=dev).manual_seed(3)
    T, H, E, k, inter = 300, 520, 6, 2, 136
    x = torch.randn(T, H, device=dev, generator=g).to(dtype)
    ids, w = kern.route(torch.randn(T, E, device=dev, generator=g), k)
    src, pos, _counts = kern.sort_by_expert(ids, E)
    xs = checks.poison(torch.empty(T * k, H, device=dev, dtype=dtype))
    kern.triton_permute(x, src, xs)
    assert torch.equal(xs, x[src])
    w13 = (torch.randn(E, H, 2 * inter, device=dev, generator=g) / H ** 0.5).to(dtype)
    w2 = (torch.randn(E, inter, H, device=dev, generator=g) / inter ** 0.5).to(dtype)
    tol = checks.tolerance(dtype) if dtype == torch.bfloat16 else 1e-5
    for rows in (xs, xs[:40]):  # ~100 rows per expert, then a handful
        cnt = torch.bincount(ids.reshape(-1)[pos.reshape(-1).argsort()][:rows.shape[0]], minlength=E).tolist()
        ys = kern.grouped_mlp(rows, cnt, w13, w2, "triton")
        chk = checks.compare(ys, kern.reference_grouped_mlp(rows, cnt, w13, w2), tol, "f64")
        assert chk.passed, (rows.shape, chk.detail)
    out = kern.triton_unpermute(xs, pos, w)
    chk = checks.compare(out, kern.reference_unpermute(xs, pos, w), checks.tolerance(dtype), "f64")
    assert chk.passed, chk.detail
