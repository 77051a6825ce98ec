"""Reference checks of qat_io's safetensors files with the `safetensors` package (0.8.0).
Used by tests/qat/io/test_safetensors_interop.cpp.

Both sides build the same tensors from a byte pattern (see pattern_bytes; the C++ twin is in the
test), so every comparison is exact, bit for bit, NaN payloads included.

usage:
  safetensors_io_ref.py write DIR            writes DIR/torch.safetensors (save_file from torch)
                                             and DIR/numpy.safetensors (save_file from numpy)
  safetensors_io_ref.py check FILE KIND      reads our FILE (KIND: torch | meta) with safe_open and
                                             checks every tensor; for KIND=torch the bytes must
                                             equal Python's own save_file of the same tensors
  safetensors_io_ref.py check_sharded DIR N  reads our sharded checkpoint (index + N shards)
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save as save_torch_bytes
from safetensors.torch import save_file as save_torch

# name, safetensors dtype, shape: every dtype torch and safetensors share (F8_E8M0 is missing
# from safetensors.torch's table in 0.8.0, so it is only round-tripped on the C++ side).
TORCH_SET = [
    ("a.f64", "F64", [3, 5]), ("b.f32", "F32", [4, 4]), ("c.f16", "F16", [2, 3, 4]),
    ("d.bf16", "BF16", [7]), ("e.f8_e4m3", "F8_E4M3", [5, 3]), ("f.f8_e5m2", "F8_E5M2", [9]),
    ("g.i64", "I64", [2, 2]), ("h.i32", "I32", [3]), ("i.i16", "I16", [2, 5]), ("j.i8", "I8", [11]),
    ("k.u8", "U8", [4, 4]), ("l.bool", "BOOL", [3, 3]), ("m.u16", "U16", [6]), ("n.u32", "U32", [2, 3]),
    ("o.u64", "U64", [3]), ("p.f8_e4m3fnuz", "F8_E4M3FNUZ", [4]), ("q.f8_e5m2fnuz", "F8_E5M2FNUZ", [4]),
    ("r.c64", "C64", [2]), ("s.scalar", "F32", []), ("t.empty", "F16", [0, 4]),
]
NUMPY_SET = [
    ("a.f64", "F64", [3, 5]), ("b.f32", "F32", [4, 4]), ("c.f16", "F16", [2, 3, 4]),
    ("g.i64", "I64", [2, 2]), ("h.i32", "I32", [3]), ("i.i16", "I16", [2, 5]), ("j.i8", "I8", [11]),
    ("k.u8", "U8", [4, 4]), ("l.bool", "BOOL", [3, 3]), ("m.u16", "U16", [6]), ("n.u32", "U32", [2, 3]),
    ("o.u64", "U64", [3]),
]
TORCH_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz, "F8_E5M2FNUZ": torch.float8_e5m2fnuz, "C64": torch.complex64,
}
NUMPY_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "U16": np.uint16,
    "U32": np.uint32, "U64": np.uint64,
}
META = {"format": "pt", "source": "qat", "note": "x=1"}


def pattern_bytes(k, dtype, nbytes):
    j = np.arange(nbytes, dtype=np.int64)
    if dtype == "BOOL":
        return ((j + k) % 3 == 0).astype(np.uint8).tobytes()
    return ((j * 31 + k * 17 + 7) & 0xFF).astype(np.uint8).tobytes()


def torch_tensor(k, dtype, shape):
    t = torch.empty(shape, dtype=TORCH_DTYPES[dtype])
    raw = pattern_bytes(k, dtype, t.numel() * t.element_size())
    if raw:
        t.view(-1).view(torch.uint8).copy_(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    return t


def torch_set():
    return {name: torch_tensor(k, dt, shape) for k, (name, dt, shape) in enumerate(TORCH_SET)}


def numpy_set():
    out = {}
    for k, (name, dt, shape) in enumerate(NUMPY_SET):
        size = int(np.prod(shape)) * np.dtype(NUMPY_DTYPES[dt]).itemsize
        out[name] = np.frombuffer(pattern_bytes(k, dt, size), dtype=NUMPY_DTYPES[dt]).reshape(shape)
    return out


def raw_of(t):
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def check_tensors(path, expected, problems):
    with safe_open(path, framework="pt") as f:
        names = sorted(f.keys())
        if names != sorted(expected):
            problems.append(f"{path}: names {names} != {sorted(expected)}")
            return {}
        for name in names:
            got, want = f.get_tensor(name), expected[name]
            if got.dtype != want.dtype or list(got.shape) != list(want.shape) or raw_of(got) != raw_of(want):
                problems.append(f"{path}: tensor {name}: got {got.dtype} {list(got.shape)}, "
                                f"want {want.dtype} {list(want.shape)} (or bytes differ)")
        return f.metadata()


def main():
    mode = sys.argv[1]
    problems = []
    if mode == "write":
        d = sys.argv[2]
        save_torch(torch_set(), os.path.join(d, "torch.safetensors"), metadata={"format": "pt"})
        save_numpy(numpy_set(), os.path.join(d, "numpy.safetensors"), metadata={"source": "numpy"})
        return 0
    if mode == "check":
        path, kind = sys.argv[2], sys.argv[3]
        meta = check_tensors(path, torch_set(), problems)
        if kind == "torch":
            ours = open(path, "rb").read()
            theirs = save_torch_bytes(torch_set(), metadata={"format": "pt"})
            if ours != theirs:
                problems.append(f"{path}: bytes differ from safetensors.torch.save "
                                f"({len(ours)} vs {len(theirs)} bytes; headers {ours[:200]!r} vs {theirs[:200]!r})")
        if kind == "meta" and meta != META:
            problems.append(f"{path}: metadata {meta} != {META}")
    elif mode == "check_sharded":
        d, n = sys.argv[2], int(sys.argv[3])
        index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        files = sorted(set(index["weight_map"].values()))
        want_files = [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]
        if files != want_files:
            problems.append(f"shard files {files} != {want_files}")
        expected = torch_set()
        total = sum(t.numel() * t.element_size() for t in expected.values())
        if index["metadata"]["total_size"] != total:
            problems.append(f"total_size {index['metadata']['total_size']} != {total}")
        seen = {}
        for fname in files:
            with safe_open(os.path.join(d, fname), framework="pt") as f:
                for name in f.keys():
                    seen[name] = f.get_tensor(name)
                    if index["weight_map"].get(name) != fname:
                        problems.append(f"{name} is in {fname} but the index says {index['weight_map'].get(name)}")
        for name, want in expected.items():
            if name not in seen or raw_of(seen[name]) != raw_of(want) or seen[name].dtype != want.dtype:
                problems.append(f"sharded tensor {name} missing or different")
    for p in problems:
        print("MISMATCH:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
