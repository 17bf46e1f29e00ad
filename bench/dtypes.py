"""Number formats, stated once: names, aliases, bytes per element, the torch dtype, the matmul they compute in.

Two vocabularies meet here. Kernels, measurements and a profile's ``peaks.matmul_flops`` use torch's names
("bfloat16", "float8_e4m3fn"; "tf32" is float32 storage with TF32 tensor-core math). Model files and the
roofline model speak of storage formats by their short names ("bf16", "fp8", "mxfp4"), some of which torch
cannot hold. Every format has both names; ``name()`` and ``short()`` accept either (and the usual aliases).

Bytes per element count what one element costs in memory. Block-scaled 4-bit formats carry their scales:
MXFP4 = 4 bits + one 8-bit scale per 32 elements (OCP MX specification) = 4.25 bits; NVFP4 = 4 bits + one FP8
scale per 16 elements = 4.5 bits. DeepSeek's FP8 uses one fp32 scale per 128×128 block (< 0.03%): 1 byte.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Format:
    name: str  # torch's name where torch has the format, else the format's own
    short: str  # what model files and the roofline model call it
    bytes: float  # memory per element, block scales included
    torch: str | None  # attribute of the torch module that stores it (None: torch cannot hold it)
    # the profile's matmul dtypes (peaks.matmul_flops keys) weights in this format compute in, best first: a
    # card without the format's tensor cores dequantises to the next (FP8 weights on an A100 run bf16 matmuls)
    compute: tuple[str, ...] = ()


FORMATS: tuple[Format, ...] = (
    Format("float64", "fp64", 8.0, "float64", ("float64",)),
    Format("float32", "fp32", 4.0, "float32", ("float32",)),
    Format("tf32", "tf32", 4.0, "float32", ("tf32", "float32")),
    Format("bfloat16", "bf16", 2.0, "bfloat16", ("bfloat16",)),
    Format("float16", "fp16", 2.0, "float16", ("float16", "bfloat16")),
    Format("float8_e4m3fn", "fp8", 1.0, "float8_e4m3fn", ("float8_e4m3fn", "bfloat16", "float16")),
    Format("float8_e5m2", "fp8_e5m2", 1.0, "float8_e5m2", ("float8_e4m3fn", "bfloat16", "float16")),
    Format("int8", "int8", 1.0, "int8", ("int8", "bfloat16", "float16")),
    Format("mxfp4", "mxfp4", 4.25 / 8, None, ("float4_e2m1fn", "float8_e4m3fn", "bfloat16")),
    Format("nvfp4", "nvfp4", 4.5 / 8, None, ("float4_e2m1fn", "float8_e4m3fn", "bfloat16")),
    Format("float4_e2m1fn", "fp4", 0.5, None, ("float4_e2m1fn", "float8_e4m3fn", "bfloat16")),
    Format("int4", "int4", 0.5, None, ("bfloat16", "float16")),
)

_ALIASES = {"float": "float32", "half": "float16", "float8": "float8_e4m3fn", "fp8_e4m3": "float8_e4m3fn",
            "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2", "float4_e2m1fn_x2": "float4_e2m1fn"}
_BY_NAME: dict[str, Format] = {}
for _f in FORMATS:
    _BY_NAME[_f.name] = _BY_NAME[_f.short] = _f

# The matmul dtypes rooflab measures (bench/benchmarks/gemm.py); a spec's other rates (int8 OP/s, fp64) have no
# measured counterpart.
MATMUL: tuple[str, ...] = ("float32", "tf32", "bfloat16", "float16", "float8_e4m3fn")
# Floating-point formats a torch tensor holds and rooflab's kernels take as input.
TENSOR: tuple[str, ...] = ("float64", "float32", "float16", "bfloat16")
# Model storage formats a profile or model file may name (short names).
STORAGE: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", "fp8_e5m2", "int8", "mxfp4", "nvfp4", "fp4", "int4")


class UnknownDtype(ValueError):
    pass


def get(name: Any) -> Format:
    """The format called ``name`` (either vocabulary, an alias, or a torch dtype); UnknownDtype if none."""
    key = str(name).strip().lower().removeprefix("torch.")
    f = _BY_NAME.get(_ALIASES.get(key, key))
    if f is None:
        raise UnknownDtype(f"unknown dtype {str(name)!r} (known: {', '.join(STORAGE)}, or torch's names)")
    return f


def name(dt: Any) -> str:
    """torch's name: "bf16" -> "bfloat16", torch.float16 -> "float16"."""
    return get(dt).name


def short(dt: Any) -> str:
    """The storage format's short name: "bfloat16" -> "bf16"."""
    return get(dt).short


def bytes_per_element(dt: Any) -> float:
    return get(dt).bytes


def torch_dtype(dt: Any) -> Any:
    """The torch dtype that stores ``dt`` ("tf32" is stored as float32); UnknownDtype where torch has none."""
    import torch

    f = get(dt)
    if f.torch is None or not hasattr(torch, f.torch):
        raise UnknownDtype(f"torch {torch.__version__} has no dtype for {f.name}")
    return getattr(torch, f.torch)
