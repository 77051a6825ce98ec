"""ggml's tensor types (id, elements per block, bytes per block) and llama.cpp's file types, as the
`gguf` package (gguf-py, maintained in llama.cpp's tree) defines them in gguf.constants. Used by
tests/qat/scheme/test_format_table.cpp to check the formats table and the GGUF type table.

usage: gguf_types_ref.py OUT_TXT
writes one line per type, "type NAME ID BLOCK_SIZE TYPE_SIZE", and per file type,
"ftype NAME VALUE".
"""
import sys

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType


def main() -> None:
    with open(sys.argv[1], "w") as out:
        for t in GGMLQuantizationType:
            if t in GGML_QUANT_SIZES:
                block_size, type_size = GGML_QUANT_SIZES[t]
                out.write(f"type {t.name} {t.value} {block_size} {type_size}\n")
        for f in LlamaFileType:
            out.write(f"ftype {f.name} {f.value}\n")


if __name__ == "__main__":
    main()
