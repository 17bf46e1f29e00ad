"""NVML's clocks-event (throttle) reasons: the bits, their names, and which of them limit the clocks."""
from __future__ import annotations

# Clocks-event (formerly "throttle") reason bits, as nvmlDeviceGetCurrentClocksEventReasons reports them.
CLOCKS_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
REASON_IDLE_BIT = 0x1  # gpu_idle: nothing runs and the clocks are dropping
# Reasons that hold the clocks below what the workload asks for. Idle, application-clock and sync-boost
# settings, and display clocks describe a setting or a quiet GPU, not a limit hit while working.
LIMITING_REASONS: tuple[str, ...] = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                                     "hw_power_brake_slowdown", "board_limit", "reliability")


def decode_reasons(mask: int) -> list[str]:
    """Names of the clocks-event reason bits set in ``mask`` (unknown bits as hex)."""
    names = [name for bit, name in CLOCKS_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCKS_EVENT_REASONS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names

