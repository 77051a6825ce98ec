"""Writes a tiny random Llama-family model with transformers' save_pretrained and its reference
logits, for tests/qat/models/test_llama.cpp.

usage: llama_ref.py <out_dir> [kind ...]
kinds (default all): llama (GQA, untied), tied (tied embeddings), qwen2 (q/k/v bias), llama3
(Llama-3 rope scaling, attention and MLP biases), mistral (sliding window shorter than the
sequence). For each kind writes <out_dir>/<kind>/{config.json, model.safetensors} and
<out_dir>/<kind>/reference.safetensors with input_ids (2, 24) int64 and logits (2, 24, vocab)
float32 from the model in eval mode.
"""
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in test logs
import torch
from safetensors.torch import save_file
import transformers as tf

KINDS = ["llama", "tied", "qwen2", "llama3", "mistral"]


def write(kind, out):
    torch.manual_seed({"llama": 1, "tied": 2, "qwen2": 3, "llama3": 4, "mistral": 5}[kind])
    common = dict(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                  max_position_embeddings=256)
    if kind == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common, rope_theta=5000.0))
    elif kind == "tied":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common, tie_word_embeddings=True))
    elif kind == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**common, rope_theta=1e6))
    elif kind == "llama3":
        rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common, rope_parameters=rope,
                                                   attention_bias=True, mlp_bias=True))
    elif kind == "mistral":
        model = tf.MistralForCausalLM(tf.MistralConfig(**common, sliding_window=7, head_dim=16))
    else:
        raise SystemExit(f"unknown kind {kind}")

    # transformers initialises norms to ones and biases to zeros; randomise them so the test sees
    # whether each is applied where it belongs.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    ids = torch.randint(0, common["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()}, f"{out}/reference.safetensors")


if __name__ == "__main__":
    root = sys.argv[1]
    for k in sys.argv[2:] or KINDS:
        write(k, os.path.join(root, k))
