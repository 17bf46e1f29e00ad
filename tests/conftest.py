"""Tests run on the CPU: the target is chosen before any Triton kernel module is imported."""
from __future__ import annotations

import dataclasses

import pytest

from bench import target as _target

CPU = _target.configure("cpu")  # sets TRITON_INTERPRET=1 before kernels/ is imported anywhere


@pytest.fixture
def cpu_target():
    return CPU


@pytest.fixture
def small_cpu_target():
    """The CPU target pretending its last-level cache is 1 MiB, so memory sweeps stay small and fast."""
    return dataclasses.replace(CPU, cache_bytes=1 << 20)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
