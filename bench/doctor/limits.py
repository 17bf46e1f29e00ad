"""The doctor's health limits (power, clocks, throttling, temperature, memory errors, XIDs, idle use, PCIe),
each with its source. The performance bands (copy, matmul) are in bench/thresholds.py; docs/doctor.md has both.

Sources named below: DCGM's diagnostics (NVIDIA/DCGM, its per-SKU diag-skus table), Azure's HPC health checks
(Azure/azurehpc-health-checks), gpud (leptonai/gpud), SuperBench (microsoft/superbenchmark), gcm
(facebookresearch/gcm), nvbench (NVIDIA/nvbench).
"""
from __future__ import annotations

# Power limit: DCGM runs each SKU at its board power (700 W SXM, 350 W PCIe, 400 W NVL); a limit lowered below the
# default caps sustained GEMM, which runs at the power limit on an H100. FAIL < 90%, WARN < 98%.
POWER_FAIL_BELOW, POWER_WARN_BELOW = 0.90, 0.98
# Clocks under a memory-bound load (which stays under the power cap), over the probe's samples taken under load
# (bench.telemetry.under_load: the window's idle start and end park the clocks low): nvbench counts a GPU as
# throttled below 75% of its peak clock; WARN below 90%. HBM clocks do not boost: anything below max is a slower
# memory P-state: FAIL < 90%, WARN < 98%. A max SM clock under 95% of the SKU's boost clock is a capped card.
SM_CLOCK_FAIL_BELOW, SM_CLOCK_WARN_BELOW = 0.75, 0.90
MEM_CLOCK_FAIL_BELOW, MEM_CLOCK_WARN_BELOW = 0.90, 0.98
MAX_CLOCK_WARN_BELOW = 0.95
# Clocks-event reasons during the probes (share of samples). gpud: hardware slowdown events mean an unhealthy
# node; any HW slowdown / HW thermal / power brake is a WARN, in ≥ 5% of samples a FAIL. SW thermal slowdown: WARN
# when seen, FAIL in ≥ 20% of samples. SW power cap is expected under sustained GEMM at the default limit; during
# the memory-bound probe in ≥ 50% of samples it is a WARN.
HW_SLOWDOWN_FAIL_SHARE = 0.05
SW_THERMAL_FAIL_SHARE = 0.20
POWER_CAP_ON_MEMORY_WARN_SHARE = 0.50
HW_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")
REASON_TEXT = {"sw_power_cap": "SW power cap", "hw_slowdown": "HW slowdown", "sw_thermal_slowdown":
               "SW thermal slowdown", "hw_thermal_slowdown": "HW thermal slowdown", "hw_power_brake_slowdown":
               "HW power brake", "board_limit": "board limit", "reliability": "reliability limit"}
# Temperatures: SuperBench marks a GPU defective above 85 °C; WARN above 80 °C; FAIL at the card's own slowdown
# threshold when NVML reports one. HBM: FAIL at the card's memory max (NVML threshold, else 95 °C, the HBM3
# operating limit), WARN within 10 °C of it.
GPU_TEMP_FAIL_ABOVE, GPU_TEMP_WARN_ABOVE = 85.0, 80.0
MEM_TEMP_MAX_DEFAULT, MEM_TEMP_WARN_MARGIN = 95.0, 10.0
# Memory errors: DCGM fails ≥ 63 retired pages, any pending remap or remap failure, ≥ 512 uncorrectable remaps;
# gpud: pending remap → reset, remap failure → RMA; SuperBench and Azure fail uncorrectable ECC.
RETIRED_PAGES_FAIL = 63
UNCORRECTABLE_REMAPS_FAIL = 512
# XIDs that mean hardware trouble (Azure's HPC health checks fail on these); others are WARN (often a program's
# own fault, e.g. 13 or 31).
HARDWARE_XIDS = frozenset({48, 56, 57, 58, 62, 63, 64, 65, 68, 69, 73, 74, 79, 80, 81, 92, 119, 120})
# Idle: gcm allows ≤ 15 MiB used at idle; more than 1 GiB, or any other process, means someone else is on it.
IDLE_USED_WARN_BYTES, IDLE_USED_FAIL_BYTES = 15 * 2**20, 2**30
# Host↔device: Azure fails below 48 GB/s on a Gen5 x16 link (0.76 of its 63 GB/s per direction) and warns within
# 5% above; DCGM requires at least a Gen3 x16 link. (The link's line rate: bench.telemetry.pcie_rate_Bps.)
PCIE_FAIL_FRACTION, PCIE_WARN_MARGIN = 0.76, 1.05
PCIE_MIN_GEN = 3
