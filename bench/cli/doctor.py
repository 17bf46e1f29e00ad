"""`rooflab doctor`: is this GPU healthy, and is it the card that was paid for? (docs/doctor.md)

Exit status: 0 when no check FAILs (WARNs included), 1 when one does, 2 for bad usage. With no NVIDIA GPU on
the machine it prints why and exits 0 with status "unavailable" (``--json``: ``"status": "unavailable"``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from bench.cli.base import CLIError, app, configure_target, console, shown

if TYPE_CHECKING:
    from rich.console import Console

    from bench.doctor import DoctorReport

_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "SKIP": "dim"}


@app.command("doctor")
def doctor(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of the table."),
    quick: bool = typer.Option(False, "--quick", help="Shorter probes: about half the time, noisier numbers."),
    expect: str | None = typer.Option(None, "--expect", metavar="SKU",
                                         help="The card you paid for (e.g. h100-sxm): FAIL if this is another."),
) -> None:
    """Check this GPU: identity vs spec, power, clocks, throttling, memory errors, PCIe, other tenants, MIG,
    and HBM / matmul / host-device numbers vs a healthy card's. Exit 1 if any check FAILs."""
    from bench.doctor import KNOWN_SKUS, diagnose

    want = None
    if expect is not None:
        want = expect.strip().lower()
        if want not in KNOWN_SKUS:
            raise CLIError(f"--expect: unknown SKU {expect!r}; choose one of {', '.join(KNOWN_SKUS)}")
    target = configure_target("auto")
    con = console()
    if not json_out and target.is_cuda:
        con.print(f"rooflab doctor on {target.name}: identifying the card, then probing HBM, matmul and "
                  "host↔device copies…")
    report = diagnose(target, quick=quick, expect=want)
    if json_out:
        typer.echo(report.model_dump_json(exclude_none=True))
    else:
        render(con, report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def render(con: Console, report: DoctorReport) -> None:
    """The verdicts as a table a person reads."""
    from rich.table import Table

    if report.status == "unavailable":
        con.print(f"rooflab doctor: nothing to check: {shown(report.reason or 'no NVIDIA GPU')}")
        return
    d = report.device
    ident = []
    if d.get("pci_device_id") is not None:
        ident.append(f"PCI device 0x{d['pci_device_id']:04x}")
    if report.sku:
        ident.append(f"profile {report.sku}")
    for key, fmt in (("sms", "{} SMs"), ("memory_total_bytes", "{:.1f} GiB"), ("power_limit_W", "{:.0f} W limit"),
                     ("vbios", "VBIOS {}"), ("driver", "driver {}")):
        v = d.get(key)
        if v is None:
            continue
        ident.append(fmt.format(v / 2**30 if key == "memory_total_bytes" else v))
    name = d.get("name") or d.get("torch_name") or ", ".join(d.get("nvml_gpus", [])) or "GPU"
    con.print(f"[bold]{shown(str(name))}[/]" + (f": {shown(', '.join(ident))}" if ident else ""))
    t = Table(show_lines=False)
    for col in ("check", "verdict", "measured", "expected", "reason"):
        t.add_column(col, overflow="fold")
    for v in report.checks:
        t.add_row(v.check, f"[{_STYLE[v.status]}]{v.status}[/]", shown(v.measured), shown(v.expected),
                  shown(v.reason))
    con.print(t)
    counts = {s: sum(1 for v in report.checks if v.status == s) for s in ("FAIL", "WARN", "PASS", "SKIP")}
    took = f" in {report.wall_time_s:.1f} s" if report.wall_time_s is not None else ""
    con.print(f"[{_STYLE.get(report.status.upper(), 'bold')}]{report.status.upper()}[/]: "
              + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + took
              + (" (--quick)" if report.quick else ""))
