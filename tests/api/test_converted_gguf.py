"""A checkpoint converted by Vitrina is an ordinary GGUF: Python's `gguf` package (llama.cpp's
own reader) reads every tensor with the name, type and shape llama.cpp's converter gives it,
and the tokenizer metadata the team's tokenizer files hold.

`cargo xtask test` writes the checkpoint and its conversion (engine/examples/tiny_checkpoint.rs)
and names their folder in VITRINA_CONVERTED_DIR; a file given in VITRINA_CONVERTED_GGUF alone
(a 7B conversion, say) is checked for what a file without its checkpoint can be.
"""

import json
import os
import struct
from pathlib import Path

import gguf
import pytest

FOLDER = os.environ.get("VITRINA_CONVERTED_DIR")


def safetensors_headers(folder: Path) -> dict:
    """Every tensor's dtype and shape, read from the shards' JSON headers."""
    tensors = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with open(shard, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(length))
        header.pop("__metadata__", None)
        tensors.update(header)
    return tensors


def gguf_name(hf_name: str) -> str:
    """llama.cpp's name for a Hugging Face Qwen3 tensor (its converter's tensor map)."""
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if hf_name in fixed:
        return fixed[hf_name]
    parts = hf_name.split(".")
    layer, rest = parts[2], ".".join(parts[3:])
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    return f"blk.{layer}.{per_layer[rest]}"


def field(reader: gguf.GGUFReader, key: str):
    value = reader.fields[key]
    if value.types[0] == gguf.GGUFValueType.ARRAY:
        return [value.contents(i) for i in range(len(value.data))]
    return value.contents()


@pytest.mark.skipif(not FOLDER, reason="VITRINA_CONVERTED_DIR names no conversion")
def test_the_converted_checkpoint_reads_in_gguf_with_llama_cpp_names_types_and_shapes():
    folder = Path(FOLDER)
    reader = gguf.GGUFReader(folder / "converted.gguf")
    source = safetensors_headers(folder / "checkpoint")
    found = {tensor.name: tensor for tensor in reader.tensors}
    expected = {gguf_name(name): header for name, header in source.items()}
    assert set(found) == set(expected)
    for name, header in expected.items():
        tensor = found[name]
        # GGUF lists dimensions innermost first.
        assert list(reversed([int(d) for d in tensor.shape])) == header["shape"], name
        wanted = gguf.GGMLQuantizationType.F32 if len(header["shape"]) == 1 else gguf.GGMLQuantizationType.Q8_0
        assert tensor.tensor_type == wanted, name
    config = json.loads((folder / "checkpoint" / "config.json").read_text())
    assert field(reader, "general.architecture") == "qwen3"
    assert field(reader, "qwen3.block_count") == config["num_hidden_layers"]
    assert field(reader, "qwen3.attention.head_count_kv") == config["num_key_value_heads"]
    assert field(reader, "qwen3.attention.key_length") == config["head_dim"]
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0

    tokenizer = json.loads((folder / "checkpoint" / "tokenizer.json").read_text())
    tokenizer_config = json.loads((folder / "checkpoint" / "tokenizer_config.json").read_text())
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == config["vocab_size"]
    for text, token_id in tokenizer["model"]["vocab"].items():
        assert tokens[token_id] == text
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.chat_template") == tokenizer_config["chat_template"]
    assert tokens[field(reader, "tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert json.loads(field(reader, "tokenizer.huggingface.json")) == tokenizer


@pytest.mark.skipif(not os.environ.get("VITRINA_CONVERTED_GGUF"), reason="no VITRINA_CONVERTED_GGUF")
def test_a_large_converted_file_reads_in_gguf():
    reader = gguf.GGUFReader(os.environ["VITRINA_CONVERTED_GGUF"])
    architecture = field(reader, "general.architecture")
    layers = field(reader, f"{architecture}.block_count")
    names = {tensor.name for tensor in reader.tensors}
    for layer in range(layers):
        for part in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]:
            assert f"blk.{layer}.{part}.weight" in names
    types = {tensor.name: tensor.tensor_type for tensor in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q4_K
    assert types["output.weight"] == gguf.GGMLQuantizationType.Q6_K
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q4_K_M
