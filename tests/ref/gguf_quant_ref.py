"""Reference GGUF block quantization with the `gguf` package (ggml's Python port, bit-exact with
ggml-quants.c's quantize_row_*_ref). Used by tests/ops/test_gguf_blocks.cpp.

usage: gguf_quant_ref.py FORMAT ROWS COLS IN_F32 OUT_BLOCKS OUT_DEQUANT_F32
"""
import sys

import numpy as np
from gguf import GGMLQuantizationType, quants

FORMATS = {"gguf_q8_0": GGMLQuantizationType.Q8_0, "gguf_q4_0": GGMLQuantizationType.Q4_0,
           "gguf_q4_1": GGMLQuantizationType.Q4_1, "gguf_q5_0": GGMLQuantizationType.Q5_0,
           "gguf_q5_1": GGMLQuantizationType.Q5_1}


def main() -> None:
    fmt, rows, cols, src, dst_blocks, dst_deq = sys.argv[1:7]
    x = np.fromfile(src, dtype=np.float32).reshape(int(rows), int(cols))
    with np.errstate(all="ignore"):
        blocks = quants.quantize(x, FORMATS[fmt])
        deq = quants.dequantize(blocks, FORMATS[fmt]).astype(np.float32)
    np.ascontiguousarray(blocks).tofile(dst_blocks)
    np.ascontiguousarray(deq).tofile(dst_deq)


if __name__ == "__main__":
    main()
