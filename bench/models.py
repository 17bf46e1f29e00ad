"""LLM shapes as data: dense and MoE transformers with GQA or MLA attention, presets, and loaders.

A :class:`ModelSpec` says what the roofline model (``bench.roofline``) needs of a model: the shapes that decide
the weights a decode step reads, the FLOPs it does and the KV cache it keeps. Presets come from each model's
published configuration (its Hugging Face ``config.json``); any other model loads from our own JSON
(``ModelSpec`` fields) or from a Hugging Face ``config.json`` on disk. Loading is JSON only, size-limited, and
refuses a malformed file with a one-line :class:`ModelError`. The parameter accounting (weights, bytes and FLOPs
all come from one count) is in docs/model.md, "Model shapes".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from . import dtypes
from .jsonio import read_json

MAX_MODEL_FILE_BYTES = 4 * 1024 * 1024

# Kernels per decode step, per GPU (the launch-overhead term of the roofline model). A census of an eager decode step as
# common serving code launches it, with the usual fusions (one QKV GEMM, fused residual-add + RMSNorm, fused
# SiLU·mul, one fused top-k): real stacks differ by tens of percent (more unfused elementwise ops, or fewer
# with torch.compile); the count is what the model multiplies by the per-kernel launch cost.
DECODE_KERNELS: dict[str, int] = {
    "layer_norms": 2,  # input RMSNorm, post-attention residual add + RMSNorm
    "attention_gqa": 5,  # QKV GEMM, rotary, KV-cache write, decode attention, O GEMM
    "attention_mla": 9,  # q down, q norm, q up, kv down, kv norm, rotary, cache write, attention, O GEMM
    "tp_all_reduce": 2,  # after attention and after the MLP, when tp > 1
    "dense_mlp": 3,  # gate+up GEMM, SiLU·mul, down GEMM
    "moe_mlp": 8,  # router GEMM, top-k, sort/align, permute, grouped gate+up, SiLU·mul, grouped down, combine
    "shared_expert_mlp": 3,  # a shared expert's gate+up, SiLU·mul, down
    "ep_all_to_all": 2,  # dispatch and combine, when ep > 1
    "per_step": 6,  # embedding lookup, final norm, LM head, and ~3 for sampling (softmax / top-k / argmax)
    "tp_logits_gather": 1,  # vocab-parallel LM head gathers the logits, when tp > 1
}


class ModelError(ValueError):
    """A model that cannot be used; the message is one line, fit for the CLI."""


@dataclass(frozen=True)
class Matmul:
    """One weight shape of a decode step: C[M, n] = X[M, k] · Wᵀ, ``count`` times per step. ``part``: "dense"
    (every token) or "expert" (per routed expert hit); ``split``: how tensor parallelism cuts W: by output
    columns ("col", n / tp), by input rows ("row", k / tp) or not at all ("none")."""

    name: str
    n: int
    k: int
    count: int
    part: Literal["dense", "expert"]
    split: Literal["col", "row", "none"]


def norm_dtype(name: str) -> str:
    """A storage format's short name ("bfloat16" -> "bf16", see bench.dtypes); ModelError if it is not one."""
    try:
        d = dtypes.short(name)
    except dtypes.UnknownDtype:
        d = None
    if d not in dtypes.STORAGE:
        raise ModelError(f"unknown dtype {name!r} (known: {', '.join(dtypes.STORAGE)})")
    return d


def dtype_bytes(name: str) -> float:
    return dtypes.bytes_per_element(norm_dtype(name))


def expected_experts(experts: int, top_k: int, tokens: float) -> float:
    """Expected distinct experts a batch of ``tokens`` touches with top-k of E, routing uniform and independent:
    E·(1 − (1 − k/E)^tokens). A skewed router touches fewer (so this is the upper end of weight traffic)."""
    if tokens <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


# No dimension of a real model comes near this (vocabularies ~2.6e5, widths ~3e4, experts ~400): larger is a
# corrupted or hostile file, refused rather than computed with.
MAX_DIMENSION = 10**7


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """JSON `true` is not a count, and no dimension is astronomically large."""
        ann = cls.model_fields[info.field_name].annotation if info.field_name in cls.model_fields else None
        if isinstance(v, bool) and ann is not bool:
            raise ValueError("a boolean where a number is expected")
        is_count = ann is int or (int in get_args(ann) and float not in get_args(ann))
        if is_count and isinstance(v, int) and abs(v) > MAX_DIMENSION:
            raise ValueError(f"{v} is not a plausible model dimension (limit {MAX_DIMENSION})")
        return v

    name: str = Field(min_length=1)
    family: Literal["dense", "moe"]
    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    heads: int = Field(ge=1, description="query heads")
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1, description="GQA: per head; MLA: the no-rope part of a query/key head")
    vocab: int = Field(ge=1)
    ffn_intermediate: int | None = Field(default=None, ge=1, description="dense layers' gated-MLP width")
    attention: Literal["gqa", "mla"] = "gqa"
    kv_lora_rank: int | None = Field(default=None, ge=1)
    qk_rope_head_dim: int | None = Field(default=None, ge=0)
    q_lora_rank: int | None = Field(default=None, ge=1)
    v_head_dim: int | None = Field(default=None, ge=1, description="MLA value head (default head_dim)")
    routed_experts: int | None = Field(default=None, ge=1)
    experts_per_token: int | None = Field(default=None, ge=1)
    shared_experts: int = Field(default=0, ge=0)
    moe_intermediate: int | None = Field(default=None, ge=1, description="per-expert gated-MLP width")
    dense_layers_first: int = Field(default=0, ge=0, description="MoE models: leading layers with a dense MLP")
    sliding_window: int | None = Field(default=None, ge=1, description="tokens a sliding-window layer keeps")
    sliding_window_layers: int = Field(default=0, ge=0, description="layers that use the sliding window")
    tied_embeddings: bool = False
    weight_dtype: str = "bf16"
    expert_weight_dtype: str | None = Field(default=None, description="routed experts' format if not weight_dtype")
    total_params: float | None = Field(default=None, gt=0, description="published total (count, not billions)")
    active_params: float | None = Field(default=None, gt=0, description="published active per token")
    source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.family == "moe":
            if not (self.routed_experts and self.experts_per_token and self.moe_intermediate):
                raise ValueError("a MoE model needs routed_experts, experts_per_token and moe_intermediate")
            if self.experts_per_token > self.routed_experts:
                raise ValueError("experts_per_token is larger than routed_experts")
            if self.dense_layers_first >= self.layers:
                raise ValueError("dense_layers_first must leave at least one MoE layer")
        elif self.routed_experts or self.experts_per_token:
            raise ValueError("a dense model has no experts (family 'moe' for a MoE model)")
        if self.dense_layer_count and not self.ffn_intermediate:
            raise ValueError("dense layers need ffn_intermediate")
        if self.attention == "mla" and (self.kv_lora_rank is None or self.qk_rope_head_dim is None):
            raise ValueError("MLA attention needs kv_lora_rank and qk_rope_head_dim")
        if self.sliding_window_layers > self.layers:
            raise ValueError("sliding_window_layers is larger than layers")
        if self.sliding_window_layers and not self.sliding_window:
            raise ValueError("sliding_window_layers needs sliding_window")
        for d in (self.weight_dtype, self.expert_weight_dtype):
            if d is not None:
                norm_dtype(d)  # ModelError (a ValueError) names an unknown dtype
        return self

    # ------------------------------------------------------------------------------------------ layer counts
    @property
    def is_moe(self) -> bool:
        return self.family == "moe"

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers_first if self.is_moe else 0

    @property
    def dense_layer_count(self) -> int:
        """Layers with a dense MLP: all of a dense model, the leading ones of a MoE model."""
        return self.dense_layers_first if self.is_moe else self.layers

    # ---------------------------------------------------------------------------------------------- params
    @property
    def attention_params_per_layer(self) -> int:
        h, n = self.hidden, self.heads
        if self.attention == "gqa":
            return h * n * self.head_dim + 2 * h * self.kv_heads * self.head_dim + n * self.head_dim * h
        rope, lora, v = self.qk_rope_head_dim or 0, self.kv_lora_rank or 0, self.v_head_dim or self.head_dim
        qk = self.head_dim + rope
        q = h * self.q_lora_rank + self.q_lora_rank * n * qk if self.q_lora_rank else h * n * qk
        return q + h * (lora + rope) + lora * n * (self.head_dim + v) + n * v * h

    @property
    def expert_params(self) -> int:
        """One routed (or shared) expert of one layer: a gated MLP."""
        return 3 * self.hidden * (self.moe_intermediate or 0)

    @property
    def routed_expert_params(self) -> int:
        return self.moe_layers * (self.routed_experts or 0) * self.expert_params

    @property
    def input_embedding_params(self) -> int:
        """The input table: a step reads only its batch's rows (ignored); tied, it is read whole as the LM head."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def computed_total_params(self) -> int:
        return (self.layers * self.attention_params_per_layer
                + self.dense_layer_count * 3 * self.hidden * (self.ffn_intermediate or 0)
                + self.moe_layers * (self.shared_experts * self.expert_params
                                     + self.hidden * (self.routed_experts or 0))
                + self.routed_expert_params
                + self.vocab * self.hidden * (1 if self.tied_embeddings else 2))

    @property
    def params(self) -> float:
        """Total parameters, counted from the shapes (see the module docstring)."""
        return float(self.computed_total_params)

    @property
    def dense_params(self) -> float:
        """Weights every token multiplies by: all but the routed experts and the input embedding table."""
        return self.params - self.routed_expert_params - self.input_embedding_params

    @property
    def matmul_params_per_token(self) -> float:
        """Active parameters in matmuls per token (2 FLOPs each): dense part + top-k experts per MoE layer."""
        return self.dense_params + self.moe_layers * (self.experts_per_token or 0) * self.expert_params

    @property
    def computed_active_params(self) -> float:
        """Active per token as model cards count them (the input embedding included)."""
        return self.matmul_params_per_token + self.input_embedding_params

    # ------------------------------------------------------------------------------------------ weight bytes
    def weight_dtypes(self, override: str | None = None) -> tuple[str, str]:
        """(dense weights' format, routed experts' format); ``override`` sets both (a deployment's choice)."""
        if override:
            d = norm_dtype(override)
            return d, d
        d = norm_dtype(self.weight_dtype)
        return d, norm_dtype(self.expert_weight_dtype) if self.expert_weight_dtype else d

    def weight_bytes(self, override: str | None = None) -> float:
        """All weights in memory."""
        wd, ed = self.weight_dtypes(override)
        expert = self.routed_expert_params
        return (self.params - expert) * dtypes.bytes_per_element(wd) + expert * dtypes.bytes_per_element(ed)

    def experts_touched(self, tokens: float) -> float:
        """Expected distinct routed experts per MoE layer for ``tokens`` tokens (0 for a dense model)."""
        if not self.is_moe:
            return 0.0
        return expected_experts(self.routed_experts or 0, self.experts_per_token or 0, tokens)

    def weight_bytes_touched(self, tokens: float, override: str | None = None) -> float:
        """Weights one forward pass over ``tokens`` tokens reads: the dense part plus the experts it hits."""
        wd, ed = self.weight_dtypes(override)
        experts = self.moe_layers * self.experts_touched(tokens) * self.expert_params
        return self.dense_params * dtypes.bytes_per_element(wd) + experts * dtypes.bytes_per_element(ed)

    # ---------------------------------------------------------------------------------------------- KV cache
    @property
    def kv_elements_per_token_per_layer(self) -> int:
        """GQA: K and V, 2·kv_heads·head_dim; MLA: the compressed latent plus the rope key, kv_lora + rope."""
        if self.attention == "mla":
            return (self.kv_lora_rank or 0) + (self.qk_rope_head_dim or 0)
        return 2 * self.kv_heads * self.head_dim

    def kv_bytes_per_token(self, kv_dtype: str = "bf16") -> float:
        """KV bytes per token over all layers: 2·layers·kv_heads·head_dim·bytes (MLA layers·(kv_lora+rope)·bytes)."""
        return self.layers * self.kv_elements_per_token_per_layer * dtype_bytes(kv_dtype)

    def kv_bytes(self, context: float, kv_dtype: str = "bf16") -> float:
        """KV bytes one sequence holds (and a decode step reads) at ``context`` tokens; sliding-window layers keep
        at most their window."""
        per = self.kv_elements_per_token_per_layer * dtype_bytes(kv_dtype)
        full = self.layers - self.sliding_window_layers
        win = min(context, self.sliding_window or context)
        return per * (full * context + self.sliding_window_layers * win)

    # --------------------------------------------------------------------------------------------- attention
    def attention_flops_per_token(self, context: float) -> float:
        """Attention FLOPs of one query token against ``context`` cached tokens, all layers (QKᵀ and PV, 2 FLOPs per
        multiply-add): GQA 4·heads·head_dim·ctx per layer; MLA in the absorbed (decode) form
        2·heads·ctx·(kv_lora + rope) + 2·heads·ctx·kv_lora."""
        if self.attention == "mla":
            lora, rope = self.kv_lora_rank or 0, self.qk_rope_head_dim or 0
            per_ctx = 2 * self.heads * (lora + rope) + 2 * self.heads * lora
        else:
            per_ctx = 4 * self.heads * self.head_dim
        full = self.layers - self.sliding_window_layers
        win = min(context, self.sliding_window or context)
        return per_ctx * (full * context + self.sliding_window_layers * win)

    # ------------------------------------------------------------------------------------- kernels per step
    def decode_kernels(self, tp: int = 1, ep: int = 1) -> int:
        """Kernels one GPU launches for one decode step, counted from the structure (see DECODE_KERNELS)."""
        k = DECODE_KERNELS
        attn = k["attention_mla"] if self.attention == "mla" else k["attention_gqa"]
        per_layer = k["layer_norms"] + attn + (k["tp_all_reduce"] if tp > 1 else 0)
        dense_mlp = k["dense_mlp"]
        moe_mlp = k["moe_mlp"] + (k["shared_expert_mlp"] if self.shared_experts else 0) \
            + (k["ep_all_to_all"] if ep > 1 else 0)
        total = self.layers * per_layer + self.dense_layer_count * dense_mlp + self.moe_layers * moe_mlp
        return total + k["per_step"] + (k["tp_logits_gather"] if tp > 1 else 0)

    # ------------------------------------------------------------------------------------ the step's GEMMs
    def matmuls(self) -> list[Matmul]:
        """The weight matmuls of one decode step, one entry per weight shape (``count`` of them per step), as a
        serving stack fuses them (one QKV, one gate+up): what the roofline model looks up a measured GEMM rate for,
        at each GEMM's own (N, K) rather than one shape for all. Their weights add up to the parameter count:
        Σ N·K·count over ``part == "dense"`` = ``dense_params``; over ``"expert"`` = ``expert_params`` (one expert of
        one layer; the model multiplies by the experts a batch hits)."""
        h, n, hd = self.hidden, self.heads, self.head_dim
        out: list[Matmul] = []
        if self.attention == "gqa":
            out += [Matmul("qkv", (n + 2 * self.kv_heads) * hd, h, self.layers, "dense", "col"),
                    Matmul("o", h, n * hd, self.layers, "dense", "row")]
        else:  # MLA, unabsorbed weights (the same bytes as the absorbed form's)
            rope, lora, v = self.qk_rope_head_dim or 0, self.kv_lora_rank or 0, self.v_head_dim or hd
            if self.q_lora_rank:
                out += [Matmul("q_a", self.q_lora_rank, h, self.layers, "dense", "none"),
                        Matmul("q_b", n * (hd + rope), self.q_lora_rank, self.layers, "dense", "col")]
            else:
                out.append(Matmul("q", n * (hd + rope), h, self.layers, "dense", "col"))
            out += [Matmul("kv_a", lora + rope, h, self.layers, "dense", "none"),
                    Matmul("kv_b", n * (hd + v), lora, self.layers, "dense", "col"),
                    Matmul("o", h, n * v, self.layers, "dense", "row")]
        if self.dense_layer_count:
            f = self.ffn_intermediate or 0
            out += [Matmul("gate_up", 2 * f, h, self.dense_layer_count, "dense", "col"),
                    Matmul("down", h, f, self.dense_layer_count, "dense", "row")]
        if self.moe_layers:
            i = self.moe_intermediate or 0
            out.append(Matmul("router", self.routed_experts or 0, h, self.moe_layers, "dense", "none"))
            if self.shared_experts:
                s = self.shared_experts * i
                out += [Matmul("shared_gate_up", 2 * s, h, self.moe_layers, "dense", "col"),
                        Matmul("shared_down", h, s, self.moe_layers, "dense", "row")]
            out += [Matmul("expert_gate_up", 2 * i, h, self.moe_layers, "expert", "col"),
                    Matmul("expert_down", h, i, self.moe_layers, "expert", "row")]
        out.append(Matmul("lm_head", self.vocab, h, 1, "dense", "col"))
        return out

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "attention": self.attention, "params": self.params,
                "active_params": self.active_params or self.computed_active_params,
                "kv_bytes_per_token_bf16": self.kv_bytes_per_token("bf16"), "weight_dtype": self.weight_dtype}


# --------------------------------------------------------------------------------------------------- presets
# From the models' published configs as collected in the project's reference notes (models.csv).
_SRC = "models.csv (published config.json)"
PRESETS: dict[str, ModelSpec] = {m.name: m for m in [
    ModelSpec(name="llama-3.1-8b", family="dense", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128,
              ffn_intermediate=14336, vocab=128256, total_params=8.03e9, active_params=8.03e9, source=_SRC),
    ModelSpec(name="llama-3.1-70b", family="dense", layers=80, hidden=8192, heads=64, kv_heads=8, head_dim=128,
              ffn_intermediate=28672, vocab=128256, total_params=70.6e9, active_params=70.6e9, source=_SRC),
    ModelSpec(name="llama-3.1-405b", family="dense", layers=126, hidden=16384, heads=128, kv_heads=8, head_dim=128,
              ffn_intermediate=53248, vocab=128256, total_params=405.9e9, active_params=405.9e9, source=_SRC),
    ModelSpec(name="mixtral-8x7b", family="moe", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128,
              moe_intermediate=14336, routed_experts=8, experts_per_token=2, vocab=32000,
              total_params=46.7e9, active_params=12.9e9, source=_SRC + "; every layer MoE"),
    ModelSpec(name="qwen3-30b-a3b", family="moe", layers=48, hidden=2048, heads=32, kv_heads=4, head_dim=128,
              moe_intermediate=768, routed_experts=128, experts_per_token=8, vocab=151936,
              total_params=30.5e9, active_params=3.3e9,
              source=_SRC + "; every layer MoE; head_dim 128 != hidden/heads"),
    ModelSpec(name="qwen3-235b-a22b", family="moe", layers=94, hidden=4096, heads=64, kv_heads=4, head_dim=128,
              moe_intermediate=1536, routed_experts=128, experts_per_token=8, vocab=151936,
              total_params=235e9, active_params=22e9, source=_SRC + "; every layer MoE"),
    ModelSpec(name="deepseek-v3", family="moe", layers=61, hidden=7168, heads=128, kv_heads=128, head_dim=128,
              ffn_intermediate=18432, moe_intermediate=2048, routed_experts=256, shared_experts=1,
              experts_per_token=8, dense_layers_first=3, vocab=129280, attention="mla", kv_lora_rank=512,
              qk_rope_head_dim=64, q_lora_rank=1536, v_head_dim=128, weight_dtype="fp8",
              total_params=671e9, active_params=37e9,
              source=_SRC + "; MLA; q_lora_rank 1536, v_head_dim 128; the 14B MTP module not counted"),
    ModelSpec(name="kimi-k2", family="moe", layers=61, hidden=7168, heads=64, kv_heads=64, head_dim=128,
              ffn_intermediate=18432, moe_intermediate=2048, routed_experts=384, shared_experts=1,
              experts_per_token=8, dense_layers_first=1, vocab=163840, attention="mla", kv_lora_rank=512,
              qk_rope_head_dim=64, q_lora_rank=1536, v_head_dim=128, weight_dtype="fp8",
              total_params=1040e9, active_params=32e9,
              source=_SRC + "; DeepSeek-V3 architecture with 384 experts and 64 heads"),
    ModelSpec(name="gpt-oss-120b", family="moe", layers=36, hidden=2880, heads=64, kv_heads=8, head_dim=64,
              moe_intermediate=2880, routed_experts=128, experts_per_token=4, vocab=201088,
              sliding_window=128, sliding_window_layers=18, weight_dtype="bf16", expert_weight_dtype="mxfp4",
              total_params=116.8e9, active_params=5.1e9,
              source=_SRC + "; experts MXFP4, the rest bf16; alternating sliding-window (128) and full attention"),
    # Llama 2 (multi-head attention in 7B and 13B, GQA in 70B); totals: the Hugging Face model pages' counts
    ModelSpec(name="llama-2-7b", family="dense", layers=32, hidden=4096, heads=32, kv_heads=32, head_dim=128,
              ffn_intermediate=11008, vocab=32000, weight_dtype="fp16", total_params=6.74e9, active_params=6.74e9,
              source="huggingface.co/meta-llama/Llama-2-7b-hf config.json"),
    ModelSpec(name="llama-2-13b", family="dense", layers=40, hidden=5120, heads=40, kv_heads=40, head_dim=128,
              ffn_intermediate=13824, vocab=32000, weight_dtype="fp16", total_params=13.0e9, active_params=13.0e9,
              source="huggingface.co/meta-llama/Llama-2-13b-hf config.json"),
    ModelSpec(name="llama-2-70b", family="dense", layers=80, hidden=8192, heads=64, kv_heads=8, head_dim=128,
              ffn_intermediate=28672, vocab=32000, weight_dtype="fp16", total_params=69.0e9, active_params=69.0e9,
              source="huggingface.co/meta-llama/Llama-2-70b-hf config.json"),
]}
# Releases that keep an earlier model's architecture: the same shapes under their own names.
_SAME_ARCHITECTURE = {
    "llama-3.3-70b": ("llama-3.1-70b", "huggingface.co/meta-llama/Llama-3.3-70B-Instruct config.json "
                                       "(the Llama 3.1 70B dimensions)"),
    "deepseek-r1": ("deepseek-v3", "huggingface.co/deepseek-ai/DeepSeek-R1 config.json (DeepseekV3ForCausalLM, "
                                   "the DeepSeek-V3 dimensions); the MTP module not counted"),
}
for _name, (_base, _source) in _SAME_ARCHITECTURE.items():
    PRESETS[_name] = PRESETS[_base].model_copy(update={"name": _name, "source": _source})


# --------------------------------------------------------------------------------------------------- loading
def _one_line(e: Exception) -> str:
    errs = getattr(e, "errors", None)
    if callable(errs):
        try:
            first = errs()[0]
            loc = ".".join(str(x) for x in first.get("loc", ())) or "(root)"
            n = len(errs())
            return f"{loc}: {first.get('msg')}" + (f" (and {n - 1} more)" if n > 1 else "")
        except Exception:
            pass
    return " ".join(str(e).split())


def from_dict(data: Any, where: str = "model") -> ModelSpec:
    """A model from our JSON (ModelSpec fields) or from a Hugging Face config (detected by its keys)."""
    if not isinstance(data, dict):
        raise ModelError(f"{where}: a model must be a JSON object")
    if "hidden_size" in data or "model_type" in data or "text_config" in data:
        data = from_hf_config(data, where)
    try:
        return ModelSpec.model_validate(data)
    except ValueError as e:
        raise ModelError(f"{where}: {_one_line(e)}") from None


def _hf_int(cfg: dict, *keys: str, default: Any = None, where: str = "config") -> Any:
    for k in keys:
        v = cfg.get(k)
        if v is not None:
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0
                    or v > MAX_DIMENSION or v != int(v)):
                raise ModelError(f"{where}: {k} must be a non-negative whole number <= {MAX_DIMENSION}, got {v!r}")
            return int(v)
    return default


def from_hf_config(cfg: dict, where: str = "config.json") -> dict:
    """Map a Hugging Face ``config.json`` (Llama, Mixtral, Qwen3-MoE, DeepSeek-V3 / Kimi-K2, gpt-oss and
    look-alikes) to ModelSpec fields. Total parameters are computed (a config does not state them)."""
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the LLM here
        cfg = {**cfg["text_config"], "name_or_path": cfg.get("_name_or_path")}
    need = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in need if cfg.get(k) is None]
    if missing:
        raise ModelError(f"{where}: not a transformer config this loader knows (missing {', '.join(missing)})")
    g = lambda *k, default=None: _hf_int(cfg, *k, default=default, where=where)  # noqa: E731
    hidden, layers, heads = g("hidden_size"), g("num_hidden_layers"), g("num_attention_heads")
    if not (hidden and layers and heads):
        raise ModelError(f"{where}: hidden_size, num_hidden_layers and num_attention_heads must be positive")
    out: dict[str, Any] = {
        "name": str(cfg.get("name_or_path") or cfg.get("_name_or_path") or cfg.get("model_type") or "hf-model"),
        "layers": layers, "hidden": hidden, "heads": heads,
        "kv_heads": g("num_key_value_heads", default=heads), "vocab": g("vocab_size"),
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "source": f"Hugging Face config {where}",
    }
    experts = g("n_routed_experts", "num_local_experts", "num_experts")
    if cfg.get("kv_lora_rank"):
        out.update(attention="mla", kv_lora_rank=g("kv_lora_rank"), qk_rope_head_dim=g("qk_rope_head_dim", default=0),
                   q_lora_rank=g("q_lora_rank"), head_dim=g("qk_nope_head_dim", default=hidden // heads),
                   v_head_dim=g("v_head_dim"))
    else:
        out["head_dim"] = g("head_dim", default=hidden // heads)
    inter = g("intermediate_size")
    if experts:
        # Mixtral and gpt-oss name the expert width intermediate_size; Qwen3-MoE and DeepSeek moe_intermediate_size
        moe_inter = g("moe_intermediate_size", default=inter)
        dense_first = g("first_k_dense_replace", default=0)
        mlp_only = cfg.get("mlp_only_layers") or []
        step = g("decoder_sparse_step", "moe_layer_freq", default=1)
        if mlp_only or step not in (0, 1):
            raise ModelError(f"{where}: interleaved dense/MoE layers (mlp_only_layers, sparse step {step}) are not "
                             "modelled; only leading dense layers (first_k_dense_replace)")
        out.update(family="moe", routed_experts=experts, moe_intermediate=moe_inter,
                   experts_per_token=g("num_experts_per_tok", "experts_per_token", "num_experts_per_token"),
                   shared_experts=g("n_shared_experts", default=0) or 0, dense_layers_first=dense_first)
        if dense_first:
            out["ffn_intermediate"] = inter
        if not out["experts_per_token"]:
            raise ModelError(f"{where}: a MoE config needs num_experts_per_tok")
    else:
        out.update(family="dense", ffn_intermediate=inter)
    types = cfg.get("layer_types")
    window = g("sliding_window")
    if window and isinstance(types, list):
        n = sum(1 for t in types if str(t).startswith("sliding"))
        if n:
            out.update(sliding_window=window, sliding_window_layers=n)
    elif window and cfg.get("use_sliding_window"):
        out.update(sliding_window=window, sliding_window_layers=layers)
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
    q = cfg.get("quantization_config")
    quant: dict[str, Any] = q if isinstance(q, dict) else {}
    method = str(quant.get("quant_method", "")).lower()
    try:
        out["weight_dtype"] = norm_dtype(dtype)
    except ModelError:
        out["weight_dtype"] = "bf16"
    if method == "fp8":
        out["weight_dtype"] = "fp8"
    elif method == "mxfp4":  # gpt-oss: the experts only
        out["expert_weight_dtype"] = "mxfp4"
    return out


def load(path: str | Path) -> ModelSpec:
    return from_dict(read_json(path, MAX_MODEL_FILE_BYTES, "model", ModelError), str(path))


def resolve(ref: str | Path) -> ModelSpec:
    """A preset by name (case-insensitive) or a JSON file (ours or a Hugging Face config.json) by path."""
    ref_s = str(ref).strip()
    preset = PRESETS.get(ref_s.lower())
    if preset is not None:
        return preset
    p = Path(ref_s)
    if p.is_dir() and (p / "config.json").exists():
        p = p / "config.json"
    if p.exists() or p.suffix == ".json" or "/" in ref_s:
        return load(p)
    raise ModelError(f"unknown model {ref_s!r}: give a JSON file or one of: {', '.join(PRESETS)}")
