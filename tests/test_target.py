import os

import pytest

from bench import target


def test_cpu_mode_turns_on_interpreter(cpu_target):
    assert cpu_target.backend == "cpu"
    assert os.environ["TRITON_INTERPRET"] == "1"
    assert cpu_target.triton_interpreted and cpu_target.triton_mode == "interpreter"
    assert cpu_target.memory_bytes > 0 and cpu_target.cache_bytes > 0 and cpu_target.compute_units >= 1
    assert "interpreter" in cpu_target.reason


def test_unknown_choice_is_refused():
    with pytest.raises(target.TargetError, match="unknown device"):
        target.configure("tpu")


def test_cuda_without_gpu_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(target.TargetError, match="no CUDA GPU"):
        target.configure("cuda")


def test_auto_without_gpu_falls_back_to_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    t = target.configure("auto")
    assert t.backend == "cpu" and "no CUDA GPU" in t.reason
    target.configure("cpu")


def test_mode_cannot_flip_after_kernels_imported(monkeypatch):
    import kernels.hbm  # noqa: F401  (imported in interpreter mode)

    monkeypatch.setattr(target, "_CURRENT", target.current())
    with pytest.raises(target.TargetError, match="already imported"):
        target._set_interpreter(False)
    assert os.environ["TRITON_INTERPRET"] == "1"


def test_fp8_support_reason(cpu_target):
    ok, why = cpu_target.supports_fp8()
    assert not ok and "CUDA" in why
