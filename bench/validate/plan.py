"""What ``rooflab validate`` runs: the models (reduced to a few layers), the grid of (batch, context) points in the
order they run, and the memory each needs against what the device has (docs/validate.md, "Run safety")."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import dtypes, models
from ..models import ModelSpec
from ..target import Target
from .errors import ValidateError
from .transformer import supported

DEFAULT_MODELS = ("llama-3.1-8b", "qwen3-30b-a3b")  # a dense and a MoE model
DEFAULT_LAYERS = {"cuda": 4, "cpu": 1}
# GPU: the batches and contexts the decode benchmark's quick sweep measures (bench/benchmarks/decode.py), so the
# prediction reads measured attention points rather than interpolating between them; batch 1 and 8 are bound by
# the weights, 256 at 512 tokens sits at the GEMMs' ridge (compute bound at the GEMM rates an H100 measures at
# M = 256), long contexts are bound by the KV cache. 24 points (2 skipped for memory on an 80 GB card, 1 on a
# 141 GB one), about a minute on an H100 (docs/validate.md, "Time"). CPU: small, ~1 min on 2 cores.
DEFAULT_BATCHES = {"cuda": (1, 8, 64, 256), "cpu": (1, 4, 16)}
DEFAULT_CONTEXTS = {"cuda": (512, 4096, 32768), "cpu": (512, 2048)}
MEMORY_FRACTION = 0.7  # weights + KV cache + check temporaries of a point must fit in this share of memory
# GPU: besides the weights, cache and reference scratch, what a point allocates that point_bytes does not count:
# the L2 flush buffer (2× L2), the CUDA graph's private pool (the step's activations, MoE sort scratch), the
# split-KV workspace, cuBLAS workspaces and the caching allocator's rounding. Checked against what the device
# has free right now (torch.cuda.mem_get_info), so a card another process shares is never pushed into OOM.
GPU_MARGIN_BYTES = 2 << 30


def reduced_model(model: ModelSpec, layers: int) -> ModelSpec:
    """The preset with ``layers`` of its layers: every per-layer shape is kept (so weights, KV bytes, FLOPs and
    the kernel count of a step scale with the layers), the vocabulary and LM head too. A MoE model keeps its
    leading dense layers up to ``layers`` − 1, so at least one layer is MoE."""
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= model.layers:
        raise ValidateError(f"--layers must be in [1, {model.layers}] for {model.name}, got {layers}")
    dense_first = min(model.dense_layers_first, layers - 1) if model.is_moe else 0
    data = model.model_dump()
    data.update(name=f"{model.name} ({layers} of {model.layers} layers)", layers=layers,
                dense_layers_first=dense_first, total_params=None, active_params=None,
                sliding_window_layers=min(model.sliding_window_layers, layers))
    return ModelSpec.model_validate(data)


def parse_models(text: str | None) -> list[ModelSpec]:
    """The models of ``--model`` (comma-separated presets or JSON files; default DEFAULT_MODELS), each one the
    transformer builder supports."""
    names = [s.strip() for s in (text or ",".join(DEFAULT_MODELS)).split(",") if s.strip()]
    if not names:
        raise ValidateError("--model needs at least one model")
    out = []
    for n in names:
        try:
            m = models.resolve(n)
        except models.ModelError as e:
            raise ValidateError(str(e)) from None
        why = supported(m)
        if why:
            raise ValidateError(why)
        out.append(m)
    return out


def sweep_models(options: Mapping[str, Any]) -> list[ModelSpec]:
    """The models whose weight GEMMs (gemm benchmark) and attention heads (decode benchmark) a run measures at the
    shapes this validation reads: the run's ``models`` option (ModelSpec fields, as ``rooflab run --model``
    stores them), else DEFAULT_MODELS."""
    given = options.get("models")
    if given:
        return [ModelSpec.model_validate(d) for d in given]
    return [models.resolve(n) for n in DEFAULT_MODELS]


def point_order(batches: Sequence[int], contexts: Sequence[int]) -> list[tuple[int, int]]:
    """The grid, coarse to fine: the corners first (the largest point, where memory runs out, then the extremes of
    each axis), then the midpoints; so a run stopped early (budget, signal) still spans the grid. The table is
    printed in grid order whatever the order of measurement."""

    def ranks(xs: Sequence[int]) -> dict[int, int]:
        from ..runner import bisection_order

        xs = sorted(set(xs))
        return {xs[i]: r for r, i in enumerate(bisection_order(len(xs)))}

    rb, rc = ranks(batches), ranks(contexts)
    grid = [(b, c) for b in sorted(set(batches)) for c in sorted(set(contexts))]
    return sorted(grid, key=lambda bc: (max(rb[bc[0]], rc[bc[1]]), rb[bc[0]] + rc[bc[1]], rb[bc[0]]))


def weights_bytes(model: ModelSpec, dtype: str) -> int:
    """Device bytes of the reduced model's weights as Transformer builds them (every weight but the input table)."""
    return int(model.params - model.input_embedding_params) * int(dtypes.bytes_per_element(dtype))


def point_bytes(spec: ModelSpec, batch: int, context: int, dtype: str) -> int:
    """Device bytes a point allocates beside the weights: the KV cache of every layer (``context`` tokens per
    sequence, the new one included) and the logits (float64 in the reference)."""
    esize = int(dtypes.bytes_per_element(dtype))
    kv = 2 * spec.layers * batch * context * spec.kv_heads * spec.head_dim * esize
    return kv + batch * spec.vocab * (esize + int(dtypes.bytes_per_element("float64")))


def device_room_bytes(target: Target) -> float:
    """GPU: bytes this process can still allocate — free on the device plus what the caching allocator holds
    unused; CPU: unbounded (the static MEMORY_FRACTION budget applies)."""
    if not target.is_cuda:
        return math.inf
    import torch

    try:
        free, _ = torch.cuda.mem_get_info()
        return float(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())
    except Exception:  # no way to ask: the static budget stands
        return math.inf
