"""Serves exports in vLLM's CPU build, offline, for scripts/check-vllm. For each directory: load it
with vllm.LLM, take the top-20 prompt logprobs (vLLM's default max_logprobs) at every position of
fixed prompts and a short greedy continuation; write them, or vLLM's error, as one JSON line.

usage: vllm_serve.py OUT.jsonl NAME=DIR[:DTYPE] [IDS.json]   (DTYPE: bfloat16 (default), ...)
IDS.json: a list of token-id lists to use as the prompts instead of the fixed texts (the C++ test
tests/qat/export/test_export_vllm.cpp passes our tokenizer's ids, so both sides score the same
tokens).
"""
import json
import sys
import time
import traceback

PROMPTS = [
    "The capital of France is",
    "In the beginning God created the heaven and the earth. And the earth was without form",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
]


def serve(name, path, dtype, ids=None):
    from vllm import LLM, SamplingParams
    t0 = time.time()
    llm = LLM(model=path, dtype=dtype, max_model_len=512, enforce_eager=True, seed=0,
              gpu_memory_utilization=0.5)
    load_s = time.time() - t0
    params = SamplingParams(max_tokens=16, temperature=0.0, prompt_logprobs=20, logprobs=1)
    t0 = time.time()
    prompts = PROMPTS if ids is None else [{"prompt_token_ids": list(p)} for p in ids]
    outs = llm.generate(prompts, params)
    gen_s = time.time() - t0
    rows = []
    for o in outs:
        positions = []
        for lp in o.prompt_logprobs or []:
            positions.append(None if lp is None else {str(t): v.logprob for t, v in lp.items()})
        rows.append({"prompt_token_ids": list(o.prompt_token_ids),
                     "prompt_logprobs": positions,
                     "completion": o.outputs[0].text,
                     "completion_token_ids": list(o.outputs[0].token_ids)})
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"name": name, "dir": path, "dtype": dtype, "ok": True, "load_s": round(load_s, 1),
            "generate_s": round(gen_s, 2), "tokens_per_s": round(tokens / gen_s, 1),
            "prompts": rows}


def main():
    out = sys.argv[1]
    name, spec = sys.argv[2].split("=", 1)
    path, _, dtype = spec.partition(":")
    ids = json.load(open(sys.argv[3])) if len(sys.argv) > 3 else None
    try:
        rec = serve(name, path, dtype or "bfloat16", ids)
    except Exception as e:  # the format's own error message is the result
        traceback.print_exc()
        rec = {"name": name, "dir": path, "dtype": dtype or "bfloat16", "ok": False,
               "error": f"{type(e).__name__}: {e}"[:2000]}
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps({k: v for k, v in rec.items() if k != "prompts"}))


if __name__ == "__main__":  # vLLM spawns its engine process
    main()
