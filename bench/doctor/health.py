"""The checks of what NVML reads: identity, MIG, idle tenants, power limit, clocks, throttling, temperature,
ECC, row remapping and retired pages, XID events. Pure functions of the :class:`Findings` (docs/doctor.md)."""
from __future__ import annotations

from typing import Any

from ..telemetry import LIMITING_REASONS, TelemetrySummary
from .fmt import band_status, card_check, ghz, gib, probe_telemetry, worst
from .limits import (
    GPU_TEMP_FAIL_ABOVE,
    GPU_TEMP_WARN_ABOVE,
    HARDWARE_XIDS,
    HW_REASONS,
    HW_SLOWDOWN_FAIL_SHARE,
    IDLE_USED_FAIL_BYTES,
    IDLE_USED_WARN_BYTES,
    MAX_CLOCK_WARN_BELOW,
    MEM_CLOCK_FAIL_BELOW,
    MEM_CLOCK_WARN_BELOW,
    MEM_TEMP_MAX_DEFAULT,
    MEM_TEMP_WARN_MARGIN,
    POWER_CAP_ON_MEMORY_WARN_SHARE,
    POWER_FAIL_BELOW,
    POWER_WARN_BELOW,
    REASON_TEXT,
    RETIRED_PAGES_FAIL,
    SM_CLOCK_FAIL_BELOW,
    SM_CLOCK_WARN_BELOW,
    SW_THERMAL_FAIL_SHARE,
    UNCORRECTABLE_REMAPS_FAIL,
)
from .records import CardCheck, CheckStatus, Findings
from .sku import Expected, sku_from_device_id, sku_from_name


def check_identity(f: Findings, exp: Expected, expect: str | None) -> CardCheck:
    ident = f.identity
    did = ident.get("pci_device_id")
    by_id, by_name = sku_from_device_id(did), sku_from_name(ident.get("name"))
    did_s = f"0x{did:04x}" if isinstance(did, int) else "unknown"
    sku = by_id or by_name
    mem = ident.get("memory_total_bytes")
    measured = (f"{ident.get('name') or '?'}, PCI device {did_s}" + (f" ({sku})" if sku else "")
                + (f", {f.target_sms} SMs" if f.target_sms else "") + (f", {gib(mem)}" if mem else ""))
    extra = ", ".join(x for x in (f"VBIOS {ident['vbios']}" if ident.get("vbios") else "",
                                  f"driver {ident['driver']}" if ident.get("driver") else "") if x)
    expected = expect or sku or "a known SKU"
    fails, warns = [], []
    if expect and by_id and by_id != expect:
        fails.append(f"PCI device {did_s} is an {by_id}, not the {expect} claimed")
    elif expect and not by_id and by_name and by_name != expect:
        fails.append(f"the card calls itself {ident.get('name')!r} ({by_name}), not the {expect} claimed")
    if by_id and by_name and by_id != by_name:
        fails.append(f"the name {ident.get('name')!r} says {by_name} but PCI device {did_s} is an {by_id}")
    if not by_id:
        warns.append(f"PCI device {did_s} is not in rooflab's SKU table: the card's identity is unconfirmed"
                     if did is not None else "NVML gave no PCI device ID: the card's identity is unconfirmed")
    spec = exp.spec
    mig = ident.get("mig_enabled")
    if spec and spec.sm_count and f.target_sms and not mig and f.target_sms != spec.sm_count:
        (fails if f.target_sms < spec.sm_count else warns).append(
            f"{f.target_sms} SMs visible; an {spec.name} has {spec.sm_count}")
    if spec and spec.memory_GB and mem and not mig:
        # NVML's total is about the marketed size in GiB (HBM cards within 1%); GDDR cards with ECC on keep
        # ~6% back (an L40S shows 45 GiB of 48 GB)
        ratio = mem / 2**30 / spec.memory_GB
        if not 0.90 <= ratio <= 1.08:
            warns.append(f"{gib(mem)} of memory; an {spec.name} has {spec.memory_GB:g} GB")
    status: CheckStatus = "FAIL" if fails else "WARN" if warns else "PASS"
    reason = "; ".join(fails + warns) or (f"PCI device {did_s} is an {sku}" + (" as claimed" if expect else "")
                                          + (f"; {extra}" if extra else ""))
    if exp.no_spec:
        reason += f"; {exp.no_spec}: SM count and memory size not checked"
    return card_check("identity", status, measured, expected, reason, pci_device_id=did, sku_by_id=by_id,
                      sku_by_name=by_name, expect=expect)


def check_mig(f: Findings) -> CardCheck:
    ident = f.identity
    mig, pending = ident.get("mig_enabled"), ident.get("mig_pending")
    if mig:
        vis = f"{gib(f.target_memory_bytes)}, {f.target_sms or '?'} SMs"
        return card_check("mig", "FAIL", "MIG enabled", "MIG disabled (a whole card)",
                          f"MIG is enabled: torch sees one slice ({vis}) of a {gib(ident.get('memory_total_bytes'))} "
                          "card; other slices may be someone else's", mig_enabled=True)
    if mig is None:
        return card_check("mig", "SKIP", "unknown", "MIG disabled", "MIG mode could not be read"
                          + (f" ({f.unsupported.get('mig_mode')})" if f.unsupported.get("mig_mode") else ""))
    if pending:
        return card_check("mig", "WARN", "MIG disabled, enabling pending", "MIG disabled",
                          "a MIG mode change is pending and applies at the next GPU reset")
    not_capable = f.unsupported.get("mig_mode") == "not supported on this GPU"
    return card_check("mig", "PASS", "MIG disabled" if not not_capable else "not MIG-capable", "MIG disabled",
                      "the whole card is visible")


def check_idle(f: Findings) -> CardCheck:
    used = (f.idle or {}).get("memory_used_bytes")
    procs = f.idle_processes
    if used is None and procs is None:
        return card_check("idle", "SKIP", "", "≤ 15 MiB used, no other process",
                          "memory use and processes not readable")
    mine = [p for p in (procs or []) if p[0] == f.own_pid]
    others = [p for p in (procs or []) if p[0] != f.own_pid]
    if used is not None and mine:
        used = max(0.0, used - sum(b or 0 for _, b in mine))
    measured = f"{used / 2**20:.0f} MiB used" if used is not None else "memory use unknown"
    measured += f", {len(others)} other process{'es' if len(others) != 1 else ''}" if procs is not None else ""
    expected = f"≤ {IDLE_USED_WARN_BYTES // 2**20} MiB used, no other process"
    if others:
        pids = ", ".join(str(p) for p, _ in others[:5])
        their = sum(b or 0 for _, b in others)
        return card_check("idle", "FAIL", measured, expected,
                          f"{len(others)} other process(es) on the GPU before rooflab started (PIDs {pids}; "
                          f"{gib(their)}): another tenant or a leftover job. Inside a container NVML lists host PIDs, "
                          "so your own earlier processes count too", other_pids=[p for p, _ in others])
    v1 = f.identity.get("memory_info_version") == 1
    note = " (NVML memory info v1 counts driver-reserved memory as used)" if v1 else ""
    if used is not None and used > IDLE_USED_FAIL_BYTES:
        return card_check("idle", "FAIL", measured, expected,
                          f"{gib(used)} of memory in use with no process listed: something holds the GPU" + note)
    if used is not None and used > IDLE_USED_WARN_BYTES:
        return card_check("idle", "WARN", measured, expected, f"{used / 2**20:.0f} MiB in use at idle (gcm allows "
                          f"{IDLE_USED_WARN_BYTES // 2**20} MiB)" + note)
    if procs is None:
        return card_check("idle", "PASS", measured, expected, "memory free at idle; the process list is not readable")
    return card_check("idle", "PASS", measured, expected, "no other process and memory free before the probes")


def check_power_limit(f: Findings, exp: Expected) -> CardCheck:
    ident = f.identity
    lim, default = ident.get("power_limit_W"), ident.get("power_default_limit_W")
    tdp = exp.spec.tdp_W if exp.spec else None
    if lim is None:
        return card_check("power_limit", "SKIP", "", "", "the enforced power limit is not readable")
    measured = f"{lim:.0f} W" + (f" (default {default:.0f} W)" if default else "")
    expected = f"≥ {POWER_WARN_BELOW:.0%} of the default" + (f"; an {exp.sku} is rated {tdp:.0f} W" if tdp else "")
    out: list[tuple[CheckStatus, str]] = []
    if default:
        st = band_status(lim, default, POWER_FAIL_BELOW, POWER_WARN_BELOW)
        if st != "PASS":
            out.append((st, f"power limit {lim:.0f} W is {lim / default:.0%} of the card's default {default:.0f} W: "
                            "sustained GEMM will be capped"))
    board = default or lim
    if tdp:
        st = band_status(board, tdp, POWER_FAIL_BELOW, POWER_WARN_BELOW)
        if st != "PASS":
            out.append((st, f"the board's {'default' if default else 'enforced'} limit {board:.0f} W is "
                            f"{board / tdp:.0%} of an {exp.sku}'s {tdp:.0f} W: a lower-power variant or a "
                            "capped board"))
    gemm = f.probes.get("matmul")
    peak = gemm.telemetry.power_W.max if gemm and gemm.telemetry and gemm.telemetry.power_W else None
    tail = f"; GEMM drew up to {peak:.0f} W" if peak else ""
    if out:
        return card_check("power_limit", worst(*(s for s, _ in out)), measured, expected,
                          "; ".join(r for _, r in out) + tail, power_limit_W=lim, power_default_limit_W=default)
    return card_check("power_limit", "PASS", measured, expected, "the full default power limit is enforced" + tail,
                      power_limit_W=lim, power_default_limit_W=default)


def _busy_clocks(t: TelemetrySummary) -> tuple[Any, Any]:
    """(SM, memory) clock stats over the samples taken under load. A probe's window opens and closes on an
    idle GPU, whose clocks are parked low: those samples say nothing about clocks under load. Summaries made
    before the busy stats existed fall back to every sample."""
    if t.busy_samples is None:
        return t.sm_clock_Hz, t.mem_clock_Hz
    return t.sm_clock_busy_Hz, t.mem_clock_busy_Hz


def check_clocks(f: Findings, exp: Expected) -> CardCheck:
    t = probe_telemetry(f, "hbm")
    ident = f.identity
    sm_max, mem_max = ident.get("sm_clock_max_Hz"), ident.get("mem_clock_max_Hz")
    sm, mem = _busy_clocks(t) if t is not None else (None, None)
    if sm is None and mem is None:
        why = ("no sample of the HBM probe was taken under load" if t is not None and t.busy_samples == 0
               and (t.sm_clock_Hz or t.mem_clock_Hz) else "no clock readings under load")
        return card_check("clocks", "SKIP", "", "", why)
    res: list[tuple[CheckStatus, str]] = []
    parts = []
    if sm and sm_max:
        r = sm.median / sm_max
        parts.append(f"SM {ghz(sm.median)} ({r:.0%} of max)")
        st = band_status(sm.median, sm_max, SM_CLOCK_FAIL_BELOW, SM_CLOCK_WARN_BELOW)
        if st != "PASS":
            res.append((st, f"SM clock {ghz(sm.median)} under a memory-bound load is {r:.0%} of its "
                            f"max {ghz(sm_max)}"))
    if mem and mem_max:
        r = mem.median / mem_max
        parts.append(f"memory {ghz(mem.median)} ({r:.0%})")
        st = band_status(mem.median, mem_max, MEM_CLOCK_FAIL_BELOW, MEM_CLOCK_WARN_BELOW)
        if st != "PASS":
            res.append((st, f"memory clock {ghz(mem.median)} is {r:.0%} of its max {ghz(mem_max)}: "
                            "HBM is in a slower state"))
    spec_boost = exp.spec.boost_clock_Hz if exp.spec else None
    if sm_max and spec_boost and sm_max < MAX_CLOCK_WARN_BELOW * spec_boost:
        res.append(("WARN", f"max SM clock {ghz(sm_max)} is below an {exp.sku}'s {ghz(spec_boost)} boost"))
    g = probe_telemetry(f, "matmul")
    g_sm = _busy_clocks(g)[0] if g is not None else None
    tail = ""
    if g is not None and g_sm:
        tail = f"; under GEMM the SM clock ran at {ghz(g_sm.median)}"
        if g.clocks_event_share.get("sw_power_cap") and sm_max and g_sm.median < 0.97 * sm_max:
            tail += " (held by the power limit, as sustained GEMM is)"
    expected = (f"SM ≥ {SM_CLOCK_WARN_BELOW:.0%} and memory ≥ {MEM_CLOCK_WARN_BELOW:.0%} of max under load")
    if res:
        return card_check("clocks", worst(*(s for s, _ in res)), ", ".join(parts), expected,
                          "; ".join(r for _, r in res) + tail)
    return card_check("clocks", "PASS", ", ".join(parts), expected, "full clocks under a memory-bound load" + tail)


def check_throttling(f: Findings) -> CardCheck:
    read = {n: probe_telemetry(f, n) for n in f.probes}
    seen = {n: t for n, t in read.items() if t is not None and t.clocks_event_share is not None}
    if not seen or all(t.samples == 0 for t in seen.values()):
        return card_check("throttling", "SKIP", "", "", "no clocks-event readings under load")
    if all("clocks_event_reasons" in t.unsupported for t in seen.values()):
        return card_check("throttling", "SKIP", "", "", "clocks-event reasons are not readable here")
    res: list[tuple[CheckStatus, str]] = []
    notes: list[str] = []
    peak: dict[str, float] = {}  # reason -> largest share in any probe
    for name, t in seen.items():
        for r in LIMITING_REASONS:
            if t.clocks_event_share.get(r):
                peak[r] = max(peak.get(r, 0.0), t.clocks_event_share[r])
        sh = t.clocks_event_share
        for r in HW_REASONS:
            if sh.get(r, 0) > 0:
                res.append(("FAIL" if sh[r] >= HW_SLOWDOWN_FAIL_SHARE else "WARN",
                            f"{REASON_TEXT[r]} in {sh[r]:.0%} of samples during {name}"))
        if sh.get("sw_thermal_slowdown", 0) > 0:
            s = sh["sw_thermal_slowdown"]
            res.append(("FAIL" if s >= SW_THERMAL_FAIL_SHARE else "WARN",
                        f"SW thermal slowdown in {s:.0%} of samples during {name}"))
        for r in ("board_limit", "reliability"):
            if sh.get(r, 0) > 0:
                res.append(("WARN", f"{REASON_TEXT[r]} in {sh[r]:.0%} of samples during {name}"))
        cap = sh.get("sw_power_cap", 0)
        if cap and name == "hbm" and cap >= POWER_CAP_ON_MEMORY_WARN_SHARE:
            res.append(("WARN", f"SW power cap in {cap:.0%} of samples even during the memory-bound probe"))
        elif cap:
            notes.append(f"{name} {cap:.0%}")
    measured = ", ".join(f"{REASON_TEXT.get(r, r)} ≤ {v:.0%} of samples" for r, v in peak.items()) or "none"
    expected = "no thermal or hardware slowdown"
    if res:
        return card_check("throttling", worst(*(s for s, _ in res)), measured, expected, "; ".join(r for _, r in res))
    return card_check("throttling", "PASS", measured, expected, "no thermal or hardware slowdown during the probes"
                      + (f"; SW power cap in {', '.join(notes)} of samples (expected under sustained GEMM at the "
                         "default limit)" if notes else ""))


def check_temperature(f: Findings) -> CardCheck:
    ts = [t for t in (probe_telemetry(f, n) for n in f.probes) if t is not None]
    gpu = max((t.gpu_temp_C.max for t in ts if t.gpu_temp_C), default=None)
    mem = max((t.mem_temp_C.max for t in ts if t.mem_temp_C), default=None)
    if gpu is None and mem is None:
        return card_check("temperature", "SKIP", "", "", "no temperature readings")
    ident = f.identity
    slowdown = ident.get("temp_slowdown_C")
    gpu_fail = min(GPU_TEMP_FAIL_ABOVE, slowdown) if slowdown else GPU_TEMP_FAIL_ABOVE
    mem_max = ident.get("temp_mem_max_C") or MEM_TEMP_MAX_DEFAULT
    res: list[tuple[CheckStatus, str]] = []
    if gpu is not None:
        if gpu >= gpu_fail and (gpu > GPU_TEMP_FAIL_ABOVE or slowdown):
            res.append(("FAIL", f"GPU reached {gpu:.0f} °C (limit {gpu_fail:.0f} °C)"))
        elif gpu > GPU_TEMP_WARN_ABOVE:
            res.append(("WARN", f"GPU reached {gpu:.0f} °C: little cooling headroom"))
    if mem is not None:
        if mem >= mem_max:
            res.append(("FAIL", f"HBM reached {mem:.0f} °C (max {mem_max:.0f} °C)"))
        elif mem >= mem_max - MEM_TEMP_WARN_MARGIN:
            res.append(("WARN", f"HBM reached {mem:.0f} °C, within {MEM_TEMP_WARN_MARGIN:.0f} °C of its "
                                f"{mem_max:.0f} °C max"))
    measured = ", ".join(x for x in (f"GPU max {gpu:.0f} °C" if gpu is not None else "",
                                     f"HBM max {mem:.0f} °C" if mem is not None else "") if x)
    expected = f"GPU ≤ {GPU_TEMP_WARN_ABOVE:.0f} °C, HBM < {mem_max - MEM_TEMP_WARN_MARGIN:.0f} °C"
    if res:
        return card_check("temperature", worst(*(s for s, _ in res)), measured, expected, "; ".join(r for _, r in res))
    return card_check("temperature", "PASS", measured, expected, "cool under load")


def check_ecc(f: Findings) -> CardCheck:
    h = f.health_end or f.health_start
    if h is None or all(getattr(h, k) is None for k in ("ecc_volatile_uncorrected", "ecc_aggregate_uncorrected",
                                                        "ecc_volatile_corrected", "ecc_enabled")):
        return card_check("ecc", "SKIP", "", "0 uncorrectable errors",
                          "ECC counters are not readable on this GPU" + _why(f, "ecc_volatile_uncorrected"))
    vu, au = h.ecc_volatile_uncorrected, h.ecc_aggregate_uncorrected
    vc = h.ecc_volatile_corrected
    measured = (f"{vu if vu is not None else '?'} uncorrectable, {vc if vc is not None else '?'} corrected since "
                f"the driver loaded; {au if au is not None else '?'} uncorrectable lifetime")
    expected = "0 uncorrectable"
    res: list[tuple[CheckStatus, str]] = []
    if h.ecc_enabled is False:
        res.append(("WARN", "ECC is disabled: memory errors go undetected"))
    start_vu = f.health_start.ecc_volatile_uncorrected if f.health_start else None
    if vu:
        new = f" ({vu - start_vu} during rooflab's probes)" if start_vu is not None and vu > start_vu else ""
        res.append(("FAIL", f"{vu} uncorrectable ECC error(s) since the driver loaded{new}"))
    if au and not vu:
        res.append(("WARN", f"{au} uncorrectable ECC error(s) in the card's lifetime"))
    if vc:
        res.append(("WARN", f"{vc} corrected ECC error(s) since the driver loaded: a count that grows points to "
                            "failing memory"))
    if res:
        return card_check("ecc", worst(*(s for s, _ in res)), measured, expected, "; ".join(r for _, r in res))
    return card_check("ecc", "PASS", measured, expected, "no ECC errors")


def _why(f: Findings, key: str) -> str:
    w = f.unsupported.get(key)
    return f" ({w})" if w else ""


def check_row_remap(f: Findings) -> CardCheck:
    h = f.health_end or f.health_start
    expected = "no pending or failed remap"
    if h is None:
        return card_check("row_remap", "SKIP", "", expected, "memory health is not readable")
    res: list[tuple[CheckStatus, str]] = []
    parts = []
    if h.remap_pending is not None:
        corr, unc = h.remapped_rows_correctable or 0, h.remapped_rows_uncorrectable or 0
        parts.append(f"{corr + unc} rows remapped ({unc} for uncorrectable errors)"
                     + (", remap pending" if h.remap_pending else "") + (", remap FAILED" if h.remap_failure else ""))
        if h.remap_failure:
            res.append(("FAIL", "a row remap failed (no spare row left): the card needs replacing"))
        if h.remap_pending:
            res.append(("FAIL", f"a row remap is pending ({unc} uncorrectable rows remapped): the card needs a reset"))
        if unc >= UNCORRECTABLE_REMAPS_FAIL:
            res.append(("FAIL", f"{unc} rows remapped for uncorrectable errors "
                                f"(DCGM fails ≥ {UNCORRECTABLE_REMAPS_FAIL})"))
        elif unc > 0:
            res.append(("WARN", f"{unc} rows remapped for uncorrectable errors"))
    if h.retired_pages_sbe is not None or h.retired_pages_dbe is not None:
        n = (h.retired_pages_sbe or 0) + (h.retired_pages_dbe or 0)
        parts.append(f"{n} retired pages" + (", retirement pending" if h.retired_pages_pending else ""))
        if h.retired_pages_pending:
            res.append(("FAIL", "a page retirement is pending: the card needs a reset"))
        if n >= RETIRED_PAGES_FAIL:
            res.append(("FAIL", f"{n} retired pages (DCGM fails ≥ {RETIRED_PAGES_FAIL})"))
        elif n > 0:
            res.append(("WARN", f"{n} retired pages"))
    if not parts:
        return card_check("row_remap", "SKIP", "", expected,
                          "row remapping and page retirement are not readable" + _why(f, "remapped_rows"))
    if res:
        return card_check("row_remap", worst(*(s for s, _ in res)), "; ".join(parts), expected,
                          "; ".join(r for _, r in res))
    return card_check("row_remap", "PASS", "; ".join(parts), expected, "no pending or failed memory repair")


def check_xid(f: Findings) -> CardCheck:
    expected = "no XID events"
    if f.xids is None:
        return card_check("xid", "SKIP", "", expected, (f.xid_reason or "XID events are not readable")
                          + "; earlier XIDs are only in the kernel log (dmesg)")
    hw = sorted({x for x in f.xids if x in HARDWARE_XIDS})
    other = sorted({x for x in f.xids if x not in HARDWARE_XIDS})
    measured = ", ".join(f"XID {x}" for x in sorted(set(f.xids))) or "none"
    if hw:
        return card_check("xid", "FAIL", measured, expected,
                          f"hardware XID(s) {', '.join(map(str, hw))} during the probes", xids=f.xids)
    if other:
        return card_check("xid", "WARN", measured, expected, f"XID(s) {', '.join(map(str, other))} during the probes "
                          "(often a program's own fault; see the kernel log)", xids=f.xids)
    return card_check("xid", "PASS", measured, expected, "no XID event while rooflab ran (earlier ones are in dmesg)")

