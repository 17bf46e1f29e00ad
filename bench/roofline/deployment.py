"""How a model is spread over the GPUs of one replica, and in which number formats it runs.

A :class:`Deployment` names the tensor-parallel (``tp``) and expert-parallel (``ep``) degrees, the GPUs of a
replica (``gpus``, a multiple of both), the formats of the weights, the KV cache and the activations sent over
the links, the share of memory weights and KV may use, and how a decode step is launched (CUDA graphs, a
counted number of kernels, the attention kernel). ``resolved`` checks it against a model and fills the
defaults; the roofline model only reads resolved deployments. See docs/model.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .. import dtypes
from ..models import ModelError, ModelSpec, norm_dtype
from ..profile import Profile
from .hardware import RooflineError

DEFAULT_MEMORY_UTILIZATION = 0.9  # share of GPU memory for weights + KV (vLLM's default gpu_memory_utilization)


@dataclass(frozen=True)
class Deployment:
    tp: int = 1
    ep: int = 1
    gpus: int | None = None  # GPUs per replica; default max(tp, ep)
    weight_dtype: str | None = None  # None: as the model is released (e.g. fp8 DeepSeek, mxfp4 gpt-oss experts)
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"  # activations sent over the links
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION
    cuda_graphs: bool = False  # decode steps replayed from CUDA graphs: the graph launch cost per kernel applies
    kernels_per_step: int | None = None  # kernels one GPU launches per step when known (counted); None: the census
    # the decode-attention kernel the step runs, "impl" or "impl/layout" of the profile's decode curve (e.g.
    # "triton/contiguous"): its measured bandwidth is used; None: the best kernel measured at each point
    attention_impl: str | None = None
    phase_split: bool = False  # step time by phases (GEMMs, then attention), each under its own roofline

    @property
    def replica_gpus(self) -> int:
        """GPUs per replica: ``gpus`` when given, else max(tp, ep)."""
        return self.gpus if self.gpus is not None else max(self.tp, self.ep)

    def resolved(self, model: ModelSpec) -> Deployment:
        """Checked and completed; RooflineError with one line if it does not add up."""
        for k in ("tp", "ep"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise RooflineError(f"{k} must be a whole number >= 1, got {v!r}")
        gpus = self.replica_gpus
        if not isinstance(gpus, int) or gpus < 1 or gpus % self.tp or gpus % self.ep:
            raise RooflineError(f"gpus ({gpus}) must be a multiple of tp ({self.tp}) and of ep ({self.ep})")
        if self.ep > 1 and not model.is_moe:
            raise RooflineError(f"ep {self.ep}: {model.name} is dense (expert parallelism needs a MoE model)")
        if model.is_moe and self.ep > (model.routed_experts or 1):
            raise RooflineError(f"ep {self.ep} is more than {model.name}'s {model.routed_experts} experts")
        if self.kernels_per_step is not None and (not isinstance(self.kernels_per_step, int)
                                                  or isinstance(self.kernels_per_step, bool)
                                                  or self.kernels_per_step < 1):
            raise RooflineError(f"kernels_per_step must be a whole number >= 1, got {self.kernels_per_step!r}")
        if not (0 < self.memory_utilization <= 1):
            raise RooflineError(f"memory_utilization must be in (0, 1], got {self.memory_utilization}")
        if self.attention_impl is not None and (not isinstance(self.attention_impl, str)
                                                or not self.attention_impl.strip("/ ")):
            raise RooflineError(f"attention_impl must be 'impl' or 'impl/layout', got {self.attention_impl!r}")
        try:
            weight_dtype = norm_dtype(self.weight_dtype) if self.weight_dtype else None
            kv_dtype, act_dtype = norm_dtype(self.kv_dtype), norm_dtype(self.act_dtype)
        except ModelError as e:
            raise RooflineError(str(e)) from None
        return replace(self, gpus=gpus, weight_dtype=weight_dtype, kv_dtype=kv_dtype, act_dtype=act_dtype)


def native_support(profile: Profile, fmt: str) -> bool:
    """Whether a card runs the storage format ``fmt`` natively: 16- and 32-bit formats everywhere; a narrower one
    where the profile lists matmul FLOP/s for the format's own compute dtype (``bench.dtypes`` ``Format.compute[0]``):
    FP8 tensor cores for fp8, FP4 ones for fp4, nvfp4 and mxfp4. A format the card lacks still runs in the model
    (it computes in the next dtype the card has), but a deployment that asks for it is not one to buy the card for."""
    f = dtypes.get(fmt)
    return f.bytes >= 2 or not f.compute or bool(profile.peaks.matmul_flops.get(f.compute[0]))
