#!/usr/bin/env python3
"""QLoRA on a Llama-3-8B-shaped model in less host memory than its checkpoint (issue 16).

Writes a Hugging Face checkpoint of Llama-3-8B's shape (hidden 4096, 32 layers, 32 heads, 8 KV
heads, intermediate 14336, vocab 128256) with random bf16 weights: 16 GB in 2 GB shards, cached
under --out (default ~/.cache/qat/bench-8b; the tokenizer is SmolLM2's, whose ids fit the larger
vocabulary). Then runs `qat train` with method qlora on it: the load streams every projection into
NF4 with double quant as it is read (qat/models/loader.h: the full-precision model never exists
whole, and the file's pages leave the resident set as each tensor is copied out), LoRA r16 on all
seven projections, activation checkpointing, micro-batch 1 at sequence --seq (512), --steps steps.

Prints one JSON line: the peak RSS of the qat process (wait4's ru_maxrss: lifetime peak, counting
the file pages it had mapped), the checkpoint's size on disk as the baseline and their ratio, the
seconds per step and outside the steps (load and quantize, data, the final one-sequence eval and
checkpoint). Needs a build (scripts/test) and about 17 GB
of free disk. Usage: bench/qlora_8b.py [--steps 1] [--seq 512] [--threads 2] [--out DIR]
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("QAT_VENV", os.path.expanduser("~/.cache/qat/venv"))
PYTHON = os.path.join(VENV, "bin/python")

SHAPE = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
             num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
             rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False)
SHARD_BYTES = 2 << 30


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def write_checkpoint(path):
    """The model directory, written tensor by tensor in shards (runs in the venv's python)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaConfig
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peers import smollm2_gguf
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    os.makedirs(path, exist_ok=True)
    cfg = LlamaConfig(**SHAPE, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      torch_dtype="bfloat16")
    h, f, kv = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["num_key_value_heads"] * 128
    names = [("model.embed_tokens.weight", (SHAPE["vocab_size"], h))]
    for i in range(SHAPE["num_hidden_layers"]):
        p = f"model.layers.{i}."
        names += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                  (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, h)),
                  (p + "mlp.gate_proj.weight", (f, h)), (p + "mlp.up_proj.weight", (f, h)),
                  (p + "mlp.down_proj.weight", (h, f)), (p + "input_layernorm.weight", (h,)),
                  (p + "post_attention_layernorm.weight", (h,))]
    names += [("model.norm.weight", (h,)), ("lm_head.weight", (SHAPE["vocab_size"], h))]
    torch.manual_seed(0)
    shards, current, size = [], {}, 0
    for name, shape in names:
        if len(shape) == 1:
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape) * 0.02).to(torch.bfloat16)
        if current and size + t.numel() * 2 > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += t.numel() * 2
    shards.append(current)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(path, file), metadata={"format": "pt"})
        for name, t in shard.items():
            weight_map[name] = file
            total += t.numel() * 2
        shards[k] = None
        log(f"bench/qlora_8b.py: wrote {file}")
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as out:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, out, indent=2)
    cfg.save_pretrained(path)
    tok.save_pretrained(path)
    with open(os.path.join(path, "complete"), "w") as out:
        out.write("ok\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/qat/bench-8b"))
    ap.add_argument("--write", help=argparse.SUPPRESS)  # internal: write the checkpoint here
    args = ap.parse_args()
    if args.write:
        return write_checkpoint(args.write)
    model = os.path.join(args.out, "llama3-8b-shape")
    if not os.path.exists(os.path.join(model, "complete")):
        free = shutil.disk_usage(os.path.dirname(model) if os.path.exists(os.path.dirname(model))
                                 else os.path.expanduser("~")).free
        if free < (17 << 30):
            sys.exit(f"bench/qlora_8b.py: {free >> 30} GB free; the checkpoint needs about 17 GB")
        shutil.rmtree(model, ignore_errors=True)
        subprocess.run([PYTHON, os.path.abspath(__file__), "--write", model], check=True)
    file_bytes = sum(os.path.getsize(f) for f in glob.glob(os.path.join(model, "*.safetensors")))
    qat = os.path.join(os.environ.get("QAT_BUILD_DIR", os.path.join(ROOT, "build")), "recipes/qat")
    run_dir = os.path.join(args.out, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [qat, "train", os.path.join(ROOT, "recipes/configs/smollm2-135m/qlora.yaml"),
           f"output_dir={run_dir}", "resume=false", f"model.path={model}",
           f"train.steps={args.steps}", "train.micro_batch=1", "train.grad_accum=1",
           f"data.seq_len={args.seq}", "data.pack=false", "train.warmup_steps=0",
           "train.activation_checkpointing=true", f"eval.every={args.steps + 1}",
           "eval.sequences=1",
           f"checkpoint.every={args.steps + 1}", "log.every=1", "log.progress=off",
           "log.plot=false", "lora.r=16", "lora.alpha=32", "lora.dropout=0.0"]
    log("+ " + " ".join(cmd))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench/qlora_8b.py: qat train failed:\n{out[-4000:]}")
    steps = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "train" and "tokens_per_s" in r:
                steps.append(args.seq / r["tokens_per_s"])
    peak = usage.ru_maxrss * 1024
    print(json.dumps({"bench": "qlora_8b", "shape": "llama3-8b", "seq": args.seq,
                      "threads": args.threads, "steps": len(steps),
                      "peak_rss_gib": round(peak / 2**30, 2),
                      "checkpoint_gib": round(file_bytes / 2**30, 2),
                      "ratio_peak_to_checkpoint": round(peak / file_bytes, 3),
                      "outside_steps_s": round(wall - sum(steps), 1),
                      "step_s": [round(s, 1) for s in steps]}), flush=True)


if __name__ == "__main__":
    main()
