"""The theoretical rate of a PCIe link: the one table, read by `rooflab doctor` and the transfer benchmark."""
from __future__ import annotations

from typing import Any

# Bytes per second per lane and direction after line encoding, by PCIe generation (PCI Express Base
# Specification 1.0–6.0): Gen1/2 2.5 / 5 GT/s with 8b/10b; Gen3/4/5 8 / 16 / 32 GT/s with 128b/130b; Gen6
# 64 GT/s with 242/256 FLIT efficiency. Line rates: packet headers cost a further ~10–20%.
PCIE_LANE_Bps: dict[int, float] = {1: 0.25e9, 2: 0.5e9, 3: 8e9 * 128 / 130 / 8, 4: 16e9 * 128 / 130 / 8,
                                   5: 32e9 * 128 / 130 / 8, 6: 64e9 * 242 / 256 / 8}
PCIE_SOURCE = ("PCI Express Base Specification: per-lane rate x width, after line encoding "
               "(Gen3-5 128b/130b, Gen6 FLIT 242/256), per direction")


def pcie_rate_Bps(generation: Any, width: Any) -> float | None:
    """Theoretical per-direction rate of a PCIe link (generation × width), or None when either is unknown."""
    try:
        gen, lanes = int(generation or 0), int(width or 0)
    except (TypeError, ValueError):
        return None
    if gen not in PCIE_LANE_Bps or lanes <= 0:
        return None
    return PCIE_LANE_Bps[gen] * lanes

