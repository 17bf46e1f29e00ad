"""``diagnose(target)``: identify the card, read its idle state and memory health, run the probes under the
telemetry sampler, and judge what was seen (docs/doctor.md)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__, telemetry
from ..telemetry import NvmlDevice, NvmlSession, Sampler, Unavailable, XidWatcher
from .judge import evaluate
from .probes import PROBES, ProbeFn
from .records import CardCheck, DoctorReport, Findings, ProbeResult, exit_code, overall
from .sku import KNOWN_SKUS, expected_for, sku_from_device_id, sku_from_name


def _run_probe(name: str, fn: ProbeFn, target: Any, quick: bool, dev: NvmlDevice | None,
               nvml_reason: str | None, interval_s: float) -> ProbeResult:
    res = ProbeResult(name=name)
    sampler = Sampler(dev, interval_s=interval_s, reason=nvml_reason)
    try:
        with sampler:
            out = fn(target, quick)
    except Exception as e:
        msg = " ".join(str(e).split())
        res.error = f"{type(e).__name__}: {msg[:200]}"
        out = {}
    res.telemetry = sampler.summary()
    res.passed = out.pop("passed", None) if out else None
    res.detail = str(out.pop("detail", "")) if out else ""
    res.values = out
    return res


def _prime(target: Any) -> None:
    """Start what the probes need before the first is sampled: the CUDA context, cuBLAS, the Triton import
    behind kernels/. Otherwise a second or more of the HBM probe's window is start-up on an idle GPU."""
    try:
        import torch

        import kernels.hbm  # noqa: F401 - imports triton

        a = torch.ones((256, 256), dtype=torch.bfloat16, device=target.torch_device)
        torch.mm(a, a)
        target.synchronize()
    except Exception:
        pass


def _empty_cuda_cache() -> None:
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:
        pass


def unavailable_report(reason: str, quick: bool = False) -> DoctorReport:
    return DoctorReport(status="unavailable", exit_code=0, reason=reason, quick=quick, rooflab=__version__)


def diagnose(target: Any, *, quick: bool = False, expect: str | None = None,
             open_nvml: Callable[[], NvmlSession] = telemetry.session, probes: dict[str, ProbeFn] | None = None,
             interval_s: float = telemetry.DEFAULT_INTERVAL_S, profiles_dir: Path | None = None) -> DoctorReport:
    """Identify the card, read its state, run the probes under telemetry, and judge."""
    t0 = time.perf_counter()
    if expect is not None and expect not in KNOWN_SKUS:
        raise ValueError(f"unknown SKU {expect!r}: choose one of {', '.join(KNOWN_SKUS)}")
    if not target.is_cuda:
        return _no_cuda(target, open_nvml, quick, t0)
    f = Findings(target_memory_bytes=target.memory_bytes, target_sms=target.compute_units, own_pid=os.getpid())
    dev = None
    try:
        dev = open_nvml().device_for(target)
    except Unavailable as e:
        f.nvml_reason = str(e)
    watcher = None
    idle_t = None
    if dev is not None:
        # the idle state first, before any probe allocates memory or starts a context of its own
        f.identity = dev.identity()
        f.idle = dev.sample(processes=False)
        f.idle_processes = dev.processes()
        f.health_start = dev.health()
        watcher = XidWatcher(dev)
        idle_t = telemetry.summarize([f.idle], f.identity, f.health_start, unsupported=dict(dev.unsupported))
    else:
        f.identity = {"name": target.name}
    if probes is None:
        _prime(target)
    for name, fn in (probes if probes is not None else PROBES).items():
        f.probes[name] = _run_probe(name, fn, target, quick, dev, f.nvml_reason, interval_s)
        if probes is None:
            _empty_cuda_cache()
    if dev is not None:
        f.health_end = dev.health()
        if watcher is not None:
            events = watcher.poll()
            f.xids = list(events) if watcher.supported else None
            f.xid_reason = watcher.reason
            watcher.close()
        f.unsupported = dict(dev.unsupported)
    sku = sku_from_device_id(f.identity.get("pci_device_id")) or sku_from_name(f.identity.get("name"))
    exp = expected_for(sku, profiles_dir)
    checks = evaluate(f, exp, expect)
    device = {k: v for k, v in f.identity.items() if v is not None}
    device.update(torch_name=target.name, sms=target.compute_units, memory_visible_bytes=target.memory_bytes,
                  capability=".".join(map(str, target.capability)) if target.capability else None,
                  cuda_version=target.cuda_version)
    telem = {n: telemetry.summary_dict(p.telemetry) for n, p in f.probes.items() if p.telemetry is not None}
    if idle_t is not None:
        telem = {"idle": telemetry.summary_dict(idle_t), **telem}
    return DoctorReport(
        status=overall(checks), exit_code=exit_code(checks), device={k: v for k, v in device.items() if v is not None},
        sku=sku, expect=expect, checks=checks, probes={n: p.as_dict() for n, p in f.probes.items()},
        telemetry=telem, quick=quick, wall_time_s=time.perf_counter() - t0, rooflab=__version__,
    )


def _first_clause(reason: str) -> str:
    return (reason or "").split(";")[0].strip()


def _no_cuda(target: Any, open_nvml: Callable[[], NvmlSession], quick: bool, t0: float) -> DoctorReport:
    """No CUDA device for torch: with no NVIDIA GPU at all that is "unavailable"; a GPU the driver sees but
    torch cannot use is a FAIL."""
    try:
        s = open_nvml()
        count, names = s.count, s.names()
    except Unavailable as e:
        r = unavailable_report(f"no NVIDIA GPU: {e}; torch: {_first_clause(target.reason)}", quick)
        r.wall_time_s = time.perf_counter() - t0
        return r
    if count < 1:
        r = unavailable_report(f"no NVIDIA GPU: NVML sees none; torch: {_first_clause(target.reason)}", quick)
        r.wall_time_s = time.perf_counter() - t0
        return r
    v = CardCheck(check="cuda", status="FAIL", measured=f"NVML sees {count} GPU(s): {', '.join(names)}",
                  expected="torch can use the GPU",
                  reason=f"the driver sees {', '.join(names)} but torch has no CUDA device "
                         f"({_first_clause(target.reason)}): a CPU-only torch build, CUDA_VISIBLE_DEVICES, or a "
                         "driver/CUDA mismatch")

    return DoctorReport(status="fail", exit_code=1, device={"nvml_gpus": names}, checks=[v], quick=quick,
                        wall_time_s=time.perf_counter() - t0, rooflab=__version__)
