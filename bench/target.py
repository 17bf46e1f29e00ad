"""Where rooflab runs and what that place can do.

This is the one module that decides between CUDA and CPU, and the only one that sets
``TRITON_INTERPRET``. Triton reads that variable when a ``@triton.jit`` function is *decorated*,
so the switch must happen before any module under ``kernels/`` is imported; ``configure()`` refuses
to flip the mode once a Triton kernel module is loaded in the other mode.

Nothing else in rooflab calls ``torch.cuda.is_available()`` or reads ``TRITON_INTERPRET``: it asks
the :class:`Target` it was given.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Literal

Choice = Literal["auto", "cuda", "cpu"]
CHOICES: tuple[str, ...] = ("auto", "cuda", "cpu")


class TargetError(RuntimeError):
    """The requested target cannot be used (e.g. --device cuda without a GPU)."""


@dataclass(frozen=True)
class Target:
    backend: Literal["cuda", "cpu"]
    reason: str  # why this backend was chosen, printed and recorded
    name: str  # device name ("NVIDIA H100 80GB HBM3", or the CPU model)
    torch_device: str  # "cuda:0" or "cpu"
    memory_bytes: int  # device memory (GPU) or host RAM (CPU)
    compute_units: int  # SMs (GPU) or logical cores usable by torch (CPU)
    cache_bytes: int  # L2 (GPU) or last-level cache (CPU): what a memory benchmark must outgrow
    capability: tuple[int, int] | None = None  # CUDA compute capability
    driver: str | None = None
    cuda_version: str | None = None
    uuid: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_cuda(self) -> bool:
        return self.backend == "cuda"

    @property
    def triton_interpreted(self) -> bool:
        """Triton kernels run in the interpreter: correct, but their timings mean nothing."""
        return self.backend == "cpu"

    @property
    def triton_mode(self) -> Literal["interpreter", "cuda"]:
        """Mode label for a Measurement of a Triton kernel."""
        return "interpreter" if self.triton_interpreted else "cuda"

    @property
    def slug(self) -> str:
        import re

        s = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        return s or self.backend

    def supports_fp8(self) -> tuple[bool, str]:
        if not self.is_cuda:
            return False, "fp8 matmul needs a CUDA GPU"
        if self.capability is None or self.capability < (8, 9):
            sm = "".join(map(str, self.capability or (0, 0)))
            return False, f"fp8 needs compute capability >= 8.9 (this GPU is sm_{sm})"
        return True, ""

    def synchronize(self) -> None:
        if self.is_cuda:
            import torch

            torch.cuda.synchronize()

    def as_dict(self) -> dict:
        d = asdict(self)
        d["mode"] = self.backend
        return d


_CURRENT: Target | None = None


def _kernels_loaded() -> list[str]:
    return [m for m in sys.modules if m == "kernels" or m.startswith("kernels.")]


def _set_interpreter(on: bool) -> None:
    want = "1" if on else "0"
    have = os.environ.get("TRITON_INTERPRET", "0")
    loaded = _kernels_loaded()
    if loaded and (have == "1") != on:
        raise TargetError(
            f"Triton kernels were already imported with TRITON_INTERPRET={have}; "
            f"choose the device before importing {loaded[0]}"
        )
    os.environ["TRITON_INTERPRET"] = want


def _cpu_cache_bytes() -> int:
    """Largest cache level the OS reports (the LLC); 32 MiB if it reports none."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in os.listdir(base):
            try:
                with open(f"{base}/{idx}/size") as f:
                    txt = f.read().strip()
            except OSError:
                continue
            mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(txt[-1:].upper(), 1)
            num = txt[:-1] if txt[-1:].isalpha() else txt
            try:
                best = max(best, int(num) * mult)
            except ValueError:
                continue
    except OSError:
        pass
    return best or 32 * 1024**2


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _cpu_target(reason: str) -> Target:
    import torch

    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = 0
    return Target(
        backend="cpu",
        reason=reason,
        name=_cpu_name(),
        torch_device="cpu",
        memory_bytes=int(mem),
        compute_units=torch.get_num_threads(),
        cache_bytes=_cpu_cache_bytes(),
        extra={"logical_cpus": os.cpu_count(), "machine": platform.machine()},
    )


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML absent or unusable: the driver version is simply unknown
        return None


def _cuda_target(reason: str) -> Target:
    import torch

    idx = torch.cuda.current_device()
    p = torch.cuda.get_device_properties(idx)
    l2 = int(getattr(p, "L2_cache_size", 0) or 0) or 50 * 1024**2
    uuid = getattr(p, "uuid", None)
    return Target(
        backend="cuda",
        reason=reason,
        name=p.name,
        torch_device=f"cuda:{idx}",
        memory_bytes=int(p.total_memory),
        compute_units=int(p.multi_processor_count),
        cache_bytes=l2,
        capability=(int(p.major), int(p.minor)),
        driver=_nvml_driver(),
        cuda_version=torch.version.cuda,
        uuid=str(uuid) if uuid is not None else None,
    )


def configure(choice: str = "auto") -> Target:
    """Pick the target, set the Triton interpreter switch accordingly, and remember it."""
    global _CURRENT
    if choice not in CHOICES:
        raise TargetError(f"unknown device {choice!r}: choose one of {', '.join(CHOICES)}")
    import torch

    has_cuda = torch.cuda.is_available()
    if choice == "cuda":
        if not has_cuda:
            raise TargetError("--device cuda was asked for, but torch sees no CUDA GPU")
        _set_interpreter(False)
        tgt = _cuda_target("--device cuda")
    elif choice == "cpu":
        _set_interpreter(True)
        why = "--device cpu" + (" (a CUDA GPU is present but was not chosen)" if has_cuda else "")
        tgt = _cpu_target(why + "; Triton kernels run in the interpreter for correctness only")
    elif has_cuda:
        _set_interpreter(False)
        tgt = _cuda_target("auto: torch sees a CUDA GPU")
    else:
        _set_interpreter(True)
        tgt = _cpu_target(
            "auto: no CUDA GPU visible to torch; PyTorch kernels are timed on the CPU and "
            "Triton kernels run in the interpreter for correctness only"
        )
    _CURRENT = tgt
    return tgt


def current() -> Target:
    """The target chosen by ``configure()`` (configuring ``auto`` on first use)."""
    return _CURRENT if _CURRENT is not None else configure("auto")
