"""Tests run on the CPU: the target is chosen before any Triton kernel module is imported.

`ROOFLAB_TEST_DEVICE=cuda python -m pytest -q tests` runs the other way round, on a GPU machine: the CUDA target
is configured (compiled Triton kernels, no interpreter) and only the tests marked `gpu` run; every other test
needs the CPU target and the interpreter, which one process cannot have at the same time.
"""
from __future__ import annotations

import dataclasses
import os

import pytest

from bench import target as _target

_DEVICE = os.environ.get("ROOFLAB_TEST_DEVICE", "cpu").strip().lower() or "cpu"
if _DEVICE not in ("cpu", "cuda"):
    raise pytest.UsageError(f"ROOFLAB_TEST_DEVICE must be cpu or cuda, not {_DEVICE!r}")

if _DEVICE == "cuda":
    try:
        GPU = _target.configure("cuda")
    except _target.TargetError as e:
        raise pytest.UsageError(f"ROOFLAB_TEST_DEVICE=cuda: {e}") from None
    CPU = None
else:
    CPU = _target.configure("cpu")  # sets TRITON_INTERPRET=1 before kernels/ is imported anywhere
    GPU = None


@pytest.fixture
def cpu_target():
    return CPU


@pytest.fixture
def small_cpu_target():
    """The CPU target pretending its last-level cache is 1 MiB, so memory sweeps stay small and fast."""
    return dataclasses.replace(CPU, cache_bytes=1 << 20)


@pytest.fixture
def gpu_target():
    """The CUDA target (only under ROOFLAB_TEST_DEVICE=cuda; tests using it are marked `gpu`)."""
    if GPU is None:
        pytest.skip("needs ROOFLAB_TEST_DEVICE=cuda on a CUDA GPU")
    return GPU


def pytest_collection_modifyitems(config, items):
    if _DEVICE == "cuda":
        skip = pytest.mark.skip(reason="CPU/interpreter test: run without ROOFLAB_TEST_DEVICE=cuda")
        for item in items:
            if "gpu" not in item.keywords:
                item.add_marker(skip)
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (ROOFLAB_TEST_DEVICE=cuda)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
