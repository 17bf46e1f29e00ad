"""``evaluate``: every check of the card, from what was read and what a healthy card of the SKU gives. Pure:
no NVML, no GPU, so the tests drive it with fake readings."""
from __future__ import annotations

from .fmt import card_check
from .health import (
    check_clocks,
    check_ecc,
    check_identity,
    check_idle,
    check_mig,
    check_power_limit,
    check_row_remap,
    check_temperature,
    check_throttling,
    check_xid,
)
from .performance import check_hbm, check_host_device, check_matmul, check_pcie_link
from .records import CardCheck, Findings
from .sku import Expected


def evaluate(f: Findings, exp: Expected, expect: str | None = None) -> list[CardCheck]:
    """Every verdict, from what was read (pure: no NVML, no GPU)."""
    if f.nvml_reason:  # the probes still ran; everything NVML reads is unchecked, and the user should know
        nv = card_check("nvml", "WARN", "unavailable", "NVML readable",
                        f"NVML is not usable ({f.nvml_reason}): identity, MIG, idle tenants, power limit, clocks, "
                        "throttling, temperatures, memory errors, XIDs and the PCIe link were not checked")
        return [nv, check_host_device(f, exp), check_hbm(f, exp), check_matmul(f, exp)]
    return [check_identity(f, exp, expect), check_mig(f), check_idle(f), check_power_limit(f, exp),
            check_clocks(f, exp), check_throttling(f), check_temperature(f), check_ecc(f), check_row_remap(f),
            check_xid(f), check_pcie_link(f), check_host_device(f, exp), check_hbm(f, exp), check_matmul(f, exp)]


