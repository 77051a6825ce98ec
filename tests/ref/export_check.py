"""Reads qat's exports with the reference packages, for tests/qat/export/*.cpp. One interpreter
runs every job (importing transformers costs seconds), writing what the references computed; the
C++ tests compare it against our model.

usage: export_check.py JOBS.json
JOBS.json: a list of jobs, each {"kind": ..., "out": RESULT.safetensors, ...}:
  gguf  {path, [names], [input_ids], [tokenizer_strings]}: gguf.GGUFReader + gguf.quants.dequantize of
        every tensor (or the listed ones) as "t/<name>" float32 in GGUF's numpy shape; the KV types
        and tokenizer keys go to RESULT.json; with input_ids, transformers' GGUF loader gives
        "logits"; with tokenizer_strings, AutoTokenizer from the GGUF gives "ids/<i>".
  hf    {dir, input_ids, [strings]}: AutoModelForCausalLM (float32) "logits"; AutoTokenizer
        "ids/<i>" for each string (encode with special tokens as the tokenizer adds them).
  peft  {base_dir, adapter_dir, input_ids}: PeftModel.from_pretrained over the base, "logits".
  bnb   {dir}: transformers + bitsandbytes (CPU) load; per Linear4bit module p, "w/<p>" =
        bnb.functional.dequantize_4bit (float32) and "state_equal/<p>" = 1 if QuantState.as_dict
        (packed) re-serializes to the exact bytes in the file.
  ct    {dir}: per quantized module p, "own/<p>" = unpack per the spec (numpy) * scale in float32;
        "lib/<p>" = compressed_tensors' PackedQuantizationCompressor.decompress (float32 scale)
        when the package is installed (RESULT.json says whether it was).
  ct8   {dir, [input_ids]}: the 8-bit schemes (pack-quantized int8, int-quantized, float-quantized):
        per quantized module p, "own/<p>" = the codes per the spec * scale in float32 and "lib/<p>" =
        compressed_tensors' compressor for the file's format, decompress (float32 scale); with
        input_ids, transformers' compressed-tensors loader (float32) gives "logits" (RESULT.json
        says whether it loaded, and why not).
  bnb8  {dir, [float_dir], input_ids}: bitsandbytes 8-bit (LLM.int8). transformers loads dir (CPU);
        per Linear8bitLt module p, "cb/<p>" (int8 codes) and "scb/<p>" as loaded, and "logits"
        (bitsandbytes' inference path: int8 activations with the outlier decomposition). With
        float_dir (a float32 HF export of the same model), transformers quantizes it itself with
        load_in_8bit: "ref_cb/<p>", "ref_scb/<p>" and "ref_logits".
"""
import json
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # bitsandbytes' compiled CPU fallback: eager is identical
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402


def logits_of(model, ids_path):
    ids = load_file(ids_path)["input_ids"]
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float().contiguous()


def encode_all(tok, strings):
    return {f"ids/{i}": torch.tensor(tok.encode(s), dtype=torch.int64) for i, s in enumerate(strings)}


def job_gguf(job):
    import gguf
    r = gguf.GGUFReader(job["path"])
    names = set(job.get("names", []))
    out = {}
    for t in r.tensors:
        if names and t.name not in names:
            continue
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        out["t/" + t.name] = torch.from_numpy(np.ascontiguousarray(a))
    info = {"types": {}, "strings": {}, "tensor_types": {t.name: t.tensor_type.name for t in r.tensors}}
    for k, f in r.fields.items():
        info["types"][k] = "/".join(tp.name for tp in f.types)
        if k.startswith(("general.", "llama.", "qwen2.", "adapter.")):
            v = f.contents()
            info["strings"][k] = v if isinstance(v, (str, int, float, bool)) else str(v)
    for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
        if k in r.fields:
            info["strings"][k + ".len"] = len(r.fields[k].data)
    if "input_ids" in job or "tokenizer_strings" in job:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        d, f = os.path.split(job["path"])
        if "input_ids" in job:
            model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
            out["logits"] = logits_of(model, job["input_ids"])
        if "tokenizer_strings" in job:
            out.update(encode_all(AutoTokenizer.from_pretrained(d, gguf_file=f), job["tokenizer_strings"]))
    with open(job["out"] + ".json", "w") as fh:
        json.dump(info, fh)
    return out


def job_hf(job):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(job["dir"], dtype=torch.float32)
    out = {"logits": logits_of(model, job["input_ids"])}
    if job.get("strings"):
        out.update(encode_all(AutoTokenizer.from_pretrained(job["dir"]), job["strings"]))
    return out


def job_peft(job):
    from transformers import AutoModelForCausalLM
    from peft import PeftModel
    base = AutoModelForCausalLM.from_pretrained(job["base_dir"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, job["adapter_dir"])
    return {"logits": logits_of(model, job["input_ids"])}


def job_bnb(job):
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(job["dir"], device_map="cpu")
    stored = {}
    for name in os.listdir(job["dir"]):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(job["dir"], name), "pt") as f:
                for k in f.keys():
                    if k.endswith(".quant_state.bitsandbytes__nf4"):
                        stored[k[: -len(".weight.quant_state.bitsandbytes__nf4")]] = f.get_tensor(k)
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state
            w = bnb.functional.dequantize_4bit(m.weight.data, qs).float()
            out["w/" + name] = w.contiguous()
            packed = qs.as_dict(packed=True)["quant_state.bitsandbytes__nf4"]
            same = name in stored and torch.equal(packed.cpu(), stored[name])
            out["state_equal/" + name] = torch.tensor([1 if same else 0], dtype=torch.int64)
    return out


def unpack_int4(packed, shape):
    """The spec: int32 words along K, 8 codes each, first in the lowest 4 bits, value = nibble - 8."""
    w = packed.numpy().astype(np.int64) & 0xFFFFFFFF
    n, k = shape
    nib = np.stack([(w >> (4 * j)) & 0xF for j in range(8)], axis=-1).reshape(n, -1)[:, :k]
    return nib - 8


def job_ct(job):
    cfg = json.load(open(os.path.join(job["dir"], "config.json")))
    qc = cfg["quantization_config"]
    tensors = {}
    for name in os.listdir(job["dir"]):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(job["dir"], name)))
    modules = sorted(k[: -len(".weight_packed")] for k in tensors if k.endswith(".weight_packed"))
    groups = {}
    for g in qc["config_groups"].values():
        for t in g["targets"]:
            groups[t] = g
    try:
        from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
        from compressed_tensors.quantization import QuantizationScheme
        have_lib = True
    except ImportError:
        have_lib = False
    out = {}
    for p in modules:
        g = groups.get(p) or groups["Linear"]
        packed = tensors[p + ".weight_packed"]
        scale = tensors[p + ".weight_scale"].float()
        shape = [int(v) for v in tensors[p + ".weight_shape"].tolist()]
        gs = g["weights"]["group_size"]
        q = torch.from_numpy(unpack_int4(packed, shape)).float()
        own = (q.reshape(shape[0], -1, gs) * scale.unsqueeze(-1)).reshape(shape)
        out["own/" + p] = own.contiguous()
        if have_lib:
            scheme = QuantizationScheme(targets=g["targets"], weights=g["weights"])
            sd = {"weight_packed": packed, "weight_scale": scale, "weight_shape": tensors[p + ".weight_shape"]}
            out["lib/" + p] = PackedQuantizationCompressor.decompress(sd, scheme)["weight"].float().contiguous()
    with open(job["out"] + ".json", "w") as fh:
        json.dump({"compressed_tensors": have_lib}, fh)
    return out


def unpack_int8(packed, shape):
    w = packed.numpy().astype(np.int64) & 0xFFFFFFFF
    n, k = shape
    b = np.stack([(w >> (8 * j)) & 0xFF for j in range(4)], axis=-1).reshape(n, -1)[:, :k]
    return b - 128


def job_ct8(job):
    from compressed_tensors.quantization import QuantizationScheme
    cfg = json.load(open(os.path.join(job["dir"], "config.json")))
    qc = cfg["quantization_config"]
    group = qc["config_groups"]["group_0"]
    fmt = qc["format"]
    if fmt == "pack-quantized":
        from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor as C
    elif fmt == "int-quantized":
        from compressed_tensors.compressors.naive_quantized.base import IntQuantizationCompressor as C
    else:
        from compressed_tensors.compressors.naive_quantized.base import FloatQuantizationCompressor as C
    scheme = QuantizationScheme(targets=group["targets"], weights=group["weights"],
                                input_activations=group["input_activations"])
    tensors = {}
    for name in os.listdir(job["dir"]):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(job["dir"], name)))
    out = {}
    for key in sorted(k for k in tensors if k.endswith(".weight_scale")):
        p = key[: -len(".weight_scale")]
        scale = tensors[key].float()
        if fmt == "pack-quantized":
            shape = [int(v) for v in tensors[p + ".weight_shape"].tolist()]
            q = torch.from_numpy(unpack_int8(tensors[p + ".weight_packed"], shape)).float()
            sd = {"weight_packed": tensors[p + ".weight_packed"], "weight_scale": scale,
                  "weight_shape": tensors[p + ".weight_shape"]}
        else:
            q = tensors[p + ".weight"].float()
            sd = {"weight": tensors[p + ".weight"], "weight_scale": scale}
        out["own/" + p] = (q * scale).contiguous()
        out["lib/" + p] = C.decompress(sd, scheme)["weight"].float().contiguous()
    info = {"format": fmt, "loaded": False, "why": ""}
    if job.get("input_ids"):
        try:
            from transformers import AutoModelForCausalLM
            model = AutoModelForCausalLM.from_pretrained(job["dir"], dtype=torch.float32)
            out["logits"] = logits_of(model, job["input_ids"])
            info["loaded"] = True
        except Exception as e:  # reported to the test, which says what the reader refused
            info["why"] = f"{type(e).__name__}: {e}"[:400]
    with open(job["out"] + ".json", "w") as fh:
        json.dump(info, fh)
    return out


def int8_state(model):
    import bitsandbytes as bnb
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, bnb.nn.Linear8bitLt):
            scb = m.weight.SCB if getattr(m.weight, "SCB", None) is not None else m.state.SCB
            out["cb/" + name] = m.weight.data.contiguous()
            out["scb/" + name] = scb.float().contiguous()
    return out


def job_bnb8(job):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    model = AutoModelForCausalLM.from_pretrained(job["dir"], device_map="cpu")
    out = int8_state(model)
    out["logits"] = logits_of(model, job["input_ids"])
    if job.get("float_dir"):
        ref = AutoModelForCausalLM.from_pretrained(
            job["float_dir"], device_map="cpu", dtype=torch.float32,
            quantization_config=BitsAndBytesConfig(load_in_8bit=True))
        out.update({"ref_" + k: v for k, v in int8_state(ref).items()})
        out["ref_logits"] = logits_of(ref, job["input_ids"])
    return out


JOBS = {"gguf": job_gguf, "hf": job_hf, "peft": job_peft, "bnb": job_bnb, "ct": job_ct,
        "ct8": job_ct8, "bnb8": job_bnb8}


def main():
    jobs = json.load(open(sys.argv[1]))
    failed = 0
    for job in jobs:
        try:
            out = JOBS[job["kind"]](job)
            save_file({k: v.contiguous() for k, v in out.items()}, job["out"])
        except Exception as e:  # a failing job must not hide the others' results
            import traceback
            traceback.print_exc()
            with open(job["out"] + ".error", "w") as fh:
                fh.write(f"{type(e).__name__}: {e}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
