"""Model descriptions: parameter counts against the published ones, KV bytes of known models, the MoE
expected-experts formula, the Hugging Face config.json loader, and refusals of malformed files."""
import json

import pytest

from bench import models as M

PRESETS = ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b",
           "deepseek-v3", "gpt-oss-120b", "kimi-k2", "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.3-70b",
           "deepseek-r1"]


@pytest.mark.parametrize("name", PRESETS)
def test_counted_params_match_published(name):
    m = M.resolve(name)
    assert m.params == pytest.approx(m.total_params, rel=0.02)
    # model cards count the active parameters with or without the input embedding table: one of the two
    assert min(abs(m.computed_active_params / m.active_params - 1),
               abs(m.matmul_params_per_token / m.active_params - 1)) < 0.02


def test_llama_8b_by_hand():
    m = M.resolve("llama-3.1-8b")
    attn = 4096 * 4096 * 2 + 4096 * 1024 * 2  # Q, O and K, V (8 kv heads x 128)
    mlp = 3 * 4096 * 14336
    emb = 128256 * 4096
    assert m.params == 32 * (attn + mlp) + 2 * emb
    assert m.matmul_params_per_token == 32 * (attn + mlp) + emb  # the input table is a lookup
    assert m.weight_bytes() == 2 * m.params and m.weight_bytes("fp8") == m.params


@pytest.mark.parametrize("name,kv_bf16", [
    ("llama-3.1-8b", 2 * 32 * 8 * 128 * 2),  # 128 KiB per token
    ("llama-3.1-70b", 2 * 80 * 8 * 128 * 2),  # 320 KiB
    ("llama-3.1-405b", 2 * 126 * 8 * 128 * 2),
    ("mixtral-8x7b", 2 * 32 * 8 * 128 * 2),
    ("qwen3-30b-a3b", 2 * 48 * 4 * 128 * 2),
    ("deepseek-v3", 61 * (512 + 64) * 2),  # MLA: the latent + rope key, 68.6 KiB
    ("kimi-k2", 61 * (512 + 64) * 2),
])
def test_kv_bytes_per_token_of_known_models(name, kv_bf16):
    m = M.resolve(name)
    assert m.kv_bytes_per_token("bf16") == kv_bf16
    assert m.kv_bytes_per_token("fp8") == kv_bf16 / 2
    assert m.kv_bytes(1000, "bf16") == 1000 * kv_bf16


def test_sliding_window_layers_keep_their_window():
    m = M.resolve("gpt-oss-120b")
    per_layer = 2 * 8 * 64 * 2
    assert m.kv_bytes_per_token() == 36 * per_layer
    assert m.kv_bytes(4096) == per_layer * (18 * 4096 + 18 * 128)
    assert m.kv_bytes(100) == 100 * m.kv_bytes_per_token()  # within the window every layer keeps all


def test_expected_experts_formula():
    assert M.expected_experts(8, 2, 1) == pytest.approx(2.0)
    assert M.expected_experts(8, 2, 2) == pytest.approx(8 * (1 - 0.75 ** 2))  # 3.5
    assert M.expected_experts(256, 8, 1) == pytest.approx(8.0)
    assert M.expected_experts(256, 8, 64) == pytest.approx(256 * (1 - (1 - 8 / 256) ** 64))
    assert M.expected_experts(128, 8, 10_000) == pytest.approx(128.0)
    assert M.expected_experts(128, 8, 0) == 0.0
    vals = [M.expected_experts(128, 8, b) for b in (1, 2, 4, 16, 64, 256)]
    assert vals == sorted(vals) and vals[-1] < 128


def test_moe_weights_touched_grow_with_batch():
    m = M.resolve("mixtral-8x7b")
    expert = 3 * 4096 * 14336
    assert m.expert_params == expert
    one = m.weight_bytes_touched(1)
    assert one == pytest.approx(2 * (m.dense_params + 32 * 2 * expert))
    assert m.weight_bytes_touched(2) - one == pytest.approx(2 * 32 * 1.5 * expert)
    assert m.weight_bytes_touched(1e6) == pytest.approx(m.weight_bytes() - 2 * m.input_embedding_params)


def test_mixed_formats_gpt_oss():
    m = M.resolve("gpt-oss-120b")
    assert m.weight_dtypes() == ("bf16", "mxfp4")
    expected = (m.params - m.routed_expert_params) * 2 + m.routed_expert_params * 4.25 / 8
    assert m.weight_bytes() == pytest.approx(expected)
    assert 60e9 < m.weight_bytes() < 70e9  # fits one 80 GB card, as released
    assert m.weight_dtypes("bf16") == ("bf16", "bf16")


def test_attention_flops():
    m = M.resolve("llama-3.1-8b")
    assert m.attention_flops_per_token(1000) == 32 * 4 * 32 * 128 * 1000
    d = M.resolve("deepseek-v3")
    assert d.attention_flops_per_token(10) == 61 * 10 * (2 * 128 * 576 + 2 * 128 * 512)


# ------------------------------------------------------------------------------------------- loaders
LLAMA_8B_HF = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
               "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
               "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
               "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0}}
DSV3_HF = {"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
           "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256,
           "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "moe_layer_freq": 1,
           "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128,
           "v_head_dim": 128, "vocab_size": 129280, "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}
GPT_OSS_HF = {"model_type": "gpt_oss", "hidden_size": 2880, "intermediate_size": 2880, "num_hidden_layers": 36,
              "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64, "num_local_experts": 128,
              "num_experts_per_tok": 4, "vocab_size": 201088, "sliding_window": 128,
              "layer_types": ["sliding_attention", "full_attention"] * 18,
              "quantization_config": {"quant_method": "mxfp4"}}


def test_hf_config_llama_matches_preset(tmp_path):
    f = tmp_path / "config.json"
    f.write_text(json.dumps(LLAMA_8B_HF))
    m = M.resolve(str(f))
    p = M.resolve("llama-3.1-8b")
    assert (m.family, m.attention, m.head_dim) == ("dense", "gqa", 128)
    assert m.params == p.params and m.kv_bytes_per_token() == p.kv_bytes_per_token()
    assert M.resolve(str(tmp_path)).params == p.params  # a directory holding config.json


def test_hf_config_deepseek_and_gpt_oss(tmp_path):
    ds = M.from_dict(DSV3_HF, "dsv3")
    p = M.resolve("deepseek-v3")
    assert (ds.attention, ds.weight_dtype, ds.dense_layers_first) == ("mla", "fp8", 3)
    assert ds.params == p.params and ds.kv_bytes_per_token() == p.kv_bytes_per_token()
    go = M.from_dict(GPT_OSS_HF, "gpt-oss")
    q = M.resolve("gpt-oss-120b")
    assert go.weight_dtypes() == ("bf16", "mxfp4") and go.sliding_window_layers == 18
    assert go.params == q.params and go.kv_bytes(4096) == q.kv_bytes(4096)


def test_our_json_round_trip(tmp_path):
    m = M.resolve("qwen3-235b-a22b")
    f = tmp_path / "m.json"
    f.write_text(m.model_dump_json())
    assert M.resolve(str(f)) == m


@pytest.mark.parametrize("content,msg", [
    ("not json", "not valid JSON"),
    ("[1]", "JSON object"),
    (json.dumps({**LLAMA_8B_HF, "num_hidden_layers": -4}), "non-negative whole number"),
    (json.dumps({**LLAMA_8B_HF, "hidden_size": 4096.5}), "whole number"),
    (json.dumps({"model_type": "llama"}), "missing hidden_size"),
    (json.dumps({"name": "x", "family": "dense", "layers": 2}), "Field required"),
    (json.dumps({"name": "x", "family": "moe", "layers": 2, "hidden": 8, "heads": 2, "kv_heads": 2, "head_dim": 4,
                 "vocab": 10}), "MoE model needs"),
    (json.dumps({"name": "x", "family": "dense", "layers": 2, "hidden": 8, "heads": 3, "kv_heads": 2, "head_dim": 4,
                 "vocab": 10, "ffn_intermediate": 8}), "multiple of kv_heads"),
    ('{"name": "x", "family": "dense", "layers": NaN}', "not valid JSON"),
])
def test_malformed_models_refused_one_line(tmp_path, content, msg):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(M.ModelError, match=msg) as e:
        M.load(f)
    assert "\n" not in str(e.value)


def test_unknown_missing_and_huge(tmp_path, monkeypatch):
    with pytest.raises(M.ModelError, match="unknown model 'llama-9'.*llama-3.1-8b"):
        M.resolve("llama-9")
    with pytest.raises(M.ModelError, match="cannot read"):
        M.resolve(str(tmp_path / "none.json"))
    f = tmp_path / "big.json"
    f.write_text(json.dumps(LLAMA_8B_HF))
    monkeypatch.setattr(M, "MAX_MODEL_FILE_BYTES", 10)
    with pytest.raises(M.ModelError, match="limit"):
        M.load(f)
    with pytest.raises(M.ModelError, match="unknown dtype"):
        M.norm_dtype("fp7")


@pytest.mark.parametrize("name", PRESETS)
def test_the_steps_gemms_add_up_to_the_weights(name):
    m = M.resolve(name)
    mms = m.matmuls()
    assert sum(x.n * x.k * x.count for x in mms if x.part == "dense") == m.dense_params
    assert sum(x.n * x.k * x.count for x in mms if x.part == "expert") == m.moe_layers * m.expert_params
    assert mms[-1].name == "lm_head" and (mms[-1].n, mms[-1].k) == (m.vocab, m.hidden)
    assert all(x.split in ("col", "row", "none") and x.n > 0 and x.k > 0 and x.count >= 1 for x in mms)


def test_llama_gemms_by_hand():
    shapes = {(x.name, x.n, x.k, x.count) for x in M.resolve("llama-3.1-8b").matmuls()}
    assert shapes == {("qkv", 6144, 4096, 32), ("o", 4096, 4096, 32), ("gate_up", 28672, 4096, 32),
                      ("down", 4096, 14336, 32), ("lm_head", 128256, 4096, 1)}
    q = {x.name: (x.n, x.k, x.part) for x in M.resolve("qwen3-30b-a3b").matmuls()}
    assert q["router"] == (128, 2048, "dense") and q["expert_gate_up"] == (1536, 2048, "expert")
    assert q["expert_down"] == (2048, 768, "expert") and "gate_up" not in q
