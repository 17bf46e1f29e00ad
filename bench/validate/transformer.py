"""The reduced transformer whose decode steps ``rooflab validate`` measures: random weights, a random KV cache,
one decode step (docs/validate.md describes the step kernel by kernel)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .. import checks, dtypes
from ..models import ModelSpec
from ..target import Target
from .errors import ValidateError

if TYPE_CHECKING:  # kernels/ is imported once the target has set TRITON_INTERPRET (bench/target.py)
    from kernels.decode_attention import DecodePlan, DecodeWorkspace

RMS_EPS = 1e-5
ROPE_THETA = 500_000.0  # Llama-3's rotary base


def supported(model: ModelSpec) -> str | None:
    """Why this transformer builder cannot run ``model`` (None when it can): it builds GQA attention with full
    context in every layer."""
    if model.attention != "gqa":
        return f"{model.name} uses {model.attention.upper()} attention; validate builds GQA transformers only"
    if model.sliding_window_layers:
        return f"{model.name} has sliding-window layers; validate builds full-attention layers only"
    hd = model.head_dim
    if hd < 16 or hd > 256 or hd & (hd - 1):
        return f"{model.name} has head_dim {hd}; the decode kernel needs a power of two in [16, 256]"
    return None


def step_dtype(target: Target) -> str:
    """The profile dtype name the step computes in: bf16 on GPU (fp16 before sm_80), fp32 on CPU."""
    if not target.is_cuda:
        return "float32"
    return "bfloat16" if (target.capability or (0, 0)) >= (8, 0) else "float16"


def grouped_mm_available() -> bool:
    return hasattr(torch, "_grouped_mm")


def random_normal(shape: tuple[int, ...], dtype: torch.dtype, device: str, gen: torch.Generator,
                  std: float) -> torch.Tensor:
    """Random normal values with standard deviation ``std`` (never zeros or constants), drawn in place in the
    tensor's own dtype: no float32 copy of a many-GB weight."""
    return torch.empty(shape, dtype=dtype, device=device).normal_(0.0, std, generator=gen)


def rope_phases(head_dim: int, position: int, device: str) -> torch.Tensor:
    """Rotary phases e^{i·position·θ_j}, θ_j = ROPE_THETA^(−2j/head_dim), in complex128."""
    j = torch.arange(head_dim // 2, dtype=torch.float64, device=device)
    ang = position * ROPE_THETA ** (-2.0 * j / head_dim)
    return torch.polar(torch.ones_like(ang), ang)


# ------------------------------------------------------------------------------------------------ weights
@dataclass
class GatedMLP:
    """A gated MLP, nn.Linear layouts: ``gate_up [2·width, hidden]`` (gate | up), ``down [hidden, width]``."""

    gate_up: torch.Tensor
    down: torch.Tensor


@dataclass
class Experts:
    """Routed experts, stacked as the row-major ``[groups, K, N]`` operands a grouped GEMM takes:
    ``w13 [E, hidden, 2·width]`` (gate | up), ``w2 [E, width, hidden]``; ``router [E, hidden]``."""

    router: torch.Tensor
    w13: torch.Tensor
    w2: torch.Tensor
    top_k: int  # experts per token

    @property
    def count(self) -> int:
        return int(self.router.shape[0])

    @property
    def width(self) -> int:
        return int(self.w2.shape[1])


@dataclass
class Layer:
    """One layer's weights: fused QKV ``[(Hq + 2·Hkv)·D, hidden]`` and O ``[hidden, Hq·D]``; a dense layer has
    ``mlp``, a MoE layer ``experts`` and, with shared experts, ``mlp`` as well (every token passes through it)."""

    wqkv: torch.Tensor
    wo: torch.Tensor
    experts: Experts | None = None
    mlp: GatedMLP | None = None

    def tensors(self) -> list[torch.Tensor]:
        out = [self.wqkv, self.wo]
        if self.experts is not None:
            out += [self.experts.router, self.experts.w13, self.experts.w2]
        if self.mlp is not None:
            out += [self.mlp.gate_up, self.mlp.down]
        return out


# -------------------------------------------------------------------------------------------- a point's state
@dataclass
class StepOutput:
    """What one step wrote: logits [B, vocab], their argmax (greedy sampling), the residual stream after the last
    layer, and the per-layer outputs the check compares (attention, new K/V in the cache, experts; no copies)."""

    logits: torch.Tensor
    tokens: torch.Tensor
    hidden: torch.Tensor
    parts: dict[str, torch.Tensor]


@dataclass
class DecodeState:
    """A point's inputs and buffers: hidden states of the ``batch`` new tokens, a KV cache per layer of
    ``context`` tokens per sequence (the first ``context`` − 1 random, the last the new token's slot), the rotary
    phases of the new token's position, the attention output buffer and (GPU) the split plan and workspace."""

    batch: int
    context: int
    x: torch.Tensor  # [B, hidden]
    k_cache: list[torch.Tensor]  # per layer [B, context, Hkv, D]
    v_cache: list[torch.Tensor]
    seq_lens: torch.Tensor  # int32 [B], all ``context``
    rope64: torch.Tensor  # complex128 [D/2]: the reference's phases
    rope: torch.Tensor  # complex64 [D/2]: the step's
    attn_out: torch.Tensor  # [B, Hq, D]: what the decode-attention kernel writes
    plan: DecodePlan | None = None
    workspace: DecodeWorkspace | None = None
    out: StepOutput | None = None  # the last step's outputs

    @property
    def pos(self) -> int:
        """The new token's position (its cache slot)."""
        return self.context - 1


# ------------------------------------------------------------------------------------------------ the model
def _moe_shape(spec: ModelSpec) -> tuple[int, int, int]:
    if spec.routed_experts is None or spec.experts_per_token is None or spec.moe_intermediate is None:
        raise ValidateError(f"{spec.name}: a MoE layer needs routed_experts, experts_per_token and moe_intermediate")
    return spec.routed_experts, spec.experts_per_token, spec.moe_intermediate


def _ffn_width(spec: ModelSpec) -> int:
    if spec.ffn_intermediate is None:
        raise ValidateError(f"{spec.name}: a dense layer needs ffn_intermediate")
    return spec.ffn_intermediate


class Transformer:
    """The reduced model's weights and its decode step (layouts: ``Layer``, ``Experts``, ``GatedMLP``)."""

    def __init__(self, spec: ModelSpec, dtype: str, device: str, gen: torch.Generator, *,
                 use_grouped_mm: bool | None = None):
        self.spec, self.dtype_name, self.device = spec, dtype, device
        self.dtype: torch.dtype = dtypes.torch_dtype(dtype)
        s, dt = spec, self.dtype
        self.H, self.Hq, self.Hkv, self.D = s.hidden, s.heads, s.kv_heads, s.head_dim
        H, D = self.H, self.D
        qkv_out = (self.Hq + 2 * self.Hkv) * D
        self.grouped = grouped_mm_available() if use_grouped_mm is None else use_grouped_mm
        self.layers: list[Layer] = []
        for i in range(s.layers):  # drawn in a fixed order: a seed gives the same weights
            layer = Layer(wqkv=random_normal((qkv_out, H), dt, device, gen, H ** -0.5),
                          wo=random_normal((H, self.Hq * D), dt, device, gen, (self.Hq * D) ** -0.5))
            if s.is_moe and i >= s.dense_layers_first:
                E, top_k, inter = _moe_shape(s)
                layer.experts = Experts(router=random_normal((E, H), dt, device, gen, H ** -0.5),
                                        w13=random_normal((E, H, 2 * inter), dt, device, gen, H ** -0.5),
                                        w2=random_normal((E, inter, H), dt, device, gen, inter ** -0.5),
                                        top_k=top_k)
                if s.shared_experts:
                    si = s.shared_experts * inter
                    layer.mlp = GatedMLP(gate_up=random_normal((2 * si, H), dt, device, gen, H ** -0.5),
                                         down=random_normal((H, si), dt, device, gen, si ** -0.5))
            else:
                width = _ffn_width(s)
                layer.mlp = GatedMLP(gate_up=random_normal((2 * width, H), dt, device, gen, H ** -0.5),
                                     down=random_normal((H, width), dt, device, gen, width ** -0.5))
            self.layers.append(layer)
        self.lm_head = random_normal((s.vocab, H), dt, device, gen, H ** -0.5)
        # each MoE layer's expert ids of the last step [B, top_k] (None for a dense layer)
        self.routes: list[torch.Tensor | None] = [None] * s.layers

    @property
    def has_moe(self) -> bool:
        return any(layer.experts is not None for layer in self.layers)

    @property
    def weight_bytes(self) -> int:
        n = self.lm_head.numel() + sum(t.numel() for layer in self.layers for t in layer.tensors())
        return n * self.lm_head.element_size()

    # ---------------------------------------------------------------------------------------------- state
    def new_state(self, batch: int, context: int, gen: torch.Generator) -> DecodeState:
        """A point's inputs (``DecodeState``), drawn from ``gen``."""
        B, L = batch, context
        x = random_normal((B, self.H), self.dtype, self.device, gen, 1.0)
        k = [random_normal((B, L, self.Hkv, self.D), self.dtype, self.device, gen, 1.0) for _ in self.layers]
        v = [random_normal((B, L, self.Hkv, self.D), self.dtype, self.device, gen, 1.0) for _ in self.layers]
        rope64 = rope_phases(self.D, context - 1, self.device)
        return DecodeState(batch=B, context=context, x=x, k_cache=k, v_cache=v,
                           seq_lens=torch.full((B,), L, dtype=torch.int32, device=self.device),
                           rope64=rope64, rope=rope64.to(torch.complex64),
                           attn_out=torch.empty(B, self.Hq, self.D, dtype=self.dtype, device=self.device))

    def attention_setup(self, st: DecodeState, num_sms: int) -> None:
        """GPU: the split plan and the split-KV workspace, fixed before capture (no allocation in the step)."""
        from kernels import decode_attention

        plan = decode_attention.plan_splits(st.batch, self.Hkv, st.context, num_sms, on_gpu=True)
        st.plan = plan
        if plan.num_splits > 1:
            st.workspace = decode_attention.DecodeWorkspace.allocate(st.batch, self.Hq, self.D, plan.num_splits,
                                                                     self.device)

    def poison_buffers(self, st: DecodeState) -> None:
        """Poison what persists between steps and the step must write: the new token's slot of every KV cache, and
        what our Triton kernel writes (attention output, split partials)."""
        for kc, vc in zip(st.k_cache, st.v_cache):
            checks.poison(kc[:, st.pos])
            checks.poison(vc[:, st.pos])
        checks.poison(st.attn_out)
        if st.workspace is not None:
            checks.poison(st.workspace.partial_out)
            checks.poison(st.workspace.partial_lse)

    # ----------------------------------------------------------------------------------------------- step
    def step(self, st: DecodeState, on_gpu: bool) -> torch.Tensor:
        """One decode step: logits [B, vocab] of the new tokens (the argmax is taken, as greedy sampling). The
        outputs are left in ``st.out``."""
        x = st.x
        pos = st.pos
        parts: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            xn = F.rms_norm(x, (self.H,), eps=RMS_EPS)
            a = self._attention(F.linear(xn, layer.wqkv), st, i, on_gpu)
            parts[f"layer {i} attention"] = a
            parts[f"layer {i} new K in the cache"] = st.k_cache[i][:, pos]
            parts[f"layer {i} new V in the cache"] = st.v_cache[i][:, pos]
            x = torch.addmm(x, a, layer.wo.t())  # O projection + residual in one GEMM
            xn = F.rms_norm(x, (self.H,), eps=RMS_EPS)
            if layer.experts is not None:
                out = self._moe(xn, layer.experts, i)
                parts[f"layer {i} experts"] = out
                x = x + out
            if layer.mlp is not None:  # a dense layer, or a MoE layer's shared experts
                x = self._mlp(xn, x, layer.mlp)
        logits = F.linear(F.rms_norm(x, (self.H,), eps=RMS_EPS), self.lm_head)
        st.out = StepOutput(logits=logits, tokens=torch.argmax(logits, dim=-1), hidden=x, parts=parts)
        return logits

    def _attention(self, qkv: torch.Tensor, st: DecodeState, i: int, on_gpu: bool) -> torch.Tensor:
        B, Hq, Hkv, D, pos = st.batch, self.Hq, self.Hkv, self.D, st.pos
        qk = qkv[:, : (Hq + Hkv) * D].float().reshape(B, Hq + Hkv, D // 2, 2)
        qk = torch.view_as_real(torch.view_as_complex(qk) * st.rope).reshape(B, Hq + Hkv, D).to(self.dtype)
        q, k_new = qk[:, :Hq], qk[:, Hq:]
        v_new = qkv[:, (Hq + Hkv) * D:].view(B, Hkv, D)
        kc, vc = st.k_cache[i], st.v_cache[i]
        kc[:, pos].copy_(k_new)  # the KV-cache write: the new token's slot of every sequence
        vc[:, pos].copy_(v_new)
        from kernels import decode_attention

        if on_gpu:
            if st.plan is None:
                raise RuntimeError("attention_setup must run before a GPU step")
            o = decode_attention.decode_attention(q, kc, vc, st.seq_lens, out=st.attn_out, workspace=st.workspace,
                                                  max_seq_len=pos + 1, num_splits=st.plan.num_splits)
        else:
            k, v, gqa = decode_attention.sdpa_inputs(kc, vc, Hq, context=pos + 1)
            o = decode_attention.sdpa_decode(q, k, v, enable_gqa=gqa)
        return o.reshape(B, Hq * D)

    @staticmethod
    def _mlp(xn: torch.Tensor, x: torch.Tensor, mlp: GatedMLP) -> torch.Tensor:
        """x + the gated MLP of xn (the residual add in the down GEMM)."""
        gu = F.linear(xn, mlp.gate_up)
        f = gu.shape[-1] // 2
        return torch.addmm(x, F.silu(gu[:, :f]) * gu[:, f:], mlp.down.t())

    def _moe(self, xn: torch.Tensor, ex: Experts, i: int) -> torch.Tensor:
        """The routed experts' weighted output for each token: router → top-k → softmax over the k → sort by
        expert → grouped gate+up GEMM → SiLU·mul → grouped down GEMM → weighted combine."""
        E, k, inter = ex.count, ex.top_k, ex.width
        B = xn.shape[0]
        vals, ids = torch.topk(F.linear(xn, ex.router).float(), k, dim=-1)
        gates = torch.softmax(vals, dim=-1)
        self.routes[i] = ids
        flat = ids.reshape(-1)
        order = torch.sort(flat, stable=True).indices  # slots in expert order
        rows = xn.index_select(0, order // k)
        if self.grouped:
            counts = torch.zeros(E, dtype=torch.int32, device=xn.device).scatter_add_(
                0, flat, torch.ones_like(flat, dtype=torch.int32))  # rows per expert, on the device (graph-safe)
            offs = torch.cumsum(counts, 0, dtype=torch.int32)
            h = torch._grouped_mm(rows, ex.w13, offs=offs)
            y = torch._grouped_mm(F.silu(h[:, :inter]) * h[:, inter:], ex.w2, offs=offs)
        else:  # one GEMM per expert the batch hits (needs the counts on the host: eager only)
            per_expert: list[int] = torch.bincount(flat, minlength=E).tolist()
            outs, lo = [], 0
            for e, c in enumerate(per_expert):
                if c:
                    h = rows[lo:lo + c] @ ex.w13[e]
                    outs.append((F.silu(h[:, :inter]) * h[:, inter:]) @ ex.w2[e])
                    lo += c
            y = torch.cat(outs)
        y = torch.empty_like(y).index_copy_(0, order, y).view(B, k, self.H)  # back to (token, slot) order
        return torch.bmm(gates.to(y.dtype).unsqueeze(1), y).squeeze(1)
