"""Reference NF4 + double quantization with bitsandbytes (CPU). Used by tests/qat/nf4/test_nf4_bnb.cpp.

usage:
  bnb_nf4_ref.py cases OUT.safetensors   every reference case in one file (inputs and outputs)
  bnb_nf4_ref.py map                     the signed 8-bit dynamic map, one "index hexbits value" a line
                                         (tests/fixtures/bnb_dynamic_map_signed.txt is this output)

Each case k stores: case{k}.x (the input, its own dtype and shape), case{k}.blocksize (int64[1]),
.packed (uint8 [(n+1)/2, 1]), .absmax (float32, no double quant), .dq.absmax (uint8),
.dq.nested_absmax (float32), .dq.offset (float32 0-dim), .deq (dequantize_4bit, the input dtype),
.dq.deq (the same through the double-quantized absmax), and .deq_f32 (dequantize to float32).
"""
import os
import struct
import sys

# bitsandbytes wraps its fallback dequantizer in torch.compile; compiling it per shape takes
# ~40 s and changes no bits (one multiply per element), so run it eagerly.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import torch  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute  # noqa: E402
from bitsandbytes.backends.utils import _get_4bit_code  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def dynamic_map():
    return F.create_dynamic_map(signed=True).to(torch.float32)


def print_map():
    for i, v in enumerate(dynamic_map().tolist()):
        bits = struct.unpack("<I", struct.pack("<f", v))[0]
        print(f"{i} 0x{bits:08x} {v!r}")


def inputs():
    """(name, tensor, blocksize): shapes with odd sizes, partial blocks, zero blocks, extremes."""
    g = torch.Generator().manual_seed(1234)
    out = []

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    for bs in (32, 64, 128, 256, 4096):
        out.append((randn(64, 128), bs))
        out.append((randn(7, 33), bs))                  # odd numel, partial last block
        out.append((randn(1000), bs))
        out.append((randn(3, 5, 41, scale=1e-3), bs))   # odd numel, 3-d
    # more than 256 absmax blocks with a partial nested block (64 * 300 + 17 elements)
    out.append((randn(64 * 300 + 17), 64))
    out.append((randn(257, 64 * 2), 64))
    # all-zero blocks (full and partial), a block with a single non-zero, exact ties on thresholds
    z = randn(64 * 5 + 9)
    z[0:64] = 0
    z[64:128] = 0
    z[130] = 0.0
    z[128:192] = 0
    z[150] = -3.5
    z[64 * 5:] = 0
    out.append((z, 64))
    t = torch.tensor([0.03979014977812767, -0.045525018125772476, 0.8614784181118011, 1.0,
                      -1.0, 0.5016634166240692, -0.8480964004993439, 0.0] * 8, dtype=torch.float32)
    out.append((t, 64))
    # huge and tiny magnitudes (normal and subnormal absmax)
    out.append((randn(500, scale=1e30), 64))
    out.append((randn(500, scale=1e-39), 64))
    out.append((randn(300, scale=1e-36), 128))
    mixed = randn(64 * 40)
    mixed[::64] *= 1e6
    out.append((mixed, 64))
    # low-precision inputs
    out.append((randn(96, 130).to(torch.bfloat16), 64))
    out.append((randn(31, 17).to(torch.float16), 64))
    out.append((randn(256, 256).to(torch.bfloat16), 128))
    return out


def dequantize(packed, st, absmax):
    """bitsandbytes' dequantize_4bit. Where its native CPU kernel disagrees with bitsandbytes' own
    generic implementation (the one it falls back to for odd shapes and large blocks), the generic
    one, with a note on stderr: seen on AVX512 machines for 2-d inputs whose blocks span rows
    (64 x 128 in blocks of 256), where the native kernel scales elements by the wrong block's absmax."""
    native = F.dequantize_4bit(packed, st, quant_type="nf4").contiguous()
    generic = _dequantize_4bit_compute(packed.reshape(-1).view(torch.uint8), absmax.float(),
                                       _get_4bit_code("nf4", packed.device), st.blocksize, st.shape, st.dtype)
    if torch.equal(native.reshape(-1), generic.reshape(-1)):
        return native
    print(f"bnb_nf4_ref.py: bitsandbytes' native CPU dequantize_4bit differs from its generic one for shape "
          f"{tuple(st.shape)}, blocksize {st.blocksize}, {st.dtype}; using the generic one", file=sys.stderr)
    return generic.reshape(native.shape).contiguous()


def write_cases(path):
    tensors = {"dynamic_map": dynamic_map()}
    for k, (x, bs) in enumerate(inputs()):
        p = f"case{k}"
        tensors[p + ".x"] = x.contiguous()
        tensors[p + ".blocksize"] = torch.tensor([bs], dtype=torch.int64)
        packed, st = F.quantize_4bit(x, blocksize=bs, quant_type="nf4", compress_statistics=False)
        tensors[p + ".packed"] = packed.contiguous()
        tensors[p + ".absmax"] = st.absmax.contiguous()
        tensors[p + ".deq"] = dequantize(packed, st, st.absmax)
        st.dtype = torch.float32
        tensors[p + ".deq_f32"] = dequantize(packed, st, st.absmax)
        packed2, st2 = F.quantize_4bit(x, blocksize=bs, quant_type="nf4", compress_statistics=True)
        assert torch.equal(packed, packed2)
        tensors[p + ".dq.absmax"] = st2.absmax.contiguous()
        tensors[p + ".dq.nested_absmax"] = st2.state2.absmax.contiguous()
        tensors[p + ".dq.offset"] = st2.offset.reshape(()).to(torch.float32).contiguous()
        tensors[p + ".dq.deq"] = dequantize(packed2, st2, F.dequantize_blockwise(st2.absmax, st2.state2) + st2.offset)
        assert st2.state2.blocksize == 256
        assert torch.equal(st2.state2.code, dynamic_map())
    save_file(tensors, path)


def main():
    if sys.argv[1] == "map":
        print_map()
    elif sys.argv[1] == "cases":
        write_cases(sys.argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
