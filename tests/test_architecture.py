"""The one-way flow, checked on the source: what may import what, and who may touch the device's clocks.

Imports are read with ``ast`` from every module (function-level imports included: a lazy import is still a
dependency), so these tests need neither torch nor a GPU.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "kernels")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (a module, or the package holding an imported attribute)."""
    mods = _modules()
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def imports_of(module: str) -> frozenset[str]:
    """Project modules ``module`` imports anywhere in its body."""
    path = _modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for n in names:
            r = _resolve(n)
            if r is not None and r != module:
                out.add(r)
    return frozenset(out)


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        for d in imports_of(m):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_import_graph_is_read():
    assert "bench.cli" in _modules() and "kernels.hbm" in _modules()
    assert "bench.registry" in imports_of("bench.cli.run") or "bench.runner" in imports_of("bench.cli.run")


def test_kernels_import_nothing_from_bench():
    bad = {m: sorted(d for d in imports_of(m) if _under(d, "bench")) for m in _modules() if _under(m, "kernels")}
    assert not {m: d for m, d in bad.items() if d}


FORBIDDEN_IN_MODEL = ("bench.benchmarks", "kernels", "bench.timing", "bench.telemetry", "bench.runner", "bench.target",
                      "torch", "triton")


@pytest.mark.parametrize("model", ["bench.roofline", "bench.models"])
def test_the_model_imports_no_measuring_code(model):
    """The roofline model knows the profile, never how its numbers were measured: neither its own modules nor
    anything it loads when imported brings in a benchmark, a kernel, timing, telemetry, torch or triton."""
    direct = {d for m in _modules() if _under(m, model) for d in imports_of(m)}
    assert not sorted(d for d in direct if any(_under(d, f) for f in FORBIDDEN_IN_MODEL))
    code = f"import json, sys; import {model}; print(json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout)
    assert not [m for m in loaded if any(_under(m, f) for f in FORBIDDEN_IN_MODEL)]


def test_cli_modules_form_no_import_cycle():
    cli = [m for m in _modules() if _under(m, "bench.cli")]
    for m in cli:
        back = [d for d in closure(m) if _under(d, "bench.cli") and m in closure(d)]
        assert not back, f"{m} and {back} import each other"
    # the command modules share only bench.cli.base; nothing imports the package that assembles them
    for m in cli:
        assert "bench.cli" not in imports_of(m) or m == "bench.cli", m


def _cuda_events(path: Path) -> list[int]:
    """Lines that name ``<...>.cuda.Event`` (``torch.cuda.Event(...)``) or import Event from torch.cuda."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "Event"
             and isinstance(n.value, ast.Attribute) and n.value.attr == "cuda"]
    lines += [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").endswith("cuda")
              and any(a.name == "Event" for a in n.names)]
    return lines


def test_only_the_timing_module_creates_cuda_events():
    found = {m: _cuda_events(p) for m, p in _modules().items()}
    assert {m: lines for m, lines in found.items() if lines and m != "bench.timing"} == {}
    assert found["bench.timing"], "bench.timing should be where CUDA events are made"


def test_only_the_target_module_sets_the_interpreter_switch():
    users = [m for m, p in _modules().items() if "TRITON_INTERPRET" in p.read_text(encoding="utf-8")]
    writers = [m for m in users if "environ[\"TRITON_INTERPRET\"]" in _modules()[m].read_text(encoding="utf-8")
               or "environ['TRITON_INTERPRET']" in _modules()[m].read_text(encoding="utf-8")]
    assert writers == ["bench.target"], writers
