// softmax_dispatch CUDA kernels: shared definitions.
//
// Compiled by NVRTC through cupy.RawModule (see backends/cupy_backend.py), with no
// include path: nothing here includes a header.  float16 is our own 2-byte type,
// converted with the PTX cvt instructions that cuda_fp16.h itself uses, so the
// source does not depend on where (or whether) the CUDA headers are installed.
//
// Every kernel is templated on the element type T (float, double, sd_half) and
// computes in A = acc_of<T>::type (float for float and float16, double for
// double): no float64 arithmetic in a float or float16 kernel except where a
// result is float64 by contract (logsumexp's last step, the Gumbel noise).
//
// Arrays arrive as a data pointer plus int64 element strides of the canonical
// (outer, n, inner) layout; row r is (o, j) = (r / inner, r % inner) and its
// element k is at o*s0 + k*s1 + j*s2.

typedef long long i64;
#define SD_FULL_MASK 0xffffffffu

struct sd_half {
  unsigned short bits;
};

template <class T> struct acc_of { typedef T type; };
template <> struct acc_of<sd_half> { typedef float type; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(sd_half v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
}

// A value of the working type rounded once to the element type.
template <class T> __device__ __forceinline__ T narrow(typename acc_of<T>::type v) { return v; }
template <> __device__ __forceinline__ sd_half narrow<sd_half>(float v) {
  sd_half h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(v));
  return h;
}

template <class A> __device__ __forceinline__ A inf_of();
template <> __device__ __forceinline__ float inf_of<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double inf_of<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}
template <class A> __device__ __forceinline__ A nan_of();
template <> __device__ __forceinline__ float nan_of<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double nan_of<double>() {
  return __longlong_as_double(0x7ff8000000000000LL);
}

__device__ __forceinline__ float sd_exp(float v) { return expf(v); }
__device__ __forceinline__ double sd_exp(double v) { return exp(v); }
__device__ __forceinline__ float sd_log(float v) { return logf(v); }
__device__ __forceinline__ double sd_log(double v) { return log(v); }
__device__ __forceinline__ float sd_log1p(float v) { return log1pf(v); }
__device__ __forceinline__ double sd_log1p(double v) { return log1p(v); }

// -- 16-byte packs for vectorised loads and stores of contiguous rows -------------

template <class T> struct Pack {
  static constexpr int W = 16 / (int)sizeof(T);
  union {
    uint4 u;
    T e[16 / sizeof(T)];
  };
};

// Elements before the first 16-byte boundary of a row starting at p (host checks
// that p is aligned to its element size when it asks for the vector path).
template <class T> __device__ __forceinline__ i64 head_of(const T* p, i64 n) {
  const i64 head = (i64)(((16u - ((unsigned)(size_t)p & 15u)) & 15u) / sizeof(T));
  return head < n ? head : n;
}

// The block's threads over a row of n elements.  Scalar path: element k on thread
// k mod blockDim.  Vector path (rows contiguous): the head up to the first 16-byte
// boundary, then W-element packs (pack c on thread c mod blockDim: a warp touches
// 512 contiguous bytes per instruction), then the tail.  scalar(k) handles one
// element, vector(k0) the W elements from k0.
template <int W, class Scalar, class Vector>
__device__ __forceinline__ void row_loop(i64 begin, i64 end, i64 head, bool vec, Scalar scalar,
                                         Vector vector) {
  const i64 tid = threadIdx.x, nt = blockDim.x;
  if (!vec) {
    for (i64 k = begin + tid; k < end; k += nt) scalar(k);
    return;
  }
  const i64 body_start = begin + head;
  const i64 packs = (end - body_start) / W;
  for (i64 k = begin + tid; k < body_start; k += nt) scalar(k);
  // One 16-byte pack per thread per iteration: with >= 1024 threads per SM that is
  // >= 16 KiB in flight per SM, about what HBM3 needs (no unrolling: code size and
  // NVRTC time grow fast with it, the half kernels unpack 8 values per pack).
  for (i64 c = tid; c < packs; c += nt) vector(body_start + c * W);
  for (i64 k = body_start + packs * W + tid; k < end; k += nt) scalar(k);
}

// -- reductions --------------------------------------------------------------------

struct OpSum {
  template <class V> __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
};
struct OpMax {  // operands are never NaN (NaN is tracked by a flag)
  template <class V> __device__ __forceinline__ V operator()(V a, V b) const { return b > a ? b : a; }
};
struct OpMin {
  template <class V> __device__ __forceinline__ V operator()(V a, V b) const { return b < a ? b : a; }
};
struct OpOr {
  __device__ __forceinline__ int operator()(int a, int b) const { return a | b; }
};

// Butterfly over aligned groups of G lanes: every lane of a group ends with the same
// bits (each step combines the same two values, in either order; + and max commute).
// Every lane of the warp must call it.
template <int G, class V, class Op> __device__ __forceinline__ V group_reduce(V v, Op op) {
#pragma unroll
  for (int off = G / 2; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(SD_FULL_MASK, v, off));
  return v;
}

// Whole-block reduction; every thread gets the same bits (the warp partials are
// combined in warp order by every thread).  buf: 32 shared slots.  Every thread of
// the block must call it (it has barriers); consecutive calls may share buf.
template <class V, class Op> __device__ __forceinline__ V block_reduce(V v, V* buf, Op op) {
  v = group_reduce<32>(v, op);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();  // the previous reduction's readers are done with buf
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = buf[0];
  for (int w = 1; w < warps; ++w) v = op(v, buf[w]);
  return v;
}

// -- temperature ---------------------------------------------------------------------

// t = ((x - m) * pre) / tq equals (x - m) / T in the working precision.  float
// cannot hold every float64 temperature, so the host (or prep_temperature) scales
// both by a power of two that brings tq near 1 (as numba_cpu's _divisor).
// kind: 0 finite and positive, 1 T = 0, 2 T = inf.
template <class A> struct Temp {
  A pre, tq;
  int kind;
  bool unit;
};

template <class A>
__device__ __forceinline__ Temp<A> temp_of(const A* tp, i64 tp0, i64 tp1, A pre, A tq, int kind,
                                           i64 o, i64 j) {
  Temp<A> t;
  if (tp != nullptr) {
    const A* p = tp + o * tp0 + j * tp1;
    t.pre = p[0];
    t.tq = p[1];
    t.kind = (int)p[2];
  } else {
    t.pre = pre;
    t.tq = tq;
    t.kind = kind;
  }
  t.unit = t.pre == A(1) && t.tq == A(1);
  return t;
}

// (x - m) / T.  Where x - m overflows to -inf although x is finite (logits near the
// dtype's limit, T > 1), the difference is taken in halves, (x/2 - m/2) / (T/2),
// which cannot overflow; with T <= 1 that still gives -inf, the right limit.
template <class A> __device__ __forceinline__ A shifted(A x, A m, const Temp<A>& t) {
  const A d = x - m;
  if (t.unit) return d;
  if (d == -inf_of<A>() && x != -inf_of<A>())
    return ((x * A(0.5) - m * A(0.5)) * t.pre) / (t.tq * A(0.5));
  return (d * t.pre) / t.tq;
}

// Divide by T (gradients): v / T in the working precision.
template <class A> __device__ __forceinline__ A over_t(A v, const Temp<A>& t) {
  return t.unit ? v : (v * t.pre) / t.tq;
}

// The (pre, tq, kind) triples of a float64 per-row temperature array, for kernels in
// precision A.  The only float64 arithmetic of a float kernel family lives here.
template <class A>
__global__ void __launch_bounds__(256) prep_temperature(const double* temperature, i64 count, A* out) {
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (i64)gridDim.x * blockDim.x) {
    const double t = temperature[i];
    double pre = 1.0, tq = t, kind = 0.0;
    if (t == 0.0) {
      kind = 1.0;
      tq = 1.0;
    } else if (t == __longlong_as_double(0x7ff0000000000000LL)) {
      kind = 2.0;
      tq = 1.0;
    } else if (sizeof(A) == 4) {
      int e;
      frexp(t, &e);
      if (e < -100 || e > 100) {
        const int shift = min(max(-e, -120), 120);
        pre = ldexp(1.0, shift);
        tq = fmax(ldexp(t, shift), ldexp(1.0, -126));
      }
    }
    out[3 * i] = (A)pre;
    out[3 * i + 1] = (A)tq;
    out[3 * i + 2] = (A)kind;
  }
}

// -- row statistics --------------------------------------------------------------------

// Online statistics of a row (Milakov & Gimelshein 2018), with the maxima counted
// apart so that log(sum) can be taken as log1p(s + (c - 1)), accurate when the
// maximum dominates (Blanchard, Higham & Higham 2021):
//   m      max ignoring NaN          s      sum of exp(t) over the entries below m
//   c      entries equal to m        nan    a NaN was seen
//   npos   +inf entries              nlive  entries > -inf (T = inf limit)
template <class A> struct Stats {
  A m, s;
  int c, nan, npos, nlive;
};

template <class A> __device__ __forceinline__ Stats<A> stats_init() {
  Stats<A> st;
  st.m = -inf_of<A>();
  st.s = A(0);
  st.c = 0;
  st.nan = 0;
  st.npos = 0;
  st.nlive = 0;
  return st;
}

template <class A> __device__ __forceinline__ void stats_add(Stats<A>& st, A x, const Temp<A>& t) {
  if (x != x) {
    st.nan = 1;
    return;
  }
  st.npos += x == inf_of<A>();
  st.nlive += x > -inf_of<A>();
  if (x > st.m) {  // a new maximum: what was counted as maxima moves below it
    st.s = (st.s + A(st.c)) * sd_exp(shifted(st.m, x, t));
    st.c = 1;
    st.m = x;
  } else if (x == st.m) {
    st.c += 1;
  } else {
    st.s += sd_exp(shifted(x, st.m, t));
  }
}

// Symmetric in a and b (the same bits either way), as the butterfly needs.
template <class A>
__device__ __forceinline__ Stats<A> stats_merge(const Stats<A>& a, const Stats<A>& b, const Temp<A>& t) {
  Stats<A> r;
  r.nan = a.nan | b.nan;
  r.npos = a.npos + b.npos;
  r.nlive = a.nlive + b.nlive;
  if (a.m == b.m) {
    r.m = a.m;
    r.c = a.c + b.c;
    r.s = a.s + b.s;
  } else if (a.m > b.m) {
    r.m = a.m;
    r.c = a.c;
    r.s = a.s + (b.s + A(b.c)) * sd_exp(shifted(b.m, a.m, t));
  } else {
    r.m = b.m;
    r.c = b.c;
    r.s = b.s + (a.s + A(a.c)) * sd_exp(shifted(a.m, b.m, t));
  }
  return r;
}

template <class A> __device__ __forceinline__ Stats<A> stats_shfl(const Stats<A>& v, int off) {
  Stats<A> o;
  o.m = __shfl_xor_sync(SD_FULL_MASK, v.m, off);
  o.s = __shfl_xor_sync(SD_FULL_MASK, v.s, off);
  o.c = __shfl_xor_sync(SD_FULL_MASK, v.c, off);
  o.nan = __shfl_xor_sync(SD_FULL_MASK, v.nan, off);
  o.npos = __shfl_xor_sync(SD_FULL_MASK, v.npos, off);
  o.nlive = __shfl_xor_sync(SD_FULL_MASK, v.nlive, off);
  return o;
}

template <class A>
__device__ __forceinline__ Stats<A> block_merge(Stats<A> v, Stats<A>* buf, const Temp<A>& t) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = stats_merge(v, stats_shfl(v, off), t);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = buf[0];
  for (int w = 1; w < warps; ++w) v = stats_merge(v, buf[w], t);
  return v;
}

// -- the softmax rules of a row --------------------------------------------------------

// kind 0: normal (c = 1/sum, or log(sum) for log output); 1: NaN row; 2: shares
// (c = 1/k or -log k where sel picks: 0 the +inf entries, 1 the maxima (T = 0),
// 2 the entries > -inf (T = inf)); 3: all -inf or fully masked (zeros / -inf).
template <class A> struct Rule {
  int kind, sel;
  A m, c;
  Temp<A> t;
};

template <class A, bool LOG> __device__ __forceinline__ Rule<A> softmax_rule(const Stats<A>& st, const Temp<A>& t) {
  Rule<A> r;
  r.t = t;
  r.m = st.m;
  r.kind = 0;
  r.sel = 0;
  r.c = A(0);
  if (st.nan) {
    r.kind = 1;
    return r;
  }
  if (st.m == -inf_of<A>()) {
    r.kind = 3;
    return r;
  }
  int k = 0;
  if (st.m == inf_of<A>()) {
    r.sel = 0;
    k = st.npos;
  } else if (t.kind == 1) {
    r.sel = 1;
    k = st.c;
  } else if (t.kind == 2) {
    r.sel = 2;
    k = st.nlive;
  }
  if (k > 0) {
    r.kind = 2;
    r.c = LOG ? -sd_log(A(k)) : A(1) / A(k);
    return r;
  }
  r.c = LOG ? sd_log1p(st.s + A(st.c - 1)) : A(1) / (st.s + A(st.c));
  return r;
}

// Is the row special (anything but kind 0)?  Known from the max pass alone.
template <class A> __device__ __forceinline__ bool special_row(int nan, A m, const Temp<A>& t) {
  return nan || !(m > -inf_of<A>() && m < inf_of<A>()) || t.kind != 0;
}

template <class A, bool LOG> __device__ __forceinline__ A softmax_value(const Rule<A>& r, A x) {
  const A zero = LOG ? -inf_of<A>() : A(0);
  if (r.kind == 0) {
    const A t = shifted(x, r.m, r.t);
    return LOG ? t - r.c : sd_exp(t) * r.c;
  }
  if (r.kind == 1) return nan_of<A>();
  if (r.kind == 2) {
    const bool in = r.sel == 0 ? x == inf_of<A>() : (r.sel == 1 ? x == r.m : x > -inf_of<A>());
    return in ? r.c : zero;
  }
  return zero;
}
