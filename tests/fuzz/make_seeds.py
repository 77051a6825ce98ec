#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: small valid files, generated so that no binary is
committed. Standard library only (runs before any venv exists).

usage: make_seeds.py OUTDIR   -> OUTDIR/<target>/<seed files>
Each `seeds_<target>()` returns {file name: bytes}; add one per new fuzz target.
"""
import json
import os
import random
import struct
import sys


def safetensors_file(tensors, metadata=None):
    """tensors: [(name, dtype, shape, nbytes)] laid out in order."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    rng = random.Random(len(text))
    return struct.pack("<Q", len(text)) + text + bytes(rng.randrange(256) for _ in range(offset))


def seeds_fuzz_safetensors():
    return {
        "empty": safetensors_file([]),
        "meta": safetensors_file([("w", "F32", [2, 2], 16)], {"format": "pt", "k": "v"}),
        "dtypes": safetensors_file([
            ("a", "F64", [2], 16), ("b", "BF16", [3], 6), ("c", "F8_E4M3", [4], 4), ("d", "BOOL", [2], 2),
            ("e", "I64", [1], 8), ("f", "U16", [2], 4), ("g", "F4", [4], 2), ("h", "C64", [1], 8)]),
        "scalar_and_empty": safetensors_file([("s", "F32", [], 4), ("z", "F16", [0, 3], 0)]),
    }


def gguf_string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
GGML_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (1, 2)}


def gguf_value(vtype, value, elem=None):
    if vtype == 8:
        return gguf_string(value)
    if vtype == 9:
        body = b"".join(gguf_value(elem, v) for v in value)
        return struct.pack("<IQ", elem, len(value)) + body
    return struct.pack(SCALAR_FMT[vtype], value)


def gguf_file(kvs, tensors, alignment=32, version=3):
    """kvs: [(key, type, value, elem)], tensors: [(name, ne, ggml_type)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, value, elem in kvs:
        out += gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value, elem)
    offset, sizes = 0, []
    for name, ne, gtype in tensors:
        block, size = GGML_SIZES[gtype]
        n = 1
        for d in ne:
            n *= d
        nbytes = n // block * size
        out += gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", d) for d in ne)
        out += struct.pack("<IQ", gtype, offset)
        sizes.append(nbytes)
        offset += (nbytes + alignment - 1) // alignment * alignment
    if tensors:
        out += b"\0" * ((alignment - len(out) % alignment) % alignment)
    rng = random.Random(len(out))
    for nbytes in sizes:
        out += bytes(rng.randrange(256) for _ in range(nbytes))
        out += b"\0" * ((alignment - nbytes % alignment) % alignment)
    return out


def seeds_fuzz_gguf():
    all_kvs = [("general.architecture", 8, "llama", None)] + [
        (f"t.{t}", t, v, None) for t, v in [(0, 200), (1, -3), (2, 60000), (3, -300), (4, 7), (5, -7),
                                             (6, 0.5), (7, True), (10, 2**63), (11, -(2**40)), (12, 1 / 3)]
    ] + [("t.arr.i32", 9, [1, -2, 3], 5), ("t.arr.str", 9, ["a", "", "<s>"], 8), ("t.arr.f32", 9, [0.25], 6),
         ("t.arr.empty", 9, [], 4)]
    return {
        "minimal": gguf_file([], []),
        "kvs": gguf_file(all_kvs, []),
        "tensors": gguf_file([("general.alignment", 4, 64, None)],
                             [("token_embd.weight", [32, 4], 8), ("blk.0.attn_q.weight", [64, 2], 3),
                              ("blk.0.attn_norm.weight", [32], 0), ("h", [4, 2], 1), ("b", [8], 30)], alignment=64),
        "kquants": gguf_file([("general.architecture", 8, "llama", None)],
                             [("q4k", [256, 2], 12), ("q6k", [256], 14), ("q40", [32, 3], 2)]),
        "v2": gguf_file([("k", 4, 1, None)], [("w", [4], 0)], version=2),
    }


def tokenizer_json(pre_tokenizer, added=(), post_processor=None):
    vocab = {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120a": 4, "1": 5, "<s>": 6}
    doc = {
        "version": "1.0",
        "added_tokens": [{"id": 6, "content": "<s>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}] + list(added),
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": [["a", "b"], ["\u0120", "a"]]},
    }
    return json.dumps(doc).encode()


def seeds_fuzz_tokenizer_json():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    split = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+"}, "behavior": "Isolated",
         "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    template = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [6], "tokens": ["<s>"]}}}
    lstrip = {"id": 7, "content": "<tool>", "single_word": False, "lstrip": True, "rstrip": False,
              "normalized": False, "special": False}
    return {
        "byte_level.json": tokenizer_json(byte_level),
        "split_digits.json": tokenizer_json(split),
        "template_lstrip.json": tokenizer_json(byte_level, added=[lstrip], post_processor=template),
    }


def main():
    out = sys.argv[1]
    for name, fn in sorted(globals().items()):
        if not name.startswith("seeds_"):
            continue
        target_dir = os.path.join(out, name[len("seeds_"):])
        os.makedirs(target_dir, exist_ok=True)
        for fname, data in fn().items():
            with open(os.path.join(target_dir, fname), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
