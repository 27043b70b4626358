#!/usr/bin/env python3
# Writes the small reference files that tests/core/test_safetensors.cpp and test_json.cpp read:
# a safetensors file from the reference `safetensors` package, the index.json that transformers
# writes for a sharded save (shards split by huggingface_hub), and a tiny Llama config.json.
#
#   pip install safetensors numpy huggingface_hub   # never a CI dependency: outputs are committed
#   python3 tools/golden/make_safetensors_golden.py [tests/data]
import json
import os
import struct
import sys

import numpy as np
from huggingface_hub import split_state_dict_into_shards_factory
from safetensors import TensorSpec, deserialize, serialize_file


def bf16_bits(values):
    """bfloat16 bit patterns of values that bfloat16 represents exactly."""
    f32 = np.asarray(values, dtype=np.float32)
    bits = f32.view(np.uint32)
    assert np.all(bits & 0xFFFF == 0), "golden bf16 values must be exact in bfloat16"
    return (bits >> 16).astype(np.uint16)


# name -> (safetensors dtype name, numpy array holding the little-endian bytes)
# The C++ test builds the same tensors from the same literal values.
TENSORS = {
    "embed.weight": ("float32", np.array([[1.5, -2.25, 0.1], [-0.0, 1e30, 7.0]], dtype=np.float32)),
    "norm.weight": ("bfloat16", bf16_bits([1.0, -0.375, 300.0])),
    "half": ("float16", np.array([[0.5, -1.25], [65504.0, 6.103515625e-05]], dtype=np.float16)),
    "scalar": ("float64", np.array(3.141592653589793, dtype=np.float64)),  # 0-dim
    "ids": ("int64", np.array([0, -1, 2**63 - 1, -(2**63)], dtype=np.int64)),
    "counts": ("int32", np.array([7, -(2**31)], dtype=np.int32)),
    "empty": ("float32", np.zeros((0, 3), dtype=np.float32)),
}
METADATA = {"format": "pt"}  # one key: the reference writes several in hash order

# Tensors for the sharding golden: (name, dtype, shape) in state-dict order, split with a
# 100-byte limit. The C++ test saves tensors of the same names, dtypes and shapes.
SHARDED_TENSORS = [
    ("model.embed_tokens.weight", np.float32, (4, 8)),  # 128 bytes: above the limit, own shard
    ("model.layers.0.self_attn.q_proj.weight", np.float32, (4, 4)),
    ("model.layers.0.mlp.up_proj.weight", np.float16, (4, 4)),
    ("model.layers.1.self_attn.q_proj.weight", np.float32, (4, 4)),
    ("model.norm.weight", np.float32, (4,)),
    ("lm_head.weight", np.float32, (2, 8)),
]
SHARDED_MAX_BYTES = 100

# A tiny Llama-3-style config, laid out as transformers writes it (indent 2, sorted keys).
TINY_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "head_dim": 16,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 172,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "pad_token_id": None,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0",
    "use_cache": True,
    "vocab_size": 128256,
}


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data"))
    os.makedirs(out_dir, exist_ok=True)

    arrays = []  # keep the buffers alive while the specs point at them
    specs = {}
    for name, (dtype, array) in TENSORS.items():
        array = np.array(array, copy=True, order="C")  # keeps 0-dim arrays 0-dim
        arrays.append(array)
        specs[name] = TensorSpec(dtype=dtype, shape=list(array.shape),
                                 data_ptr=array.ctypes.data, data_len=array.nbytes)
    st_path = os.path.join(out_dir, "golden.safetensors")
    serialize_file(specs, st_path, metadata=METADATA)

    # Sanity: the reference reader gets back what we wrote.
    with open(st_path, "rb") as f:
        data = f.read()
    header_len = struct.unpack("<Q", data[:8])[0]
    print(f"{st_path}: {len(data)} bytes, header {header_len} bytes")
    print(data[8:8 + header_len].decode())
    loaded = dict(deserialize(data))
    for name, (dtype, array) in TENSORS.items():
        assert bytes(loaded[name]["data"]) == np.ascontiguousarray(array).tobytes(), name

    # The index transformers' save_pretrained writes for this split (modeling_utils.py).
    state_dict = {name: np.zeros(shape, dtype) for name, dtype, shape in SHARDED_TENSORS}
    split = split_state_dict_into_shards_factory(
        state_dict, get_storage_size=lambda t: t.nbytes,
        filename_pattern="model{suffix}.safetensors", max_shard_size=SHARDED_MAX_BYTES)
    assert split.is_sharded
    total_parameters = sum(t.size for t in state_dict.values())
    index = {"metadata": {"total_parameters": total_parameters, **split.metadata},
             "weight_map": split.tensor_to_filename}
    index_path = os.path.join(out_dir, "sharded_index_golden.json")
    with open(index_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    print(f"{index_path}: {split.filename_to_tensors}")

    config_path = os.path.join(out_dir, "tiny_llama_config.json")
    with open(config_path, "w") as f:
        f.write(json.dumps(TINY_LLAMA_CONFIG, indent=2, sort_keys=True) + "\n")
    print(f"{config_path} written")


if __name__ == "__main__":
    main()
