"""bench.dtypes: the one table of number formats (names in both vocabularies, bytes, torch dtypes)."""
import pytest
import torch

from bench import dtypes as D


def test_both_vocabularies_and_aliases_name_one_format():
    for a, b in (("bf16", "bfloat16"), ("fp16", "float16"), ("half", "float16"), ("fp32", "float32"),
                 ("fp8", "float8_e4m3fn"), ("e4m3", "float8_e4m3fn"), ("torch.bfloat16", "bfloat16")):
        assert D.name(a) == b and D.get(a) is D.get(b)
    assert D.short("bfloat16") == "bf16" and D.short("float8_e4m3fn") == "fp8"
    assert D.name(torch.float16) == "float16" and D.name(torch.bfloat16) == "bfloat16"
    with pytest.raises(D.UnknownDtype, match="fp7"):
        D.get("fp7")


def test_bytes_per_element_count_block_scales():
    assert D.bytes_per_element("bf16") == 2 and D.bytes_per_element("tf32") == 4
    assert D.bytes_per_element("mxfp4") == pytest.approx(4.25 / 8)  # 4 bits + an 8-bit scale per 32
    assert D.bytes_per_element("nvfp4") == pytest.approx(4.5 / 8)  # 4 bits + an fp8 scale per 16
    for f in D.FORMATS:  # a torch-stored format's size is torch's
        if f.torch is not None and hasattr(torch, f.torch):
            assert f.bytes == getattr(torch, f.torch).itemsize


def test_torch_dtypes():
    assert D.torch_dtype("tf32") is torch.float32  # TF32 is float32 storage with tensor-core math
    assert D.torch_dtype("bf16") is torch.bfloat16
    with pytest.raises(D.UnknownDtype):
        D.torch_dtype("mxfp4")


def test_every_storage_format_computes_in_a_measured_matmul_dtype():
    for s in D.STORAGE:
        chain = D.get(s).compute
        assert chain and any(c in D.MATMUL for c in chain), s
    assert set(D.TENSOR) <= {f.name for f in D.FORMATS}
