// softmax / log_softmax kernels.  Launch configurations and when each is chosen:
// backends/cupy_backend.py (_softmax_plan) and docs/cuda-kernels-cupy.md.

#define SD_A typename acc_of<T>::type

// Short rows (n <= G * V <= 1024), uniform finite T, no mask.  A group of G lanes
// (G = 32: a warp; G = 4: eight rows per warp) per row; the row stays in registers
// (V values per lane), so x is read once; reductions are shuffles.  Two exact passes
// (max, then sum of exp(x - max)).
template <class T, bool LOG, int G, int V>
__global__ void __launch_bounds__(256) softmax_small(const T* x, i64 xs0, i64 xs1, i64 xs2, T* y, i64 ys0, i64 ys1, i64 ys2,
                              i64 rows, int n, i64 inner, SD_A pre, SD_A tq) {
  typedef SD_A A;
  const A inf = inf_of<A>();
  Temp<A> t;
  t.pre = pre;
  t.tq = tq;
  t.kind = 0;
  t.unit = pre == A(1) && tq == A(1);
  const i64 gid = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  const i64 row = gid / G;
  const int lane = threadIdx.x & (G - 1);
  const bool active = row < rows;
  const i64 r = active ? row : 0;  // idle lanes shadow row 0 (they shuffle, never store)
  const i64 o = r / inner, j = r - o * inner;
  const T* xr = x + o * xs0 + j * xs2;
  A v[V];
  A m = -inf;
  int nan = 0, npos = 0;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const int k = lane + i * G;
    const A a = k < n ? to_acc(xr[(i64)k * xs1]) : -inf;
    v[i] = a;
    nan |= a != a;
    npos += a == inf;
    m = a > m ? a : m;
  }
  m = group_reduce<G>(m, OpMax());
  nan = group_reduce<G>(nan, OpOr());
  npos = group_reduce<G>(npos, OpSum());
  const bool special = special_row(nan, m, t);
  A s = A(0);
  int c = 0;
  if (!special) {  // v becomes t (log) or exp(t); special rows keep x for their rules
#pragma unroll
    for (int i = 0; i < V; ++i) {
      if (lane + i * G < n) {
        const A tt = shifted(v[i], m, t);
        if (LOG) {
          if (tt == A(0)) c += 1;
          else s += sd_exp(tt);
          v[i] = tt;
        } else {
          const A e = sd_exp(tt);
          s += e;
          v[i] = e;
        }
      }
    }
  }
  s = group_reduce<G>(s, OpSum());
  c = group_reduce<G>(c, OpSum());
  Stats<A> st = stats_init<A>();
  st.m = m;
  st.s = s;
  st.c = c;
  st.nan = nan;
  st.npos = npos;
  const Rule<A> rule = softmax_rule<A, LOG>(st, t);
  if (!active) return;
  T* yr = y + o * ys0 + j * ys2;
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const int k = lane + i * G;
    if (k < n) {
      const A out = special ? softmax_value<A, LOG>(rule, v[i]) : (LOG ? v[i] - rule.c : v[i] * rule.c);
      yr[(i64)k * ys1] = narrow<T>(out);
    }
  }
}

// Rows that fit in shared memory (n * sizeof(A) bytes, dynamic), uniform finite T,
// no mask.  A block per row: pass 1 reads x once (16-byte loads when contiguous)
// into shared memory and finds the max; pass 2 turns the cached row into t or
// exp(t) and sums; pass 3 writes.  Global traffic: one read, one write.
template <class T, bool LOG>
__global__ void __launch_bounds__(1024) softmax_cached(const T* x, i64 xs0, i64 xs1, i64 xs2, T* y, i64 ys0, i64 ys1, i64 ys2,
                               i64 rows, int n, i64 inner, SD_A pre, SD_A tq, int xvec, int yvec) {
  typedef SD_A A;
  constexpr int W = Pack<T>::W;
  extern __shared__ __align__(16) unsigned char sd_dynamic[];
  A* row = reinterpret_cast<A*>(sd_dynamic);
  __shared__ A red_a[32];
  __shared__ int red_i[32];
  const A inf = inf_of<A>();
  Temp<A> t;
  t.pre = pre;
  t.tq = tq;
  t.kind = 0;
  t.unit = pre == A(1) && tq == A(1);
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 o = r / inner, j = r - o * inner;
    const T* xr = x + o * xs0 + j * xs2;
    T* yr = y + o * ys0 + j * ys2;
    A m = -inf;
    int nan = 0, npos = 0;
    auto take = [&](i64 k, A a) {
      row[k] = a;
      nan |= a != a;
      npos += a == inf;
      m = a > m ? a : m;
    };
    row_loop<W>(0, n, head_of(xr, n), xvec != 0,
                [&](i64 k) { take(k, to_acc(xr[k * xs1])); },
                [&](i64 k0) {
                  Pack<T> p;
                  p.u = *reinterpret_cast<const uint4*>(xr + k0);
#pragma unroll
                  for (int w = 0; w < W; ++w) take(k0 + w, to_acc(p.e[w]));
                });
    m = block_reduce(m, red_a, OpMax());
    nan = block_reduce(nan, red_i, OpOr());
    npos = block_reduce(npos, red_i, OpSum());
    const bool special = special_row(nan, m, t);
    A s = A(0);
    int c = 0;
    if (!special) {
      for (int k = threadIdx.x; k < n; k += blockDim.x) {
        const A tt = shifted(row[k], m, t);
        if (LOG) {
          if (tt == A(0)) c += 1;
          else s += sd_exp(tt);
          row[k] = tt;
        } else {
          const A e = sd_exp(tt);
          s += e;
          row[k] = e;
        }
      }
    }
    s = block_reduce(s, red_a, OpSum());
    c = block_reduce(c, red_i, OpSum());
    Stats<A> st = stats_init<A>();
    st.m = m;
    st.s = s;
    st.c = c;
    st.nan = nan;
    st.npos = npos;
    const Rule<A> rule = softmax_rule<A, LOG>(st, t);
    auto value = [&](i64 k) -> A {
      return special ? softmax_value<A, LOG>(rule, row[k]) : (LOG ? row[k] - rule.c : row[k] * rule.c);
    };
    row_loop<W>(0, n, head_of(yr, n), yvec != 0,
                [&](i64 k) { yr[k * ys1] = narrow<T>(value(k)); },
                [&](i64 k0) {
                  Pack<T> p;
#pragma unroll
                  for (int w = 0; w < W; ++w) p.e[w] = narrow<T>(value(k0 + w));
                  *reinterpret_cast<uint4*>(yr + k0) = p.u;
                });
    __syncthreads();  // the next row overwrites the cache
  }
}

// Reads x[begin, end) of a row and folds it into st (masked entries as -inf).
template <class T>
__device__ __forceinline__ void stats_pass(Stats<SD_A>& st, const T* xr, i64 xs1, const unsigned char* mr,
                                           i64 ms1, i64 begin, i64 end, bool vec, const Temp<SD_A>& t) {
  typedef SD_A A;
  constexpr int W = Pack<T>::W;
  if (mr != nullptr) {
    for (i64 k = begin + threadIdx.x; k < end; k += blockDim.x)
      stats_add(st, mr[k * ms1] ? to_acc(xr[k * xs1]) : -inf_of<A>(), t);
    return;
  }
  row_loop<W>(begin, end, head_of(xr + begin, end - begin), vec,
              [&](i64 k) { stats_add(st, to_acc(xr[k * xs1]), t); },
              [&](i64 k0) {
                Pack<T> p;
                p.u = *reinterpret_cast<const uint4*>(xr + k0);
#pragma unroll
                for (int w = 0; w < W; ++w) stats_add(st, to_acc(p.e[w]), t);
              });
}

// Writes y[k] = rule(x[k]) over [begin, end) (masked entries 0 / -inf).  The vector
// path needs x and y equally misaligned (always so in place).
template <class T, bool LOG>
__device__ __forceinline__ void apply_pass(const Rule<SD_A>& rule, const T* xr, i64 xs1, T* yr, i64 ys1,
                                           const unsigned char* mr, i64 ms1, i64 begin, i64 end, bool vec) {
  typedef SD_A A;
  constexpr int W = Pack<T>::W;
  if (mr != nullptr) {
    for (i64 k = begin + threadIdx.x; k < end; k += blockDim.x)
      yr[k * ys1] = narrow<T>(mr[k * ms1] ? softmax_value<A, LOG>(rule, to_acc(xr[k * xs1]))
                                          : (LOG ? -inf_of<A>() : A(0)));
    return;
  }
  vec = vec && (((size_t)(xr + begin) & 15u) == ((size_t)(yr + begin) & 15u));
  row_loop<W>(begin, end, head_of(xr + begin, end - begin), vec,
              [&](i64 k) { yr[k * ys1] = narrow<T>(softmax_value<A, LOG>(rule, to_acc(xr[k * xs1]))); },
              [&](i64 k0) {
                Pack<T> p;
                p.u = *reinterpret_cast<const uint4*>(xr + k0);
#pragma unroll
                for (int w = 0; w < W; ++w) p.e[w] = narrow<T>(softmax_value<A, LOG>(rule, to_acc(p.e[w])));
                *reinterpret_cast<uint4*>(yr + k0) = p.u;
              });
}

// The general kernel: a block per row, any strides, a where= mask (or none), a
// per-row temperature (or one), the T = 0 / inf limits.  Pass 1 computes the
// online statistics (one read), pass 2 re-reads x (from L2 for rows that fit
// there) and writes.  vec: rows of x and y contiguous (used only without a mask).
template <class T, bool LOG>
__global__ void __launch_bounds__(1024) softmax_rows(const T* x, i64 xs0, i64 xs1, i64 xs2, T* y, i64 ys0, i64 ys1, i64 ys2,
                             const unsigned char* mask, i64 ms0, i64 ms1, i64 ms2, i64 rows, i64 n, i64 inner,
                             const SD_A* tp, i64 tp0, i64 tp1, SD_A pre, SD_A tq, int kind, int vec) {
  typedef SD_A A;
  __shared__ Stats<A> red[32];
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 o = r / inner, j = r - o * inner;
    const T* xr = x + o * xs0 + j * xs2;
    T* yr = y + o * ys0 + j * ys2;
    const unsigned char* mr = mask == nullptr ? nullptr : mask + o * ms0 + j * ms2;
    const Temp<A> t = temp_of(tp, tp0, tp1, pre, tq, kind, o, j);
    Stats<A> st = stats_init<A>();
    stats_pass(st, xr, xs1, mr, ms1, 0, n, vec != 0, t);
    st = block_merge(st, red, t);
    const Rule<A> rule = softmax_rule<A, LOG>(st, t);
    apply_pass<T, LOG>(rule, xr, xs1, yr, ys1, mr, ms1, 0, n, vec != 0);
  }
}

// Few very long rows (fewer rows than about 2 blocks per SM): each row is split into
// gridDim.x chunks.  softmax_split_stats writes each chunk's statistics to part
// (6 values per chunk); softmax_split_apply merges a row's partials (in chunk
// order: every block of the row gets the same bits) and normalises its chunk.
// Uniform finite T, no mask.  grid = (chunks, rows).
template <class T>
__global__ void __launch_bounds__(256) softmax_split_stats(const T* x, i64 xs0, i64 xs1, i64 xs2, i64 n, i64 inner, i64 chunk,
                                    SD_A pre, SD_A tq, int vec, SD_A* part) {
  typedef SD_A A;
  __shared__ Stats<A> red[32];
  const i64 r = blockIdx.y, o = r / inner, j = r - o * inner;
  const Temp<A> t = temp_of<A>(nullptr, 0, 0, pre, tq, 0, o, j);
  const T* xr = x + o * xs0 + j * xs2;
  const i64 begin = (i64)blockIdx.x * chunk, end = min(begin + chunk, n);
  Stats<A> st = stats_init<A>();
  stats_pass(st, xr, xs1, nullptr, 0, begin, end, vec != 0, t);
  st = block_merge(st, red, t);
  if (threadIdx.x == 0) {
    A* p = part + 6 * (r * gridDim.x + blockIdx.x);
    p[0] = st.m;
    p[1] = st.s;
    p[2] = A(st.c);
    p[3] = A(st.nan);
    p[4] = A(st.npos);
    p[5] = A(st.nlive);
  }
}

template <class T, bool LOG>
__global__ void __launch_bounds__(256) softmax_split_apply(const T* x, i64 xs0, i64 xs1, i64 xs2, T* y, i64 ys0, i64 ys1, i64 ys2,
                                    i64 n, i64 inner, i64 chunk, SD_A pre, SD_A tq, int vec, const SD_A* part) {
  typedef SD_A A;
  __shared__ Stats<A> red[32];
  const i64 r = blockIdx.y, o = r / inner, j = r - o * inner;
  const Temp<A> t = temp_of<A>(nullptr, 0, 0, pre, tq, 0, o, j);
  Stats<A> st = stats_init<A>();
  if (threadIdx.x < gridDim.x) {  // host: chunks <= blockDim.x
    const A* p = part + 6 * (r * gridDim.x + threadIdx.x);
    st.m = p[0];
    st.s = p[1];
    st.c = (int)p[2];
    st.nan = (int)p[3];
    st.npos = (int)p[4];
    st.nlive = (int)p[5];
  }
  st = block_merge(st, red, t);
  const Rule<A> rule = softmax_rule<A, LOG>(st, t);
  const i64 begin = (i64)blockIdx.x * chunk, end = min(begin + chunk, n);
  apply_pass<T, LOG>(rule, x + o * xs0 + j * xs2, xs1, y + o * ys0 + j * ys2, ys1, nullptr, 0, begin, end,
                     vec != 0);
}

// A non-last axis (inner > 1), without a transpose: a block of 32 x CY threads
// takes 32 adjacent columns (threadIdx.x along inner: coalesced when s2 == 1) and
// splits the n positions over threadIdx.y.  Statistics merge through shared memory
// (thread y = 0 merges the CY partials of its column in order), then the block
// writes.  Any mask / per-row temperature / limits.
#define SD_COLUMNS_CY 16
template <class T, bool LOG>
__global__ void __launch_bounds__(512) softmax_columns(const T* x, i64 xs0, i64 xs1, i64 xs2, T* y, i64 ys0, i64 ys1, i64 ys2,
                                const unsigned char* mask, i64 ms0, i64 ms1, i64 ms2, i64 outer, i64 n,
                                i64 inner, const SD_A* tp, i64 tp0, i64 tp1, SD_A pre, SD_A tq, int kind) {
  typedef SD_A A;
  __shared__ Stats<A> part[SD_COLUMNS_CY][32];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const i64 jblocks = (inner + 31) / 32;
  for (i64 b = blockIdx.x; b < outer * jblocks; b += gridDim.x) {
    const i64 o = b / jblocks;
    const i64 j = (b - o * jblocks) * 32 + tx;
    const bool live = j < inner;
    const i64 jj = live ? j : 0;
    const Temp<A> t = temp_of(tp, tp0, tp1, pre, tq, kind, o, jj);
    const T* xc = x + o * xs0 + jj * xs2;
    T* yc = y + o * ys0 + jj * ys2;
    const unsigned char* mc = mask == nullptr ? nullptr : mask + o * ms0 + jj * ms2;
    Stats<A> st = stats_init<A>();
    if (live) {
      for (i64 k = ty; k < n; k += SD_COLUMNS_CY)
        stats_add(st, (mc == nullptr || mc[k * ms1]) ? to_acc(xc[k * xs1]) : -inf_of<A>(), t);
    }
    part[ty][tx] = st;
    __syncthreads();
    if (ty == 0) {
      for (int i = 1; i < SD_COLUMNS_CY; ++i) st = stats_merge(st, part[i][tx], t);
      part[0][tx] = st;
    }
    __syncthreads();
    st = part[0][tx];
    const Rule<A> rule = softmax_rule<A, LOG>(st, t);
    if (live) {
      for (i64 k = ty; k < n; k += SD_COLUMNS_CY) {
        const A v = (mc == nullptr || mc[k * ms1]) ? softmax_value<A, LOG>(rule, to_acc(xc[k * xs1]))
                                                   : (LOG ? -inf_of<A>() : A(0));
        yc[k * ys1] = narrow<T>(v);
      }
    }
    __syncthreads();  // part is reused by the next column block
  }
}
