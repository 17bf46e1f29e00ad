"""The checks of what the probes measured: the PCIe link under load, host↔device copies, HBM copy bandwidth and
the bf16 matmul, the last two graded through bench/thresholds.py (docs/doctor.md)."""
from __future__ import annotations

from .. import thresholds
from ..telemetry import pcie_rate_Bps
from .fmt import card_check, probe_telemetry, rate, worst
from .limits import PCIE_FAIL_FRACTION, PCIE_MIN_GEN, PCIE_WARN_MARGIN
from .records import CardCheck, CheckStatus, Findings, ProbeResult
from .sku import Expected, Healthy


def _copied_Bps(f: Findings) -> float | None:
    """The slower direction of the host↔device probe's copies, when they ran and were correct."""
    p = f.probes.get("pcie")
    if p is None or p.error or not p.passed:
        return None
    rates = [x for x in (p.values.get("h2d_Bps"), p.values.get("d2h_Bps")) if isinstance(x, (int, float)) and x > 0]
    return min(rates) if rates else None


def check_pcie_link(f: Findings) -> CardCheck:
    """The link in use against the best this card and host support. Read under load (the host↔device probe):
    an idle link trains down to Gen1 to save power, which is no fault. The copies themselves are evidence too:
    a link cannot carry more than its line rate, so copies faster than the reported link disprove the reading
    (a VM's virtual port can report one)."""
    ident = f.identity
    mg, gpu_mg, mw = ident.get("pcie_max_gen"), ident.get("pcie_gpu_max_gen"), ident.get("pcie_max_width")
    t = probe_telemetry(f, "pcie")
    if t and t.pcie_gen and t.pcie_width:
        gen, width, when = int(t.pcie_gen.max), int(t.pcie_width.max), "under load"
    elif f.idle and f.idle.get("pcie_gen") and f.idle.get("pcie_width"):
        gen, width, when = int(f.idle["pcie_gen"]), int(f.idle["pcie_width"]), "at idle"
    else:
        return card_check("pcie_link", "SKIP", "", "", "the PCIe link is not readable")
    card = f"Gen{gpu_mg or mg or '?'} x{mw or '?'}"
    measured = f"PCIe Gen{gen} x{width} {when}"
    expected = f"Gen{mg or '?'} x{mw or '?'}"
    moved = _copied_Bps(f)
    shown, best = pcie_rate_Bps(gen, width), pcie_rate_Bps(mg, mw)
    healthy = PCIE_FAIL_FRACTION * PCIE_WARN_MARGIN * best if best else None
    slot: list[tuple[CheckStatus, str]] = []
    if mg and gpu_mg and mg < gpu_mg:
        slot.append(("WARN", f"the host's slot runs Gen{mg}; the card supports Gen{gpu_mg}"))
    degraded = bool((mw and width < mw) or (mg and gen < mg) or gen < PCIE_MIN_GEN or width < 16)
    if when == "under load" and degraded and moved and shown and moved > shown:
        note = (f"NVML reports PCIe Gen{gen} x{width} {when}, but the copies moved {rate(moved, 'B/s')}, more than "
                f"such a link carries ({rate(shown, 'B/s')}): the reading is not the link's (a VM's virtual port "
                "can report one); the copy rate itself is judged by host_device_bandwidth")
        shown_ok = slot + [("PASS", note)]
        return card_check("pcie_link", worst(*(s for s, _ in shown_ok)), measured, expected,
                          "; ".join(r for _, r in shown_ok), copied_Bps=moved)
    res: list[tuple[CheckStatus, str]] = []
    if when == "under load":
        if mw and width < mw:
            res.append(("FAIL", f"PCIe Gen{gen} x{width} under load, card supports {card}: lanes are missing"))
        if mg and gen < mg:
            res.append(("FAIL", f"PCIe Gen{gen} x{width} under load, card supports {card}"))
        if gen < PCIE_MIN_GEN or width < 16:
            res.append(("FAIL", f"below DCGM's minimum of Gen{PCIE_MIN_GEN} x16"))
    else:  # only an idle reading: a lower generation is power saving; fewer lanes, or slow copies, are not
        good = bool(moved and healthy and moved >= healthy)  # the copies ran at a healthy rate for the full link
        if (mw and width < mw) or width < 16:
            if good:
                res.append(("PASS", f"x{width} at idle, but the copies reached {rate(moved, 'B/s')}, a healthy "
                                    f"{expected} rate"))
            else:
                res.append(("WARN", f"PCIe Gen{gen} x{width} at idle, card supports {card}: lanes may be missing "
                                    "(the link could not be read under load)"))
        if mg and gen < mg:
            if good:
                res.append(("PASS", f"Gen{gen} at idle is power saving: the copies reached {rate(moved, 'B/s')}, "
                                    f"a healthy {expected} rate"))
            elif moved and healthy:
                res.append(("WARN", f"the link runs Gen{gen} at idle and the copies reached only "
                                    f"{rate(moved, 'B/s')}; it could not be read under load"))
            else:
                res.append(("SKIP", f"the link runs Gen{gen} at idle (power saving) and could not be read under "
                                    "load or checked by copies"))
    res += slot
    if res:
        return card_check("pcie_link", worst(*(s for s, _ in res)), measured, expected,
                          "; ".join(dict.fromkeys(r for _, r in res)))
    return card_check("pcie_link", "PASS", measured, expected, f"the full link {when}")


def check_host_device(f: Findings, exp: Expected) -> CardCheck:
    p = _probe(f, "pcie", "host_device_bandwidth", "host↔device copies")
    if isinstance(p, CardCheck):
        return p
    h2d, d2h = p.values.get("h2d_Bps"), p.values.get("d2h_Bps")
    worst = _copied_Bps(f)
    if worst is None:
        return card_check("host_device_bandwidth", "SKIP", "", "", "the host↔device probe gave no rate")
    ident = f.identity
    gen, width = ident.get("pcie_max_gen"), ident.get("pcie_max_width")
    link = pcie_rate_Bps(gen, width)
    src = f"Gen{gen} x{width}"
    if link is None and exp.spec and exp.spec.pcie_gen:
        gen, width = exp.spec.pcie_gen, 16
        link, src = pcie_rate_Bps(gen, width), f"Gen{gen} x16 (assumed: the {exp.sku}'s)"
    measured = f"host→device {rate(h2d, 'B/s')}, device→host {rate(d2h, 'B/s')} (pinned)"
    if link is None:
        why = "the link's rate is unknown" + (f" ({exp.no_spec})" if exp.no_spec else "")
        return card_check("host_device_bandwidth", "SKIP", measured, "", why, h2d_Bps=h2d, d2h_Bps=d2h)
    floor = PCIE_FAIL_FRACTION * link
    frac = PCIE_FAIL_FRACTION * PCIE_WARN_MARGIN
    expected = f"≥ {rate(floor * PCIE_WARN_MARGIN, 'B/s')} ({frac:.0%} of {rate(link, 'B/s')} over {src})"
    st: CheckStatus = "FAIL" if worst < floor else "WARN" if worst < floor * PCIE_WARN_MARGIN else "PASS"
    reason = (f"the slower direction moves {rate(worst, 'B/s')}: {worst / link:.0%} of the {rate(link, 'B/s')} a "
              f"{src} link carries per direction; a healthy link gives ≥ {frac:.0%}, FAIL below "
              f"{PCIE_FAIL_FRACTION:.0%}")
    return card_check("host_device_bandwidth", st, measured, expected, reason, h2d_Bps=h2d, d2h_Bps=d2h, link_Bps=link)


def _probe(f: Findings, probe: str, check: str, what: str) -> ProbeResult | CardCheck:
    """The probe's result when it ran and computed right; else the check's outcome (SKIP when it did not run,
    WARN when it could not, FAIL when its results were wrong)."""
    p = f.probes.get(probe)
    if p is None:
        return card_check(check, "SKIP", "", "", f"the {what} probe did not run")
    if p.error:
        return card_check(check, "WARN", "", "", f"the {what} probe could not run: {p.error}")
    if p.passed is False:
        return card_check(check, "FAIL", "wrong results", "correct results",
                          f"the {what} probe computed wrong results: {p.detail}")
    return p


_GRADE: dict[thresholds.Grade, CheckStatus] = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def _perf_check(check: str, what: str, value: float | None, unit: str, exp: Expected, spec_value: float | None,
                healthy: Healthy | None, mig: bool) -> CardCheck:
    """A probe's number graded against a healthy card of the SKU, through bench/thresholds.py (the copy band is
    the one `rooflab run`'s verdict grades with)."""
    measured = rate(value, unit)
    if value is None:
        return card_check(check, "SKIP", "", "", f"no {what} number")
    if mig:
        return card_check(check, "SKIP", measured, "", "a MIG slice is not comparable with a whole card's numbers",
                          value=value)
    if healthy is None or not spec_value:
        why = ((exp.no_spec or f"the spec profile of {exp.sku} has no figure for the {what}") if exp.sku
               else "no spec numbers for this card")
        return card_check(check, "SKIP", measured, "", why, value=value)
    ref, band = healthy.reference, healthy.band
    fail_below, warn_below = band.warn_at * ref, band.pass_at * ref
    expected = f"≥ {rate(warn_below, unit)} ({warn_below / spec_value:.0%} of spec)"
    reason = (f"{what} {measured} is {value / spec_value:.0%} of {exp.sku}'s {rate(spec_value, unit)} spec; "
              f"{healthy.source} ({rate(healthy.value, unit)}): FAIL below {fail_below / spec_value:.0%}, "
              f"WARN below {warn_below / spec_value:.0%}")
    return card_check(check, _GRADE[band.grade(value, ref)], measured, expected, reason, value=value,
                      healthy=healthy.value, spec=spec_value)


def check_hbm(f: Findings, exp: Expected) -> CardCheck:
    p = _probe(f, "hbm", "hbm_bandwidth", "HBM")
    if isinstance(p, CardCheck):
        return p
    out = _perf_check("hbm_bandwidth", "HBM copy", p.values.get("copy_Bps"), "B/s", exp,
                      exp.spec.memory_bandwidth_Bps if exp.spec else None, exp.hbm,
                      bool(f.identity.get("mig_enabled")))
    rd = p.values.get("read_Bps")
    if rd:
        out.reason += f" (read-only: {rate(rd, 'B/s')})"
        out.data["read_Bps"] = rd
    return out


def check_matmul(f: Findings, exp: Expected) -> CardCheck:
    p = _probe(f, "matmul", "matmul", "matmul")
    if isinstance(p, CardCheck):
        return p
    shape = p.values.get("shape", "")
    return _perf_check("matmul", f"bf16 matmul {shape}".strip(), p.values.get("flops"), "FLOP/s", exp,
                       exp.spec.bf16_flops if exp.spec else None, exp.matmul, bool(f.identity.get("mig_enabled")))

