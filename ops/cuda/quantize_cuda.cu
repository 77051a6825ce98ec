// CUDA kernels for quantize / dequantize / fake quant. The per-element math is
// ops/quant_math.h, shared with the CPU reference, so codes and values match it bit for bit.
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/quantize_cuda.cuh"
#include "ops/dispatch.h"
#include "ops/quant_math.h"

namespace qat::ops::cuda {

namespace {

namespace m = qat::ops::math;
using scheme::Format;

// Calls fn(T{}, FormatTag<F>{}) for the runtime dtype and format.
template <typename Fn>
void dispatch_dtype_format(DType dt, Format f, Fn&& fn) {
  dispatch_dtype(dt, [&](auto t) { dispatch_format(f, [&](auto tag) { fn(t, tag); }); });
}

// Statistics with the index of the largest |x|, so that merging in any order keeps the first
// element on ties (the CPU reference scans in element order).
struct IndexedStats {
  m::GroupStats s;
  int64_t amax_index;
};
__device__ __forceinline__ void merge(IndexedStats& a, const IndexedStats& b) {
  if (m::less_total(b.s.min, a.s.min)) a.s.min = b.s.min;
  if (m::less_total(a.s.max, b.s.max)) a.s.max = b.s.max;
  if (b.s.amax > a.s.amax || (b.s.amax == a.s.amax && b.amax_index < a.amax_index)) {
    a.s.amax = b.s.amax;
    a.s.signed_amax = b.s.signed_amax;
    a.amax_index = b.amax_index;
  }
}
__device__ __forceinline__ IndexedStats shfl_xor(const IndexedStats& v, int lane_mask) {
  IndexedStats o;
  o.s.min = __shfl_xor_sync(0xffffffffu, v.s.min, lane_mask);
  o.s.max = __shfl_xor_sync(0xffffffffu, v.s.max, lane_mask);
  o.s.amax = __shfl_xor_sync(0xffffffffu, v.s.amax, lane_mask);
  o.s.signed_amax = __shfl_xor_sync(0xffffffffu, v.s.signed_amax, lane_mask);
  o.amax_index = __shfl_xor_sync(0xffffffffu, v.amax_index, lane_mask);
  return o;
}
__device__ __forceinline__ void add(IndexedStats& a, float x, int64_t i) {
  if (m::is_nan(x)) return;  // as stats_add: NaN never enters the statistics
  IndexedStats b{{x, x, fabsf(x), x}, i};
  merge(a, b);
}
// Index -1: the initial (+0) amax wins ties against zero elements, as the CPU's strict '>' does.
__device__ __forceinline__ IndexedStats indexed_init() {
  return {m::stats_init(), -1};
}

// ---- group statistics: one block per group, any layout ------------------------------------------

constexpr int kStatsThreads = 256;  // a block per group; 8 warps hide the strided loads

template <typename T>
__global__ void group_stats_kernel(const T* __restrict__ x, Layout l, float* __restrict__ stats) {
  const int64_t g = blockIdx.x;
  const int64_t group_numel = l.numel / l.count;
  IndexedStats acc = indexed_init();
  for (int64_t t = threadIdx.x; t < group_numel; t += blockDim.x) {
    // t-th element of group g: (outer, inner) = (t / inner, t % inner)
    const int64_t i = (t / l.inner) * (l.count * l.inner) + g * l.inner + (t % l.inner);
    add(acc, to_float(x[i]), i);
  }
  for (int off = 16; off > 0; off >>= 1) merge(acc, shfl_xor(acc, off));
  __shared__ IndexedStats warp_acc[kStatsThreads / 32];  // (warps,)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_acc[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < blockDim.x / 32; ++w) merge(acc, warp_acc[w]);
    stats[4 * g + 0] = acc.s.min;
    stats[4 * g + 1] = acc.s.max;
    stats[4 * g + 2] = acc.s.amax;
    stats[4 * g + 3] = acc.s.signed_amax;
  }
}

__global__ void scales_from_stats_kernel(const float* __restrict__ stats, SpecArgs spec,
                                         int64_t count, float* __restrict__ scale,
                                         float* __restrict__ zero) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= count) return;
  const m::GroupStats s{stats[4 * g], stats[4 * g + 1], stats[4 * g + 2], stats[4 * g + 3]};
  const m::ScaleZero sz = m::group_scale(spec.format, spec.bits, spec.scale_dtype, s);
  scale[g] = sz.scale;
  zero[g] = sz.zero;
}

// ---- elementwise kernels (grid-stride; parameters looked up per element) -----------------------

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) {
  // Enough blocks to fill an H100 (132 SMs x 8 resident blocks) without a grid per element.
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 132 * 8 ? (b > 0 ? b : 1) : 132 * 8);
}

template <typename T, Format F>
__global__ void fake_quantize_kernel(const T* __restrict__ x, SpecArgs spec, Layout l,
                                     const float* __restrict__ scale,
                                     const float* __restrict__ zero, T* __restrict__ y,
                                     bool* __restrict__ mask) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < l.numel;
       i += stride) {
    const int64_t g = (i / l.inner) % l.count;
    const m::GroupQParams q = m::make_group_qparams(F, spec.bits, scale[g], zero[g]);
    const float v = to_float(x[i]);
    y[i] = from_float<T>(m::fake_quant_value<F>(v, q));
    if (mask) mask[i] = m::in_range<F>(v, q);
  }
}

template <typename T, Format F>
__global__ void quantize_kernel(const T* __restrict__ x, SpecArgs spec, Layout l,
                                const float* __restrict__ scale, const float* __restrict__ zero,
                                uint8_t* __restrict__ codes) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < l.numel;
       i += stride) {
    const int64_t g = (i / l.inner) % l.count;
    const m::GroupQParams q = m::make_group_qparams(F, spec.bits, scale[g], zero[g]);
    codes[i] = static_cast<uint8_t>(m::quantize_value<F>(to_float(x[i]), q));
  }
}

template <typename T, Format F>
__global__ void dequantize_kernel(const uint8_t* __restrict__ codes, SpecArgs spec, Layout l,
                                  const float* __restrict__ scale, const float* __restrict__ zero,
                                  T* __restrict__ y) {
  constexpr bool kSigned = F == Format::kInt || F == Format::kQ8_0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < l.numel;
       i += stride) {
    const int64_t g = (i / l.inner) % l.count;
    const m::GroupQParams q = m::make_group_qparams(F, spec.bits, scale[g], zero[g]);
    const int c =
        kSigned ? static_cast<int>(static_cast<int8_t>(codes[i])) : static_cast<int>(codes[i]);
    y[i] = from_float<T>(m::dequantize_value<F>(c, q));
  }
}

// ---- fused dynamic fake quant: one sub-warp of kLanes threads per contiguous group ------------

// Each thread owns one 16-byte vector of kVec elements; a group is kLanes consecutive vectors,
// so its statistics reduce with kLanes-wide butterfly shuffles and never touch shared memory.
template <typename T>
struct alignas(16) Vec {
  static constexpr int kVec = 16 / sizeof(T);
  T v[kVec];
};

template <typename T, Format F, int kLanes>
__global__ void __launch_bounds__(kThreads)
    fake_quantize_dynamic_kernel(const Vec<T>* __restrict__ x, SpecArgs spec, int64_t nvec,
                                 Vec<T>* __restrict__ y, bool* __restrict__ mask,
                                 float* __restrict__ scale, float* __restrict__ zero) {
  static_assert(kLanes >= 1 && kLanes <= 32 && (kLanes & (kLanes - 1)) == 0,
                "a group must map to a power-of-two sub-warp");
  constexpr int kVec = Vec<T>::kVec;
  const int lane = threadIdx.x % 32;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  // Whole warps iterate together (the shuffles need every lane); groups never straddle warps
  // because kLanes divides 32, and lanes past the end form whole idle groups.
  const int64_t nvec_padded = (nvec + 31) / 32 * 32;
  for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < nvec_padded;
       v += stride) {
    const bool active = v < nvec;
    Vec<T> in;  // (kVec,)
    IndexedStats acc = indexed_init();
    if (active) {
      in = x[v];
#pragma unroll
      for (int j = 0; j < kVec; ++j) add(acc, to_float(in.v[j]), v * kVec + j);
    }
#pragma unroll
    for (int off = kLanes / 2; off > 0; off >>= 1) merge(acc, shfl_xor(acc, off));
    if (!active) continue;
    const m::ScaleZero sz = m::group_scale(F, spec.bits, spec.scale_dtype, acc.s);
    const m::GroupQParams q = m::make_group_qparams(F, spec.bits, sz.scale, sz.zero);
    Vec<T> out;
    uint8_t mk[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float f = to_float(in.v[j]);
      out.v[j] = from_float<T>(m::fake_quant_value<F>(f, q));
      mk[j] = m::in_range<F>(f, q) ? 1 : 0;
    }
    y[v] = out;
    if (mask) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) mask[v * kVec + j] = mk[j] != 0;
    }
    if (lane % kLanes == 0) {
      scale[v / kLanes] = sz.scale;
      zero[v / kLanes] = sz.zero;
    }
  }
}

}  // namespace

void launch_group_stats(const void* x, DType dt, Layout l, float* stats, cudaStream_t stream) {
  if (l.count == 0) return;
  dispatch_dtype(dt, [&](auto t) {
    using T = decltype(t);
    const int64_t group_numel = l.numel / l.count;
    const int threads = group_numel >= kStatsThreads
                            ? kStatsThreads
                            : static_cast<int>((group_numel + 31) / 32 * 32);
    const int block = threads > 0 ? threads : 32;  // (a named value: clang-format misreads a
                                                   // `>` comparison inside a launch's <<<>>>)
    group_stats_kernel<T>
        <<<static_cast<unsigned>(l.count), block, 0, stream>>>(static_cast<const T*>(x), l, stats);
  });
  check_launch("group_stats");
}

void launch_scales_from_stats(const float* stats, SpecArgs spec, int64_t count, float* scale,
                              float* zero, cudaStream_t stream) {
  if (count == 0) return;
  scales_from_stats_kernel<<<static_cast<unsigned>((count + kThreads - 1) / kThreads), kThreads, 0,
                             stream>>>(stats, spec, count, scale, zero);
  check_launch("scales_from_stats");
}

void launch_fake_quantize(const void* x, DType dt, SpecArgs spec, Layout l, const float* scale,
                          const float* zero, void* y, bool* mask, cudaStream_t stream) {
  if (l.numel == 0) return;
  dispatch_dtype_format(dt, spec.format, [&](auto t, auto f) {
    using T = decltype(t);
    fake_quantize_kernel<T, decltype(f)::value><<<blocks_for(l.numel), kThreads, 0, stream>>>(
        static_cast<const T*>(x), spec, l, scale, zero, static_cast<T*>(y), mask);
  });
  check_launch("fake_quantize");
}

void launch_quantize(const void* x, DType dt, SpecArgs spec, Layout l, const float* scale,
                     const float* zero, uint8_t* codes, cudaStream_t stream) {
  if (l.numel == 0) return;
  dispatch_dtype_format(dt, spec.format, [&](auto t, auto f) {
    using T = decltype(t);
    quantize_kernel<T, decltype(f)::value><<<blocks_for(l.numel), kThreads, 0, stream>>>(
        static_cast<const T*>(x), spec, l, scale, zero, codes);
  });
  check_launch("quantize");
}

void launch_dequantize(const uint8_t* codes, DType dt, SpecArgs spec, Layout l, const float* scale,
                       const float* zero, void* y, cudaStream_t stream) {
  if (l.numel == 0) return;
  dispatch_dtype_format(dt, spec.format, [&](auto t, auto f) {
    using T = decltype(t);
    dequantize_kernel<T, decltype(f)::value><<<blocks_for(l.numel), kThreads, 0, stream>>>(
        codes, spec, l, scale, zero, static_cast<T*>(y));
  });
  check_launch("dequantize");
}

bool fused_dynamic_supported(DType dt, Layout l, const void* x, const void* y) {
  const int64_t vec = dt == DType::kFloat32 ? 4 : 8;
  if (l.numel == 0 || l.count == 0 || l.count * l.inner != l.numel || l.inner % vec != 0)
    return false;
  const int64_t lanes = l.inner / vec;
  if (lanes > 32 || (lanes & (lanes - 1)) != 0) return false;
  return reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
}

void launch_fake_quantize_dynamic(const void* x, DType dt, SpecArgs spec, Layout l, void* y,
                                  bool* mask, float* scale, float* zero, cudaStream_t stream) {
  if (l.numel == 0) return;
  dispatch_dtype(dt, [&](auto t) {
    using T = decltype(t);
    constexpr int kVec = Vec<T>::kVec;
    const int64_t nvec = l.numel / kVec;
    const int lanes = static_cast<int>(l.inner / kVec);
    const int64_t blocks64 = ((nvec + 31) / 32 * 32 + kThreads - 1) / kThreads;
    // Up to 16 resident blocks per SM of 132: enough in flight to saturate HBM.
    const int blocks = static_cast<int>(blocks64 < 132 * 16 ? blocks64 : 132 * 16);
    dispatch_format(spec.format, [&](auto f) {
      constexpr Format F = decltype(f)::value;
      auto run = [&](auto lanes_tag) {
        constexpr int kLanes = decltype(lanes_tag)::value;
        fake_quantize_dynamic_kernel<T, F, kLanes><<<blocks, kThreads, 0, stream>>>(
            static_cast<const Vec<T>*>(x), spec, nvec, static_cast<Vec<T>*>(y), mask, scale, zero);
      };
      switch (lanes) {
        case 1:
          run(std::integral_constant<int, 1>{});
          break;
        case 2:
          run(std::integral_constant<int, 2>{});
          break;
        case 4:
          run(std::integral_constant<int, 4>{});
          break;
        case 8:
          run(std::integral_constant<int, 8>{});
          break;
        case 16:
          run(std::integral_constant<int, 16>{});
          break;
        default:
          run(std::integral_constant<int, 32>{});
          break;
      }
    });
  });
  check_launch("fake_quantize_dynamic");
}

}  // namespace qat::ops::cuda
