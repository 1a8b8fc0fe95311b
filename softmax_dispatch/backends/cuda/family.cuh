// The rest of the family: one block-per-row kernel each (any strides, mask,
// per-row temperature).  Rows are walked by a grid-stride loop over blocks, so
// control flow is uniform within a block (every thread reaches every barrier).

// logsumexp: T log sum exp(x / T) per row into the float64 out (outer, inner).
// One read (online statistics).  The last step is float64 (the result's type):
// m + T * log1p(s + c - 1), T read as float64 (traw, or tscalar when traw is null).
template <class T>
__global__ void __launch_bounds__(1024) logsumexp_rows(const T* x, i64 xs0, i64 xs1, i64 xs2, const unsigned char* mask, i64 ms0,
                               i64 ms1, i64 ms2, double* out, i64 os0, i64 os1, i64 rows, i64 n, i64 inner,
                               const SD_A* tp, i64 tp0, i64 tp1, SD_A pre, SD_A tq, int kind,
                               const double* traw, i64 tr0, i64 tr1, double tscalar, int vec) {
  typedef SD_A A;
  __shared__ Stats<A> red[32];
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 o = r / inner, j = r - o * inner;
    const Temp<A> t = temp_of(tp, tp0, tp1, pre, tq, kind, o, j);
    Stats<A> st = stats_init<A>();
    stats_pass(st, x + o * xs0 + j * xs2, xs1, mask == nullptr ? nullptr : mask + o * ms0 + j * ms2, ms1, 0, n,
               vec != 0, t);
    st = block_merge(st, red, t);
    if (threadIdx.x == 0) {
      double result;
      if (st.nan) result = (double)nan_of<A>();
      else if (!(st.m > -inf_of<A>() && st.m < inf_of<A>())) result = (double)st.m;
      else if (t.kind == 1) result = (double)st.m;
      else if (t.kind == 2) result = st.nlive > 1 ? (double)inf_of<A>() : (double)st.m;
      else {
        const double temperature = traw == nullptr ? tscalar : traw[o * tr0 + j * tr1];
        result = (double)st.m + temperature * (double)sd_log1p(st.s + A(st.c - 1));
      }
      out[o * os0 + j * os1] = result;
    }
  }
}

// softmax / log_softmax backward.  softmax: y * (g - sum(g y)) / T over entries with
// y != 0 (and not masked), 0 elsewhere.  log_softmax: (g - exp(y) sum(g)) / T, the
// sum over the entries that take part; zeros for a row with no y > -inf.
// Pass 1 reads g and y (cached in shared memory when CACHE), pass 2 writes.
template <class T, bool LOG, bool CACHE>
__global__ void __launch_bounds__(1024) softmax_backward(const T* g, i64 gs0, i64 gs1, i64 gs2, const T* y, i64 ys0, i64 ys1, i64 ys2,
                                 T* out, i64 os0, i64 os1, i64 os2, const unsigned char* mask, i64 ms0, i64 ms1,
                                 i64 ms2, i64 rows, i64 n, i64 inner, const SD_A* tp, i64 tp0, i64 tp1, SD_A pre,
                                 SD_A tq, int vec) {
  typedef SD_A A;
  constexpr int W = Pack<T>::W;
  extern __shared__ __align__(16) unsigned char sd_dynamic[];
  A* cg = reinterpret_cast<A*>(sd_dynamic);  // CACHE: g then y, n values each
  A* cy = cg + (CACHE ? n : 0);
  __shared__ A red_a[32];
  __shared__ int red_i[32];
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 o = r / inner, j = r - o * inner;
    const T* gr = g + o * gs0 + j * gs2;
    const T* yr = y + o * ys0 + j * ys2;
    T* outr = out + o * os0 + j * os2;
    const unsigned char* mr = mask == nullptr ? nullptr : mask + o * ms0 + j * ms2;
    const Temp<A> t = temp_of(tp, tp0, tp1, pre, tq, 0, o, j);
    const bool v = vec != 0 && mr == nullptr && ((size_t)gr & 15u) == ((size_t)yr & 15u);
    A s = A(0);
    int live = 0;
    auto take = [&](i64 k, A gv, A yv, bool in) {
      if (CACHE) {
        cg[k] = gv;
        cy[k] = yv;
      }
      if (LOG) {
        s += in ? gv : A(0);
        live += in && yv > -inf_of<A>();
      } else {
        s += (in && yv != A(0)) ? gv * yv : A(0);
      }
    };
    row_loop<W>(0, n, head_of(gr, n), v,
                [&](i64 k) { take(k, to_acc(gr[k * gs1]), to_acc(yr[k * ys1]), mr == nullptr || mr[k * ms1]); },
                [&](i64 k0) {
                  Pack<T> pg, py;
                  pg.u = *reinterpret_cast<const uint4*>(gr + k0);
                  py.u = *reinterpret_cast<const uint4*>(yr + k0);
#pragma unroll
                  for (int w = 0; w < W; ++w) take(k0 + w, to_acc(pg.e[w]), to_acc(py.e[w]), true);
                });
    s = block_reduce(s, red_a, OpSum());
    if (LOG) live = block_reduce(live, red_i, OpSum());
    auto grad = [&](A gv, A yv, bool in) -> A {
      if (!in) return A(0);
      if (LOG) {
        if (live == 0) return A(0);
        const A p = sd_exp(yv);
        return over_t(gv - (p != A(0) ? p * s : A(0)), t);
      }
      return yv != A(0) ? over_t(yv * (gv - s), t) : A(0);
    };
    auto at = [&](i64 k) -> A {
      const bool in = mr == nullptr || mr[k * ms1];
      return CACHE ? grad(cg[k], cy[k], in) : grad(to_acc(gr[k * gs1]), to_acc(yr[k * ys1]), in);
    };
    const bool vo = v && ((size_t)outr & 15u) == ((size_t)gr & 15u);
    row_loop<W>(0, n, head_of(outr, n), vo, [&](i64 k) { outr[k * os1] = narrow<T>(at(k)); },
                [&](i64 k0) {
                  Pack<T> po;
                  if (CACHE) {
#pragma unroll
                    for (int w = 0; w < W; ++w) po.e[w] = narrow<T>(grad(cg[k0 + w], cy[k0 + w], true));
                  } else {
                    Pack<T> pg, py;
                    pg.u = *reinterpret_cast<const uint4*>(gr + k0);
                    py.u = *reinterpret_cast<const uint4*>(yr + k0);
#pragma unroll
                    for (int w = 0; w < W; ++w) po.e[w] = narrow<T>(grad(to_acc(pg.e[w]), to_acc(py.e[w]), true));
                  }
                  *reinterpret_cast<uint4*>(outr + k0) = po.u;
                });
    __syncthreads();  // the cache is reused by the next row
  }
}

// sparsemax (Martins & Astudillo 2016) without sorting: z = (x - max) / T and the
// threshold tau solving sum max(z - tau, 0) = 1 by Michelot's iteration: with S the
// entries above thr (initially -1: tau >= max z - 1), tau = (sum_S z - 1) / |S| is a
// lower bound of the true threshold, thr rises to it and S shrinks; when |S| stops
// changing tau is exact.  Each iteration is one pass over the row (L1/L2 after the
// first); a few in practice, at most n.  Special rows follow softmax's rules.
template <class T>
__global__ void __launch_bounds__(1024) sparsemax_rows(const T* x, i64 xs0, i64 xs1, i64 xs2, T* y, i64 ys0, i64 ys1, i64 ys2,
                               const unsigned char* mask, i64 ms0, i64 ms1, i64 ms2, i64 rows, i64 n, i64 inner,
                               const SD_A* tp, i64 tp0, i64 tp1, SD_A pre, SD_A tq, int kind) {
  typedef SD_A A;
  __shared__ Stats<A> red[32];
  __shared__ A red_a[32];
  __shared__ i64 red_l[32];
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 o = r / inner, j = r - o * inner;
    const T* xr = x + o * xs0 + j * xs2;
    T* yr = y + o * ys0 + j * ys2;
    const unsigned char* mr = mask == nullptr ? nullptr : mask + o * ms0 + j * ms2;
    const Temp<A> t = temp_of(tp, tp0, tp1, pre, tq, kind, o, j);
    auto xk = [&](i64 k) -> A { return (mr == nullptr || mr[k * ms1]) ? to_acc(xr[k * xs1]) : -inf_of<A>(); };
    Stats<A> st = stats_init<A>();
    stats_pass(st, xr, xs1, mr, ms1, 0, n, false, t);
    st = block_merge(st, red, t);
    const Rule<A> rule = softmax_rule<A, false>(st, t);
    if (rule.kind != 0) {
      for (i64 k = threadIdx.x; k < n; k += blockDim.x) yr[k * ys1] = narrow<T>(mr == nullptr || mr[k * ms1]
                                                                                  ? softmax_value<A, false>(rule, xk(k))
                                                                                  : A(0));
      continue;  // uniform: rule is the same in every thread
    }
    A thr = A(-1), tau = A(0);
    i64 previous = -1;
    for (;;) {
      A sum = A(0);
      i64 count = 0;
      for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
        const A z = shifted(xk(k), st.m, t);
        if (z > thr) {
          sum += z;
          count += 1;
        }
      }
      sum = block_reduce(sum, red_a, OpSum());
      count = block_reduce(count, red_l, OpSum());
      tau = (sum - A(1)) / A(count);
      if (count == previous) break;
      previous = count;
      thr = tau > thr ? tau : thr;
    }
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
      const A p = shifted(xk(k), st.m, t) - tau;
      yr[k * ys1] = narrow<T>((mr == nullptr || mr[k * ms1]) && p > A(0) ? p : A(0));
    }
  }
}

// sparsemax backward: on the support (y > 0, not masked) (g - mean of g there) / T,
// 0 elsewhere.
template <class T>
__global__ void __launch_bounds__(1024) sparsemax_backward(const T* g, i64 gs0, i64 gs1, i64 gs2, const T* y, i64 ys0, i64 ys1, i64 ys2,
                                   T* out, i64 os0, i64 os1, i64 os2, const unsigned char* mask, i64 ms0, i64 ms1,
                                   i64 ms2, i64 rows, i64 n, i64 inner, const SD_A* tp, i64 tp0, i64 tp1, SD_A pre,
                                   SD_A tq) {
  typedef SD_A A;
  __shared__ A red_a[32];
  __shared__ i64 red_l[32];
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 o = r / inner, j = r - o * inner;
    const T* gr = g + o * gs0 + j * gs2;
    const T* yr = y + o * ys0 + j * ys2;
    T* outr = out + o * os0 + j * os2;
    const unsigned char* mr = mask == nullptr ? nullptr : mask + o * ms0 + j * ms2;
    const Temp<A> t = temp_of(tp, tp0, tp1, pre, tq, 0, o, j);
    auto inside = [&](i64 k) -> bool { return to_acc(yr[k * ys1]) > A(0) && (mr == nullptr || mr[k * ms1]); };
    A sum = A(0);
    i64 count = 0;
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
      if (inside(k)) {
        sum += to_acc(gr[k * gs1]);
        count += 1;
      }
    }
    sum = block_reduce(sum, red_a, OpSum());
    count = block_reduce(count, red_l, OpSum());
    const A mean = sum / A(count > 0 ? count : 1);
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
      const bool in = inside(k);  // read before the write: out may be y
      outr[k * os1] = narrow<T>(in ? over_t(to_acc(gr[k * gs1]) - mean, t) : A(0));
    }
  }
}

// hardmax: first (ONNX: the first maximum gets 1) or ties share the mass.  A NaN
// row is NaN, an all -inf (or fully masked) row zeros, masked entries 0.
template <class T>
__global__ void __launch_bounds__(1024) hardmax_rows(const T* x, i64 xs0, i64 xs1, i64 xs2, T* y, i64 ys0, i64 ys1, i64 ys2,
                             const unsigned char* mask, i64 ms0, i64 ms1, i64 ms2, i64 rows, i64 n, i64 inner,
                             int first) {
  typedef SD_A A;
  __shared__ A red_a[32];
  __shared__ int red_i[32];
  __shared__ i64 red_l[32];
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 o = r / inner, j = r - o * inner;
    const T* xr = x + o * xs0 + j * xs2;
    T* yr = y + o * ys0 + j * ys2;
    const unsigned char* mr = mask == nullptr ? nullptr : mask + o * ms0 + j * ms2;
    auto taken = [&](i64 k) -> bool { return mr == nullptr || mr[k * ms1]; };
    auto xk = [&](i64 k) -> A { return taken(k) ? to_acc(xr[k * xs1]) : -inf_of<A>(); };
    A m = -inf_of<A>();
    int nan = 0;
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
      const A a = xk(k);
      nan |= a != a;
      m = a > m ? a : m;
    }
    m = block_reduce(m, red_a, OpMax());
    nan = block_reduce(nan, red_i, OpOr());
    i64 pick = n, count = 0;  // first maximum / number of maxima
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
      if (xk(k) == m) {
        pick = k < pick ? k : pick;
        count += 1;
      }
    }
    pick = block_reduce(pick, red_l, OpMin());
    count = block_reduce(count, red_l, OpSum());
    const A share = A(1) / A(count > 0 ? count : 1);
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
      A v;
      if (!taken(k)) v = A(0);
      else if (nan) v = nan_of<A>();
      else if (m == -inf_of<A>()) v = A(0);
      else if (first) v = k == pick ? A(1) : A(0);
      else v = xk(k) == m ? share : A(0);
      yr[k * ys1] = narrow<T>(v);
    }
  }
}

// Gumbel noise: Philox4x32-10 of counter (k lo, k hi, r lo, r hi) under key
// (seed lo, seed hi), the top 52 of 64 bits as a centred uniform, -log(-log(u)):
// the same bits as backends/_philox.py; float64 by definition.
__device__ __forceinline__ double gumbel_noise(unsigned k0, unsigned k1, unsigned long long row,
                                               unsigned long long pos) {
  unsigned c0 = (unsigned)pos, c1 = (unsigned)(pos >> 32), c2 = (unsigned)row, c3 = (unsigned)(row >> 32);
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    const unsigned long long p0 = 0xD2511F53ull * c0;
    const unsigned long long p1 = 0xCD9E8D57ull * c2;
    const unsigned n0 = (unsigned)(p1 >> 32) ^ c1 ^ k0;
    const unsigned n2 = (unsigned)(p0 >> 32) ^ c3 ^ k1;
    c1 = (unsigned)p1;
    c3 = (unsigned)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const unsigned long long bits52 = (((unsigned long long)c1 << 32) | c0) >> 12;
  const double u = ((double)bits52 + 0.5) * (1.0 / 4503599627370496.0);
  return -log(-log(u));
}

// out[r, k] = x[r, k] + noise(r, k), added in float64 and rounded once to A (float
// for float16, as the reference); out is a contiguous (rows, n) buffer.
template <class T>
__global__ void __launch_bounds__(256) gumbel_perturb(const T* x, i64 xs0, i64 xs1, i64 rows, i64 n, SD_A* out, unsigned seed_lo,
                               unsigned seed_hi) {
  typedef SD_A A;
  const i64 total = rows * n;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
    const i64 r = i / n, k = i - r * n;
    const double noise = gumbel_noise(seed_lo, seed_hi, (unsigned long long)r, (unsigned long long)k);
    out[i] = (A)((double)to_acc(x[r * xs0 + k * xs1]) + noise);
  }
}

// cross-entropy with its gradient, fused.  Row targets q: class indices (INDEX:
// q_j = keep w_y [j == y] + share w_j, ignored rows (label < 0) give 0) or
// probabilities (q_j = w_j (keep p_j + share)); keep = 1 - eps, share = eps / C,
// w = 1 without weights.  loss = Q log S - sum q_j t_j (Q = sum q, t = (x - m)/T,
// S = sum exp t); grad = (exp(t) / S * Q - q) * scale.  Pass 1: max (x cached in
// shared memory when CACHE); pass 2: exp and the sums (exp(t) kept in the cache);
// pass 3: the gradient.  Rows with NaN or +-inf take softmax's rules for log p.
template <class T, bool INDEX, bool CACHE>
__global__ void __launch_bounds__(1024) cross_entropy_rows(const T* x, i64 xs0, i64 xs1, i64 xs2, const long long* labels, i64 ls0,
                                   i64 ls1, const T* probs, i64 ps0, i64 ps1, i64 ps2, const double* weight,
                                   i64 wstride, SD_A keep, SD_A share, const SD_A* tp, i64 tp0, i64 tp1, SD_A pre,
                                   SD_A tq, const double* gscale, i64 gs0, i64 gs1, SD_A gscalar, double* loss,
                                   i64 lo0, i64 lo1, T* grad, i64 gr0, i64 gr1, i64 gr2, i64 rows, i64 n,
                                   i64 inner, int xvec) {
  typedef SD_A A;
  constexpr int W = Pack<T>::W;
  extern __shared__ __align__(16) unsigned char sd_dynamic[];
  A* row = reinterpret_cast<A*>(sd_dynamic);
  __shared__ A red_a[32];
  __shared__ int red_i[32];
  const A inf = inf_of<A>();
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const i64 o = r / inner, j = r - o * inner;
    const T* xr = x + o * xs0 + j * xs2;
    T* gradr = grad == nullptr ? nullptr : grad + o * gr0 + j * gr2;
    const long long label = INDEX ? labels[o * ls0 + j * ls1] : 0;
    if (INDEX && label < 0) {  // ignored row
      if (threadIdx.x == 0) loss[o * lo0 + j * lo1] = 0.0;
      if (gradr != nullptr)
        for (i64 k = threadIdx.x; k < n; k += blockDim.x) gradr[k * gr1] = narrow<T>(A(0));
      continue;
    }
    const T* pr = INDEX ? nullptr : probs + o * ps0 + j * ps2;
    const Temp<A> t = temp_of(tp, tp0, tp1, pre, tq, 0, o, j);
    const A scale = gscale == nullptr ? gscalar : (A)gscale[o * gs0 + j * gs1];
    const A w_label = INDEX ? (weight == nullptr ? A(1) : (A)weight[label * wstride]) : A(0);
    auto q_of = [&](i64 k) -> A {
      const A w = weight == nullptr ? A(1) : (A)weight[k * wstride];
      if (INDEX) return share * w + (k == label ? keep * w_label : A(0));
      return w * (keep * to_acc(pr[k * ps1]) + share);
    };
    auto xk = [&](i64 k) -> A { return CACHE ? row[k] : to_acc(xr[k * xs1]); };
    // pass 1: max, NaN, +inf
    A m = -inf;
    int nan = 0, npos = 0;
    auto take = [&](i64 k, A a) {
      if (CACHE) row[k] = a;
      nan |= a != a;
      npos += a == inf;
      m = a > m ? a : m;
    };
    row_loop<W>(0, n, head_of(xr, n), xvec != 0, [&](i64 k) { take(k, to_acc(xr[k * xs1])); },
                [&](i64 k0) {
                  Pack<T> p;
                  p.u = *reinterpret_cast<const uint4*>(xr + k0);
#pragma unroll
                  for (int w = 0; w < W; ++w) take(k0 + w, to_acc(p.e[w]));
                });
    m = block_reduce(m, red_a, OpMax());
    nan = block_reduce(nan, red_i, OpOr());
    npos = block_reduce(npos, red_i, OpSum());
    Stats<A> st = stats_init<A>();
    st.m = m;
    st.nan = nan;
    st.npos = npos;
    const bool special = special_row(nan, m, t);
    // pass 2: S, Q, sum q t (special rows: Q and sum q log p, by softmax's rules)
    A s = A(0), total_q = A(0), qt = A(0);
    const Rule<A> special_rule = softmax_rule<A, true>(st, t);  // used only when special
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
      const A q = q_of(k);
      total_q += q;
      if (special) {
        if (q != A(0)) qt += q * softmax_value<A, true>(special_rule, xk(k));
      } else {
        const A tt = shifted(xk(k), m, t);
        const A e = sd_exp(tt);
        s += e;
        if (q != A(0)) qt += q * tt;
        if (CACHE) row[k] = e;  // the same thread reads it back in pass 3
      }
    }
    s = block_reduce(s, red_a, OpSum());
    total_q = block_reduce(total_q, red_a, OpSum());
    qt = block_reduce(qt, red_a, OpSum());
    const A log_s = sd_log(s);
    if (threadIdx.x == 0) loss[o * lo0 + j * lo1] = special ? (double)(-qt) : (double)(total_q * log_s - qt);
    if (gradr == nullptr) continue;
    // pass 3: the gradient (the same k -> thread mapping as pass 2 when CACHE)
    const bool zero = total_q == A(0) || scale == A(0);
    const A p_scale = total_q * scale / s;
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) {
      A v = A(0);
      if (!zero) {
        if (special) v = (sd_exp(softmax_value<A, true>(special_rule, xk(k))) * total_q - q_of(k)) * scale;
        else v = (CACHE ? row[k] : sd_exp(shifted(xk(k), m, t))) * p_scale - q_of(k) * scale;
      }
      gradr[k * gr1] = narrow<T>(v);
    }
    __syncthreads();  // the cache is reused by the next row
  }
}
