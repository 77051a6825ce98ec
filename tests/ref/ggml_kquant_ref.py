"""Reference k-quant blocks from ggml itself: libggml-base built from llama.cpp's sources (the
llama-cpp-python sdist on PyPI, scripts/bootstrap), called through ctypes. Without an importance
matrix ggml_quantize_chunk runs quantize_row_q4_K_ref / q5_K_ref / q6_K_ref, what
`llama-quantize` does; the `gguf` package (which cannot quantize k-quants) dequantizes the blocks.
Used by tests/ops/test_kquants.cpp.

usage: ggml_kquant_ref.py FORMAT ROWS COLS IN_F32 OUT_BLOCKS OUT_DEQUANT_F32
"""
import ctypes
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType, quants

GGML_VERSION = "0.3.36"  # llama-cpp-python, as pinned in scripts/bootstrap
FORMATS = {"gguf_q4_k": (GGMLQuantizationType.Q4_K, 144), "gguf_q5_k": (GGMLQuantizationType.Q5_K, 176),
           "gguf_q6_k": (GGMLQuantizationType.Q6_K, 210)}


def ggml_library() -> ctypes.CDLL:
    path = os.environ.get("QAT_GGML_LIB") or os.path.expanduser(
        f"~/.cache/qat/llama.cpp-{GGML_VERSION}/lib/libggml-base.so")
    if not os.path.exists(path):
        sys.exit(f"ggml_kquant_ref: {path} is missing; run scripts/bootstrap (or set QAT_GGML_LIB)")
    lib = ctypes.CDLL(path)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return lib


def main() -> None:
    fmt, rows, cols, src, dst_blocks, dst_deq = sys.argv[1:7]
    rows, cols = int(rows), int(cols)
    qtype, block_bytes = FORMATS[fmt]
    x = np.ascontiguousarray(np.fromfile(src, dtype=np.float32).reshape(rows, cols))
    blocks = np.zeros((rows, cols // 256 * block_bytes), dtype=np.uint8)
    written = ggml_library().ggml_quantize_chunk(int(qtype), x.ctypes.data, blocks.ctypes.data, 0, rows,
                                                 cols, None)
    assert written == blocks.nbytes, (written, blocks.nbytes)
    with np.errstate(all="ignore"):
        deq = quants.dequantize(blocks, qtype).astype(np.float32)
    blocks.tofile(dst_blocks)
    np.ascontiguousarray(deq).tofile(dst_deq)


if __name__ == "__main__":
    main()
