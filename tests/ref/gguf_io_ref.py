"""Reference reads and writes of GGUF files with the `gguf` package (0.19.0: GGUFReader,
GGUFWriter, gguf.quants). Used by tests/qat/io/test_gguf_interop.cpp.

usage:
  gguf_io_ref.py dump GGUF OUTDIR [NAME ...|--all]
      OUTDIR/meta.json: alignment, data offset, every KV (type ids, raw value bytes as hex,
      strings as hex) and every tensor info as GGUFReader sees them; for each named tensor
      OUTDIR/<i>.raw (its bytes) and OUTDIR/<i>.f32 (gguf.quants.dequantize, float32, torch order).
  gguf_io_ref.py write GGUF
      a GGUF written by GGUFWriter with KVs of every type and F32/F16/BF16/Q8_0/Q4_0/Q4_1 tensors,
      plus Q4_K/Q6_K tensors of random blocks with finite fp16 scales (0.19.0 cannot quantize
      k-quants).
  gguf_io_ref.py permute IN_F32 ROWS COLS N_HEAD OUT_PERMUTED OUT_REVERSED
      convert_hf_to_gguf.py's permute and transformers' reverse permute of a [ROWS, COLS] matrix.
"""
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType, GGUFWriter, quants


def dump(path, outdir, names):
    r = GGUFReader(path)
    kvs = []
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue
        t = f.types[0]
        # The element type from the raw field: GGUFReader's `types` omits it for empty arrays.
        elem = int(f.parts[3][0]) if t == GGUFValueType.ARRAY else int(t)
        entry = {"key": key, "type": int(t), "elem_type": elem, "count": len(f.data)}
        if elem == GGUFValueType.STRING:
            entry["strings"] = [bytes(f.parts[i]).hex() for i in f.data]
        else:
            entry["hex"] = b"".join(f.parts[i].tobytes() for i in f.data).hex()
        kvs.append(entry)
    tensors = []
    for i, t in enumerate(r.tensors):
        tensors.append({"name": t.name, "type": int(t.tensor_type), "ne": [int(x) for x in t.shape],
                        "offset": int(t.data_offset - r.data_offset), "nbytes": int(t.n_bytes)})
        if "--all" in names or t.name in names:
            np.ascontiguousarray(t.data).view(np.uint8).tofile(os.path.join(outdir, f"{i}.raw"))
            deq = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            np.ascontiguousarray(deq).tofile(os.path.join(outdir, f"{i}.f32"))
    meta = {"alignment": int(r.alignment), "data_offset": int(r.data_offset), "kv": kvs, "tensors": tensors}
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f)


def random_kquant_blocks(rng, qtype, n_blocks):
    size = {Q.Q4_K: 144, Q.Q6_K: 210}[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    scales = rng.standard_normal((n_blocks, 2)).astype(np.float16).view(np.uint8)
    if qtype == Q.Q4_K:
        blocks[:, 0:4] = scales  # d, dmin
    else:
        blocks[:, 208:210] = scales[:, 0:2]  # d
    return blocks


def write(path):
    rng = np.random.default_rng(7)
    w = GGUFWriter(path, arch="llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.1)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ✓")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 1.0 / 3.0)
    w.add_key_value("t.arr.u8", [1, 2, 255], GGUFValueType.ARRAY, sub_type=GGUFValueType.UINT8)
    w.add_key_value("t.arr.i16", [-1, 2, -3], GGUFValueType.ARRAY, sub_type=GGUFValueType.INT16)
    w.add_key_value("t.arr.i32", [-7, 0, 7], GGUFValueType.ARRAY, sub_type=GGUFValueType.INT32)
    w.add_key_value("t.arr.f32", [0.5, -1.25, 3e-8], GGUFValueType.ARRAY, sub_type=GGUFValueType.FLOAT32)
    w.add_key_value("t.arr.bool", [True, False, True], GGUFValueType.ARRAY, sub_type=GGUFValueType.BOOL)
    w.add_key_value("t.arr.u64", [1, 2**64 - 1], GGUFValueType.ARRAY, sub_type=GGUFValueType.UINT64)
    w.add_key_value("t.arr.f64", [1e300, -2.5], GGUFValueType.ARRAY, sub_type=GGUFValueType.FLOAT64)
    w.add_array("t.arr.str", ["a", "", "ßç", "<|im_end|>"])
    x = rng.standard_normal((6, 64)).astype(np.float32)
    w.add_tensor("dense.f32", x)
    w.add_tensor("dense.f16", x.astype(np.float16))
    w.add_tensor("dense.bf16", quants.quantize(x, Q.BF16), raw_dtype=Q.BF16)
    w.add_tensor("norm.f32", rng.standard_normal(64).astype(np.float32))
    for qt in (Q.Q8_0, Q.Q4_0, Q.Q4_1):
        w.add_tensor(f"blk.{qt.name.lower()}", quants.quantize(x, qt), raw_dtype=qt)
    w.add_tensor("blk.q4_k", random_kquant_blocks(rng, Q.Q4_K, 8).reshape(4, 2 * 144), raw_dtype=Q.Q4_K)
    w.add_tensor("blk.q6_k", random_kquant_blocks(rng, Q.Q6_K, 8).reshape(4, 2 * 210), raw_dtype=Q.Q6_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def permute(weights, n_head, n_head_kv):
    # convert_hf_to_gguf.py (LlamaModel.permute)
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def main():
    mode = sys.argv[1]
    if mode == "dump":
        dump(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif mode == "write":
        write(sys.argv[2])
    elif mode == "permute":
        src, rows, cols, n_head, out_p, out_r = sys.argv[2:8]
        x = np.fromfile(src, dtype=np.float32).reshape(int(rows), int(cols))
        from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
        np.ascontiguousarray(permute(x, int(n_head), int(n_head))).tofile(out_p)
        rev = LlamaTensorProcessor()._reverse_permute_weights(x, int(n_head), int(n_head))
        np.ascontiguousarray(rev).tofile(out_r)
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
