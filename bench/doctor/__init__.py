"""`rooflab doctor`: is this (rented) GPU the card that was paid for, and is it healthy?

``diagnose(target)`` identifies the card from NVML, maps it to a SKU and its spec profile, reads its idle state
and memory health, runs short HBM, bf16 matmul and host↔device probes under the telemetry sampler, and gives one
:class:`CardCheck` per check: PASS / WARN / FAIL, or SKIP when the check cannot be made here. docs/doctor.md
describes every check, its thresholds and their sources.

Modules: ``sku`` (identity tables; spec and healthy numbers for a SKU), ``limits`` (health limits), ``health``
and ``performance`` (the checks, pure functions of what was read), ``judge`` (all of them in order), ``fmt``
(building a check), ``probes`` (the GPU measurements), ``diagnosis`` (running it all), ``records`` (the models).
"""
from __future__ import annotations

# the PCIe line rates the doctor judges links with: the one table, in bench.telemetry
from ..telemetry import PCIE_LANE_Bps
from ..telemetry import pcie_rate_Bps as pcie_link_Bps
from .diagnosis import diagnose, unavailable_report
from .judge import evaluate
from .performance import check_hbm, check_host_device, check_matmul, check_pcie_link
from .probes import MATMUL_N, PROBES, probe_hbm, probe_matmul, probe_pcie
from .records import CardCheck, CheckStatus, DoctorReport, Findings, ProbeResult, exit_code, overall
from .sku import (
    DEVICE_IDS,
    KNOWN_SKUS,
    NAME_PATTERNS,
    Expected,
    Healthy,
    SkuSpec,
    expected_for,
    sku_from_device_id,
    sku_from_name,
)

__all__ = [
    "DEVICE_IDS",
    "KNOWN_SKUS",
    "MATMUL_N",
    "NAME_PATTERNS",
    "PROBES",
    "CardCheck",
    "CheckStatus",
    "DoctorReport",
    "Expected",
    "Findings",
    "Healthy",
    "PCIE_LANE_Bps",
    "ProbeResult",
    "SkuSpec",
    "check_hbm",
    "check_host_device",
    "check_matmul",
    "check_pcie_link",
    "diagnose",
    "evaluate",
    "exit_code",
    "expected_for",
    "overall",
    "pcie_link_Bps",
    "probe_hbm",
    "probe_matmul",
    "probe_pcie",
    "sku_from_device_id",
    "sku_from_name",
    "unavailable_report",
]
