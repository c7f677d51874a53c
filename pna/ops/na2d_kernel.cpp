// Fused neighbourhood attention on the CPU (forward and backward), loaded by pna/ops/native.py.
//
// Semantics are those of pna/ops/window.py (NATTEN's clamped windows, relative position bias
// rpb[h, key_row - query_row + L - 1, key_col - query_col + L - 1], q not scaled here).
//
// Layout. Inside, every (batch, head) plane is "planar": channel-major rows (C, H, Wp), a row
// holding its W pixels at column PAD with zeros around them, so that a vector of N neighbouring
// queries reads the keys of window slot (dy, dx) as one unaligned vector load (query j reads key
// j - r + dx; no horizontal sums). Queries whose window is clamped at the left/right border (at
// most 2r per row: the "edge" columns) are computed apart, one query at a time, a vector holding
// the window's columns dx instead. Inputs are packed into this layout from any (B, heads, H, W, C)
// strides with unit channel stride; outputs are written back to such strides.
//
// Work: the forward goes query row by query row (scores, softmax, weighted sum of values; the
// weights are kept for the backward, slot-major planar). The backward's first pass goes query row
// by query row (dP, dS = P (dP - rowsum(P dP)), dq, the bias gradient per thread); its second pass
// goes key row by key row and gathers dk and dv from the queries whose windows hold the key, so
// no two threads write the same memory. Threads: std::thread, a contiguous range of rows each.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

constexpr int PAD = 16;      // zero columns left of a planar row (>= r: windows up to L = 33)
constexpr int CBLOCK = 8;    // channels per register block in the weighted sums
constexpr int DXBLOCK = 9;   // window columns per register block in the dot products
constexpr int TBLOCK = 16;   // pixels per block of a layout transpose
constexpr int EBLOCK = 8;    // clamped queries per register block

template <typename T> struct VecOf;
template <> struct VecOf<float> {
  typedef float type __attribute__((vector_size(64)));
  typedef int32_t lane;
  typedef int32_t itype __attribute__((vector_size(64)));
  static constexpr int N = 16;
};
template <> struct VecOf<double> {
  typedef double type __attribute__((vector_size(64)));
  typedef int64_t lane;
  typedef int64_t itype __attribute__((vector_size(64)));
  static constexpr int N = 8;
};
template <typename T> using V = typename VecOf<T>::type;

template <typename T> inline V<T> load(const T* p) { V<T> v; std::memcpy(&v, p, sizeof(v)); return v; }
template <typename T> inline void store(T* p, V<T> v) { std::memcpy(p, &v, sizeof(v)); }
template <typename T> inline V<T> splat(T x) { V<T> v = {}; return v + x; }
template <typename T> inline T hsum(V<T> v) {
  T s = 0;
  for (int l = 0; l < VecOf<T>::N; ++l) s += v[l];
  return s;
}

// exp for float lanes: 2^n * p(f), n = round(x / ln2), f = x - n ln2 in [-ln2/2, ln2/2], p the
// Taylor polynomial of degree 7 (truncation error < 6e-9 relative); ln2 split in two parts so
// that n * ln2_hi is exact. Lanes below -87 (exp under float's normal range) give 0.
inline V<float> vexp(V<float> x) {
  typedef VecOf<float>::itype I;
  const float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
  V<float> clamped = x < -87.0f ? splat(-87.0f) : x;
  clamped = clamped > 88.0f ? splat(88.0f) : clamped;
  V<float> scaled = clamped * 1.4426950408889634f;
  I n = __builtin_convertvector(scaled + (scaled >= 0.0f ? splat(0.5f) : splat(-0.5f)), I);
  V<float> nf = __builtin_convertvector(n, V<float>);
  V<float> f = clamped - nf * ln2_hi - nf * ln2_lo;
  V<float> p = splat(1.0f / 5040);
  p = p * f + 1.0f / 720; p = p * f + 1.0f / 120; p = p * f + 1.0f / 24;
  p = p * f + 1.0f / 6; p = p * f + 0.5f; p = p * f + 1.0f; p = p * f + 1.0f;
  V<float> scale = (V<float>)((n + 127) << 23);
  V<float> result = p * scale;
  return x < -87.0f ? splat(0.0f) : result;
}
inline V<double> vexp(V<double> x) {  // float64 is for the tests: per lane
  for (int l = 0; l < VecOf<double>::N; ++l) x[l] = std::exp(x[l]);
  return x;
}

inline int window_start(int i, int n, int kernel, int span) {
  return std::min(std::max(i - kernel / 2, 0), n - span);
}

struct Geo {
  int B, heads, H, W, L, r, Lh, Lw, S, Wv, Wp, edges;
  int64_t plane;  // H * Wp
  std::vector<int> edge_cols;  // query columns whose window is clamped (start != j - r)
  std::vector<int> edge_side;  // which of side_start each clamped query's window starts at
  int sides = 0, side_start[2] = {0, 0};
  Geo(int B_, int heads_, int H_, int W_, int L_, int N) : B(B_), heads(heads_), H(H_), W(W_), L(L_) {
    r = L / 2; Lh = std::min(L, H); Lw = std::min(L, W); S = Lh * Lw;
    Wv = (W + N - 1) / N * N;
    Wp = PAD + Wv + PAD + N;
    plane = (int64_t)H * Wp;
    for (int j = 0; j < W; ++j)
      if (window_start(j, W, L, Lw) != j - r) edge_cols.push_back(j);
    edges = (int)edge_cols.size();
    for (int j : edge_cols) {  // the distinct window starts of the clamped queries (<= 2)
      int start = col_start(j), side = 0;
      while (side < sides && side_start[side] != start) ++side;
      if (side == sides) side_start[sides++] = start;
      edge_side.push_back(side);
    }
  }
  int col_start(int j) const { return window_start(j, W, L, Lw); }
  int row_start(int i) const { return window_start(i, H, L, Lh); }
};

template <class F> void parallel_rows(int64_t rows, int threads, F body) {
  threads = (int)std::max<int64_t>(1, std::min<int64_t>(threads, rows));
  if (threads == 1) { body(0, rows, 0); return; }
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back(body, rows * t / threads, rows * (t + 1) / threads, t);
  body(0, rows / threads, 0);
  for (auto& th : pool) th.join();
}

// (B, heads, H, W, C) with strides (elements, unit channel stride) <-> planar (B*heads, C, H, Wp).
struct Strided { const void* data; int64_t sb, sh, si, sj; };

template <typename T> void pack(const Strided& src, int C, const Geo& g, T* dst, int threads) {
  parallel_rows((int64_t)g.B * g.heads * g.H, threads, [&](int64_t lo, int64_t hi, int) {
    for (int64_t row = lo; row < hi; ++row) {
      int64_t bh = row / g.H; int i = (int)(row % g.H);
      const T* s = (const T*)src.data + (bh / g.heads) * src.sb + (bh % g.heads) * src.sh + i * src.si;
      T* d = dst + bh * C * g.plane + (int64_t)i * g.Wp;
      for (int c = 0; c < C; ++c) {
        T* dc = d + c * g.plane;
        std::memset(dc, 0, sizeof(T) * PAD);
        std::memset(dc + PAD + g.W, 0, sizeof(T) * (g.Wp - PAD - g.W));
      }
      for (int j0 = 0; j0 < g.W; j0 += TBLOCK) {  // blocks of pixels x all channels: one cache-sized transpose
        int nj = std::min(TBLOCK, g.W - j0);
        for (int c = 0; c < C; ++c) {
          T* dc = d + c * g.plane + PAD + j0;
          const T* sc = s + (int64_t)j0 * src.sj + c;
          for (int j = 0; j < nj; ++j) dc[j] = sc[j * src.sj];
        }
      }
    }
  });
}

template <typename T> void unpack_row(const T* rowbuf, int64_t cstride, int C, const Geo& g, int64_t bh, int i,
                                      const Strided& dst) {
  T* d = (T*)dst.data + (bh / g.heads) * dst.sb + (bh % g.heads) * dst.sh + i * dst.si;
  for (int j0 = 0; j0 < g.W; j0 += TBLOCK) {
    int nj = std::min(TBLOCK, g.W - j0);
    for (int j = 0; j < nj; ++j)
      for (int c = 0; c < C; ++c) d[(int64_t)(j0 + j) * dst.sj + c] = rowbuf[c * cstride + j0 + j];
  }
}

// out[dx0 + dx][j] = sum_c a[c][j] * b[c][j - r + dx0 + dx] (+ bias[dx]) for the lanes of [j0, j1):
// a, b point at column PAD of a planar row (channel stride `plane`); out rows are `ostride` apart
// and indexed from j0.
// Lanes [S, S + N) of the 3N lanes (lo, mid, hi), S in [-N, N] relative to mid: a lane shift
// of aligned vectors (one shuffle) instead of an unaligned load that splits cache lines.
template <typename T, int S, size_t... I>
inline V<T> shuffled(V<T> a, V<T> b, std::index_sequence<I...>) {
  constexpr int N = VecOf<T>::N, OFF = S < 0 ? N + S : S;
  typename VecOf<T>::itype mask = {(typename VecOf<T>::lane)(I + OFF)...};
  (void)N;
  return __builtin_shuffle(a, b, mask);
}
template <typename T, int S> inline V<T> shifted(V<T> lo, V<T> mid, V<T> hi) {
  constexpr int N = VecOf<T>::N;
  if constexpr (S == 0) return mid;
  else if constexpr (S < 0) return shuffled<T, S>(lo, mid, std::make_index_sequence<N>());
  else return shuffled<T, S>(mid, hi, std::make_index_sequence<N>());
}

// out[x][j] = sum_c a[c][j] * b[c][j + SHIFT + x] (+ bias[x]), x < NX, lanes j of [j0, j1): a, b
// point at column PAD of a planar row, aligned (channel stride `plane`); out rows `ostride` apart,
// indexed from j0. SHIFT is a compile-time constant (the full window: -r) so that the shifted key
// vectors come from three aligned loads.
template <typename T, int NX, int SHIFT, size_t... X>
inline void dot_fixed(const T* a, const T* b, int64_t plane, int C, int j0, int j1, T* out, int64_t ostride,
                      const T* bias, std::index_sequence<X...>) {
  constexpr int N = VecOf<T>::N;
  static_assert(-SHIFT <= N && SHIFT + NX - 1 <= N, "shift beyond one vector");
  for (int jb = j0; jb < j1; jb += N) {
    V<T> acc[NX];
    for (int x = 0; x < NX; ++x) acc[x] = splat<T>(0);
    for (int c = 0; c < C; ++c) {
      V<T> av = load(a + c * plane + jb);
      const T* bc = b + c * plane + jb;
      V<T> lo = load(bc - N), mid = load(bc), hi = load(bc + N);
      ((acc[X] += av * shifted<T, SHIFT + (int)X>(lo, mid, hi)), ...);
    }
    for (int x = 0; x < NX; ++x) store(out + x * ostride + (jb - j0), acc[x] + (bias ? bias[x] : T(0)));
  }
}

template <typename T, int NX>
void dot_block(const T* a, const T* b, int64_t plane, int C, int j0, int j1, int shift, T* out, int64_t ostride,
               const T* bias) {
  constexpr int N = VecOf<T>::N;
  if constexpr (NX % 2 == 1 && NX / 2 <= N) {
    if (shift == -(NX / 2)) {  // the whole window of an interior query
      dot_fixed<T, NX, -(NX / 2)>(a, b, plane, C, j0, j1, out, ostride, bias, std::make_index_sequence<NX>());
      return;
    }
  }
  for (int jb = j0; jb < j1; jb += N) {
    V<T> acc[NX];
    for (int x = 0; x < NX; ++x) acc[x] = splat<T>(0);
    for (int c = 0; c < C; ++c) {
      V<T> av = load(a + c * plane + jb);
      const T* bc = b + c * plane + jb + shift;
#pragma GCC unroll 16
      for (int x = 0; x < NX; ++x) acc[x] += av * load(bc + x);
    }
    for (int x = 0; x < NX; ++x) store(out + x * ostride + (jb - j0), acc[x] + (bias ? bias[x] : T(0)));
  }
}

template <typename T>
void dot_dispatch(int nx, const T* a, const T* b, int64_t plane, int C, int j0, int j1, int shift, T* out,
                  int64_t ostride, const T* bias) {
  switch (nx) {
#define PNA_DOT_CASE(K) case K: dot_block<T, K>(a, b, plane, C, j0, j1, shift, out, ostride, bias); break;
    PNA_DOT_CASE(1) PNA_DOT_CASE(2) PNA_DOT_CASE(3) PNA_DOT_CASE(4) PNA_DOT_CASE(5)
    PNA_DOT_CASE(6) PNA_DOT_CASE(7) PNA_DOT_CASE(8) PNA_DOT_CASE(9)
#undef PNA_DOT_CASE
  }
}

// acc[cc] += sum_x w[x * wstep] * s[cc * plane + x * sstep] for NC channels (one vector each).
template <typename T, int NC>
inline void fma_run(V<T>* acc, const T* w, int64_t wstep, const T* s, int64_t plane, int64_t sstep, int count) {
  for (int x = 0; x < count; ++x) {
    V<T> wv = load(w + x * wstep);
#pragma GCC unroll 8
    for (int cc = 0; cc < NC; ++cc) acc[cc] += wv * load(s + cc * plane + x * sstep);
  }
}

// For channels [0, C) in blocks of CBLOCK (then one by one): acc = 0, runs(acc, c0, NC), store(c0, acc).
template <typename T, class Runs, class Store>
inline void channel_blocks(int C, Runs runs, Store store_block) {
  int c0 = 0;
  for (; c0 + CBLOCK <= C; c0 += CBLOCK) {
    V<T> acc[CBLOCK];
    for (int cc = 0; cc < CBLOCK; ++cc) acc[cc] = splat<T>(0);
    runs(acc, c0, std::integral_constant<int, CBLOCK>());
    store_block(acc, c0, CBLOCK);
  }
  for (; c0 < C; ++c0) {
    V<T> acc[1] = {splat<T>(0)};
    runs(acc, c0, std::integral_constant<int, 1>());
    store_block(acc, c0, 1);
  }
}

// Scores of query row i, columns [j0, j1), into sc (S rows of stride `cs`, indexed from j0):
// sc[dy*Lw + dx][j] = a[.][i][j] . b[.][key row][key col] (+ rpb), a/b planar planes.
template <typename T>
void row_scores(const Geo& g, const T* a, const T* b, int C, const T* rpb_pad, int rpb_stride, int i, int j0, int j1,
                T* sc, int64_t cs) {
  constexpr int N = VecOf<T>::N;
  int si = g.row_start(i);
  T bias[DXBLOCK];
  for (int dy = 0; dy < g.Lh; ++dy) {
    const T* arow = a + (int64_t)i * g.Wp + PAD;
    const T* brow = b + (int64_t)(si + dy) * g.Wp + PAD;
    const T* brpb = rpb_pad ? rpb_pad + (int64_t)(si + dy - i + g.L - 1) * rpb_stride : nullptr;
    for (int x0 = 0; x0 < g.Lw; x0 += DXBLOCK) {
      int nx = std::min(DXBLOCK, g.Lw - x0);
      if (brpb) for (int x = 0; x < nx; ++x) bias[x] = brpb[x0 + x + g.r];
      dot_dispatch<T>(nx, arow, brow, g.plane, C, j0, j1, x0 - g.r, sc + (dy * g.Lw + x0) * cs, cs,
                      brpb ? bias : nullptr);
    }
  }
  // clamped queries, EBLOCK at a time (independent accumulators): a vector holds the window's
  // columns dx (lanes >= Lw are ignored)
  const std::vector<int>& cols = g.edge_cols;
  for (size_t e0 = 0; e0 < cols.size(); e0 += EBLOCK) {
    int js[EBLOCK], starts[EBLOCK], ne = 0;
    for (size_t e = e0; e < std::min(cols.size(), e0 + EBLOCK); ++e)
      if (cols[e] >= j0 && cols[e] < j1) { starts[ne] = g.col_start(cols[e]); js[ne++] = cols[e]; }
    if (ne == 0) continue;
    for (int dy = 0; dy < g.Lh; ++dy) {
      int ki = si + dy;
      for (int x0 = 0; x0 < g.Lw; x0 += N) {
        V<T> acc[EBLOCK];
        for (int e = 0; e < EBLOCK; ++e) acc[e] = splat<T>(0);
        for (int c = 0; c < C; ++c) {
          const T* ac = a + c * g.plane + (int64_t)i * g.Wp + PAD;
          const T* bc = b + c * g.plane + (int64_t)ki * g.Wp + PAD + x0;
          for (int e = 0; e < ne; ++e) acc[e] += ac[js[e]] * load(bc + starts[e]);
        }
        for (int e = 0; e < ne; ++e) {
          int j = js[e];
          if (rpb_pad) acc[e] += load(rpb_pad + (int64_t)(ki - i + g.L - 1) * rpb_stride + starts[e] - j + g.L - 1 + x0);
          for (int x = 0; x < std::min(N, g.Lw - x0); ++x) sc[(dy * g.Lw + x0 + x) * cs + (j - j0)] = acc[e][x];
        }
      }
    }
  }
}

// out[c][j] = sum_t w[t][j] * v[c][key row][key col] for query row i, columns [j0, j1): w has S
// rows of stride `ws` indexed from j0; out has C rows of stride `os` indexed from j0.
template <typename T>
void row_weighted_sum(const Geo& g, const T* w, int64_t ws, const T* v, int C, int i, int j0, int j1, T* out,
                      int64_t os) {
  constexpr int N = VecOf<T>::N;
  int si = g.row_start(i);
  for (int jb = j0; jb < j1; jb += N) {
    channel_blocks<T>(C, [&](V<T>* acc, int c0, auto nc) {
      for (int dy = 0; dy < g.Lh; ++dy)
        fma_run<T, decltype(nc)::value>(acc, w + (dy * g.Lw) * ws + (jb - j0), ws,
                                        v + c0 * g.plane + (int64_t)(si + dy) * g.Wp + PAD + jb - g.r, g.plane, 1, g.Lw);
    }, [&](V<T>* acc, int c0, int nc) {
      for (int cc = 0; cc < nc; ++cc) store(out + (c0 + cc) * os + (jb - j0), acc[cc]);
    });
  }
  int pieces = (g.Lw + N - 1) / N;
  V<T> pe[(2 * PAD + 1) * ((2 * PAD + 8) / 8)];  // one query's weights: Lh rows of `pieces` vectors
  for (int j : g.edge_cols) {
    if (j < j0 || j >= j1) continue;
    int sj = g.col_start(j);
    for (int dy = 0; dy < g.Lh; ++dy)
      for (int p = 0; p < pieces; ++p) {
        V<T> lanes = splat<T>(0);
        for (int x = 0; x < std::min(N, g.Lw - p * N); ++x) lanes[x] = w[(dy * g.Lw + p * N + x) * ws + (j - j0)];
        pe[dy * pieces + p] = lanes;
      }
    channel_blocks<T>(C, [&](V<T>* acc, int c0, auto nc) {
      constexpr int NC = decltype(nc)::value;
      for (int dy = 0; dy < g.Lh; ++dy) {
        const T* vrow = v + c0 * g.plane + (int64_t)(si + dy) * g.Wp + PAD + sj;
        for (int p = 0; p < pieces; ++p)
#pragma GCC unroll 8
          for (int cc = 0; cc < NC; ++cc) acc[cc] += pe[dy * pieces + p] * load(vrow + cc * g.plane + p * N);
      }
    }, [&](V<T>* acc, int c0, int nc) {
      for (int cc = 0; cc < nc; ++cc) out[(c0 + cc) * os + (j - j0)] = hsum<T>(acc[cc]);
    });
  }
}

// The bias table padded to rows of 2L - 1 + 2N (zeros): a vector read from any window offset stays inside.
template <typename T> std::vector<T> padded_bias(const T* rpb, const Geo& g, int& stride) {
  int n = 2 * g.L - 1;
  stride = n + 2 * VecOf<T>::N;
  std::vector<T> out((size_t)g.heads * n * stride, T(0));
  for (int h = 0; h < g.heads; ++h)
    for (int a = 0; a < n; ++a)
      std::memcpy(&out[((size_t)h * n + a) * stride], rpb + ((size_t)h * n + a) * n, sizeof(T) * n);
  return out;
}

constexpr int CHUNK = 64;  // query columns per step of a row (the scores stay in L1)

template <typename T>
void forward(const Strided& q, const Strided& k, const Strided& v, const T* rpb, int B, int heads, int H, int W,
             int d, int dv, int L, const Strided& out, T* qp, T* kp, T* vp, T* probs, const Strided* attn, int threads) {
  constexpr int N = VecOf<T>::N;
  Geo g(B, heads, H, W, L, N);
  pack<T>(q, d, g, qp, threads); pack<T>(k, d, g, kp, threads); pack<T>(v, dv, g, vp, threads);
  int rs; std::vector<T> rpb_pad = padded_bias(rpb, g, rs);
  parallel_rows((int64_t)B * heads * H, threads, [&](int64_t lo, int64_t hi, int) {
    std::vector<T> sc((size_t)g.S * CHUNK), row((size_t)dv * g.Wv);
    for (int64_t unit = lo; unit < hi; ++unit) {
      int64_t bh = unit / H; int i = (int)(unit % H);
      const T *a = qp + bh * d * g.plane, *b = kp + bh * d * g.plane, *val = vp + bh * dv * g.plane;
      for (int j0 = 0; j0 < g.Wv; j0 += CHUNK) {
        int j1 = std::min(g.Wv, j0 + CHUNK);
        row_scores<T>(g, a, b, d, rpb_pad.data() + (size_t)(bh % heads) * (2 * L - 1) * rs, rs, i, j0, j1, sc.data(), CHUNK);
        for (int jb = 0; jb < j1 - j0; jb += N) {  // softmax over the window slots, lane by lane
          V<T> m = load(&sc[jb]);
          for (int t = 1; t < g.S; ++t) { V<T> s = load(&sc[t * CHUNK + jb]); m = s > m ? s : m; }
          V<T> total = splat<T>(0);
          for (int t = 0; t < g.S; ++t) { V<T> e = vexp(load(&sc[t * CHUNK + jb]) - m); store(&sc[t * CHUNK + jb], e); total += e; }
          V<T> inv = splat<T>(1) / total;
          for (int t = 0; t < g.S; ++t) store(&sc[t * CHUNK + jb], load(&sc[t * CHUNK + jb]) * inv);
        }
        if (probs)
          for (int t = 0; t < g.S; ++t)
            std::memcpy(probs + ((bh * H + i) * g.S + t) * g.Wp + PAD + j0, &sc[t * CHUNK], sizeof(T) * (j1 - j0));
        if (attn) {
          T* dst = (T*)attn->data + (bh / heads) * attn->sb + (bh % heads) * attn->sh + i * attn->si;
          for (int j = j0; j < std::min(j1, W); ++j)
            for (int t = 0; t < g.S; ++t) dst[j * attn->sj + t] = sc[t * CHUNK + j - j0];
        }
        if (out.data) row_weighted_sum<T>(g, sc.data(), CHUNK, val, dv, i, j0, j1, row.data() + j0, g.Wv);
      }
      if (out.data) unpack_row<T>(row.data(), g.Wv, dv, g, bh, i, out);
    }
  });
}

// The backward of one thread, over a contiguous range of (plane, row) units. Per plane segment
// [seg_lo, seg_hi) it runs the query-row pass on rows [seg_lo - 2r, seg_hi + 2r) (the rows outside
// the segment are recomputed, not written: another thread owns them) and gathers key row m as
// soon as every query row whose window holds it is done (rows <= m + 2r). The query rows' dS and
// P live in a ring of the last 4r + 1 rows, so they stay in cache instead of going to memory.
template <typename T> struct Backward {
  static constexpr int N = VecOf<T>::N;
  const Geo& g;
  const T *qp, *kp, *vp, *gp, *probs;
  int d, dv, n, rs, pieces, R;
  int64_t edge_row, slot_rows;  // floats per query row: edge buffer, S x Wp weights
  const std::vector<T>& interior;
  const Strided &grad_q, &grad_k, &grad_v;
  // per thread
  std::vector<T> dsr, pmr, dser, per, dp, row, rowk, rowv;
  T* bedge;
  V<T>* binner;

  Backward(const Geo& g_, const T* q_, const T* k_, const T* v_, const T* go_, const T* probs_, int d_, int dv_,
           const std::vector<T>& interior_, const Strided& gq, const Strided& gk, const Strided& gv, T* bedge_,
           V<T>* binner_)
      : g(g_), qp(q_), kp(k_), vp(v_), gp(go_), probs(probs_), d(d_), dv(dv_), interior(interior_), grad_q(gq),
        grad_k(gk), grad_v(gv), bedge(bedge_), binner(binner_) {
    n = 2 * g.L - 1; rs = n + 2 * N; pieces = (g.Lw + N - 1) / N; R = 4 * g.r + 1;
    edge_row = (int64_t)g.edges * g.Lh * pieces * N;
    slot_rows = (int64_t)g.S * g.Wp;
    dsr.assign(R * slot_rows, T(0)); pmr.assign(R * slot_rows, T(0));
    dser.assign(R * std::max<int64_t>(edge_row, 1), T(0)); per.assign(R * std::max<int64_t>(edge_row, 1), T(0));
    dp.resize((size_t)g.S * CHUNK); row.resize((size_t)d * g.Wv);
    rowk.resize((size_t)d * (g.Wv + PAD + N)); rowv.resize((size_t)dv * (g.Wv + PAD + N));
  }

  // dP, dS = P (dP - sum_t P dP), dq (written when `own`), the bias gradient (when `own`); dS and
  // P of the interior queries go to the ring (the clamped queries' to the edge ring).
  void query_row(int64_t bh, int i, bool own) {
    int h = (int)(bh % g.heads), si = g.row_start(i), slot = i % R;
    const T *go = gp + bh * dv * g.plane, *val = vp + bh * dv * g.plane, *key = kp + bh * d * g.plane;
    const T* prow = probs + (bh * g.H + i) * slot_rows + PAD;  // slot t at prow + t * Wp
    T *dsm = dsr.data() + slot * slot_rows, *pm = pmr.data() + slot * slot_rows;
    for (int j0 = 0; j0 < g.Wv; j0 += CHUNK) {
      int j1 = std::min(g.Wv, j0 + CHUNK);
      row_scores<T>(g, go, val, dv, nullptr, 0, i, j0, j1, dp.data(), CHUNK);
      for (int jb = 0; jb < j1 - j0; jb += N) {
        V<T> delta = splat<T>(0);
        for (int t = 0; t < g.S; ++t) delta += load(prow + t * g.Wp + j0 + jb) * load(&dp[t * CHUNK + jb]);
        for (int t = 0; t < g.S; ++t)
          store(&dp[t * CHUNK + jb], load(prow + t * g.Wp + j0 + jb) * (load(&dp[t * CHUNK + jb]) - delta));
      }
      if (own) row_weighted_sum<T>(g, dp.data(), CHUNK, key, d, i, j0, j1, row.data() + j0, g.Wv);
      for (int t = 0; t < g.S; ++t) {  // interior queries only (edges and padding zero)
        int dy = t / g.Lw, dx = t % g.Lw, a = si + dy - i + g.L - 1;
        V<T> sum = splat<T>(0);
        for (int jb = j0; jb < j1; jb += N) {
          V<T> keep = load(&interior[jb]), ds = load(&dp[t * CHUNK + jb - j0]) * keep;
          store(dsm + t * g.Wp + PAD + jb, ds);
          store(pm + t * g.Wp + PAD + jb, load(prow + t * g.Wp + jb) * keep);
          sum += ds;
        }
        if (own) binner[((size_t)h * n + a) * g.Lw + dx] += sum;
      }
      for (int e = 0; e < g.edges; ++e) {
        int j = g.edge_cols[e];
        if (j < j0 || j >= j1) continue;
        int sj = g.col_start(j);
        T* dse = dser.data() + slot * edge_row + (int64_t)e * g.Lh * pieces * N;
        T* pe = per.data() + slot * edge_row + (int64_t)e * g.Lh * pieces * N;
        std::fill(dse, dse + g.Lh * pieces * N, T(0));
        std::fill(pe, pe + g.Lh * pieces * N, T(0));
        for (int dy = 0; dy < g.Lh; ++dy) {
          T* brow = bedge + ((size_t)h * n + si + dy - i + g.L - 1) * rs + sj - j + g.L - 1;
          for (int dx = 0; dx < g.Lw; ++dx) {
            T s = dp[(dy * g.Lw + dx) * CHUNK + j - j0];
            dse[dy * pieces * N + dx] = s;
            pe[dy * pieces * N + dx] = prow[(dy * g.Lw + dx) * g.Wp + j];
            if (own) brow[dx] += s;
          }
        }
      }
    }
    if (own) unpack_row<T>(row.data(), g.Wv, d, g, bh, i, grad_q);
  }

  // dk (from dS and q) and dv (from P and dO) of key row m, gathered from the ring.
  void key_row(int64_t bh, int m) {
    std::pair<int, int> inv[2 * (2 * PAD + 1)];  // (query row, dy)
    int ninv = 0;
    for (int i = std::max(0, m - 2 * g.r); i <= std::min(g.H - 1, m + 2 * g.r); ++i) {
      int si = g.row_start(i);
      if (si <= m && m < si + g.Lh) inv[ninv++] = {i, m - si};
    }
    const T* weights[2] = {dsr.data(), pmr.data()};
    const T* sources[2] = {qp + bh * d * g.plane, gp + bh * dv * g.plane};
    const T* edges[2] = {dser.data(), per.data()};
    int channels[2] = {d, dv};
    T* bufs[2] = {rowk.data(), rowv.data()};
    int64_t rsk = g.Wv + PAD + N;
    for (int which = 0; which < 2; ++which) {
      const T *wts = weights[which], *src = sources[which];
      int C = channels[which];
      T* buf = bufs[which];
      for (int nb = 0; nb < g.Wv; nb += N) {
        channel_blocks<T>(C, [&](V<T>* acc, int c0, auto nc) {
          for (int k = 0; k < ninv; ++k) {
            auto [i, dy] = inv[k];
            fma_run<T, decltype(nc)::value>(
                acc, wts + (i % R) * slot_rows + (int64_t)(dy * g.Lw) * g.Wp + PAD + nb + g.r, g.Wp - 1,
                src + c0 * g.plane + (int64_t)i * g.Wp + PAD + nb + g.r, g.plane, -1, g.Lw);
          }
        }, [&](V<T>* acc, int c0, int nc) {
          for (int cc = 0; cc < nc; ++cc) store(buf + (c0 + cc) * rsk + nb, acc[cc]);
        });
      }
      // the clamped queries, a vector of window columns each: their windows start at one of at
      // most two columns (left and right border; one side at a time, their vectors may overlap)
      for (int side = 0; side < g.sides; ++side)
        for (int p = 0; p < pieces; ++p)
          channel_blocks<T>(C, [&](V<T>* acc, int c0, auto nc) {
            constexpr int NC = decltype(nc)::value;
            T* dst = buf + c0 * rsk + g.side_start[side] + p * N;
            for (int cc = 0; cc < NC; ++cc) acc[cc] = load(dst + cc * rsk);
            for (int k = 0; k < ninv; ++k) {
              auto [i, dy] = inv[k];
              const T* srow = src + c0 * g.plane + (int64_t)i * g.Wp + PAD;
              for (int e = 0; e < g.edges; ++e) {
                if (g.edge_side[e] != side) continue;
                V<T> w = load(edges[which] + (i % R) * edge_row + ((int64_t)e * g.Lh + dy) * pieces * N + p * N);
                int j = g.edge_cols[e];
#pragma GCC unroll 8
                for (int cc = 0; cc < NC; ++cc) acc[cc] += srow[cc * g.plane + j] * w;
              }
            }
          }, [&](V<T>* acc, int c0, int nc) {
            T* dst = buf + c0 * rsk + g.side_start[side] + p * N;
            for (int cc = 0; cc < nc; ++cc) store(dst + cc * rsk, acc[cc]);
          });
    }
    unpack_row<T>(rowk.data(), rsk, d, g, bh, m, grad_k);
    unpack_row<T>(rowv.data(), rsk, dv, g, bh, m, grad_v);
  }

  void run(int64_t lo, int64_t hi) {
    for (int64_t bh = lo / g.H; bh * g.H < hi; ++bh) {
      int seg_lo = (int)(std::max(lo, bh * g.H) - bh * g.H), seg_hi = (int)(std::min(hi, (bh + 1) * g.H) - bh * g.H);
      int first = std::max(0, seg_lo - 2 * g.r), last = std::min(g.H, seg_hi + 2 * g.r);
      int next_key = seg_lo;
      for (int i = first; i < last; ++i) {
        query_row(bh, i, i >= seg_lo && i < seg_hi);
        for (; next_key < seg_hi && std::min(next_key + 2 * g.r, g.H - 1) <= i; ++next_key) key_row(bh, next_key);
      }
    }
  }
};

template <typename T>
void backward(const Strided& grad_out, const T* qp, const T* kp, const T* vp, const T* probs, int B, int heads, int H,
              int W, int d, int dv, int L, T* gp, const Strided& grad_q, const Strided& grad_k, const Strided& grad_v,
              T* grad_rpb, int threads) {
  constexpr int N = VecOf<T>::N;
  Geo g(B, heads, H, W, L, N);
  pack<T>(grad_out, dv, g, gp, threads);
  int n = 2 * L - 1, rs = n + 2 * N;
  std::vector<T> interior(g.Wv, T(0));  // 1 for the columns of unclamped queries, 0 elsewhere
  for (int j = 0; j < W; ++j) interior[j] = T(1);
  for (int j : g.edge_cols) interior[j] = T(0);
  int nthreads = (int)std::max<int64_t>(1, std::min<int64_t>(threads, (int64_t)B * heads * H));
  // per thread: the bias gradient (heads x n x rs), and the interior part as lane vectors (heads x n x Lw)
  std::vector<std::vector<T>> bias_edge(nthreads, std::vector<T>((size_t)heads * n * rs, T(0)));
  std::vector<std::vector<V<T>>> bias_inner(nthreads, std::vector<V<T>>((size_t)heads * n * g.Lw, splat<T>(0)));
  parallel_rows((int64_t)B * heads * H, threads, [&](int64_t lo, int64_t hi, int tid) {
    Backward<T> work(g, qp, kp, vp, gp, probs, d, dv, interior, grad_q, grad_k, grad_v, bias_edge[tid].data(),
                     bias_inner[tid].data());
    work.run(lo, hi);
  });
  for (int h = 0; h < heads; ++h)  // reduce the threads' bias gradients
    for (int a = 0; a < n; ++a)
      for (int b = 0; b < n; ++b) {
        T s = 0;
        for (int t = 0; t < nthreads; ++t) {
          s += bias_edge[t][((size_t)h * n + a) * rs + b];
          int dx = b - g.r;
          if (dx >= 0 && dx < g.Lw) s += hsum<T>(bias_inner[t][((size_t)h * n + a) * g.Lw + dx]);
        }
        grad_rpb[((size_t)h * n + a) * n + b] = s;
      }
}

}  // namespace

extern "C" {

// Buffer sizes the caller allocates (elements): planar = B*heads*C*H*planar_row, probs and the
// masked copies = B*heads*S*H*planar_row, edge buffers = B*heads*H*edge_row.
void pna_na2d_sizes(int H, int W, int L, int is_double, int64_t* out) {
  int N = is_double ? VecOf<double>::N : VecOf<float>::N;
  Geo g(1, 1, H, W, L, N);
  out[0] = g.Wp; out[1] = g.S; out[2] = (int64_t)g.edges * g.Lh * ((g.Lw + N - 1) / N) * N; out[3] = PAD;
}

#define PNA_EXPORT(T, SUFFIX)                                                                              \
  void pna_na2d_forward_##SUFFIX(const void* q, const int64_t* qs, const void* k, const int64_t* ks,         \
                                 const void* v, const int64_t* vs, const void* rpb, const int64_t* shape,   \
                                 void* out, const int64_t* os, void* qp, void* kp, void* vp, void* probs,    \
                                 void* attn, const int64_t* as, int threads) {                               \
    Strided sq{q, qs[0], qs[1], qs[2], qs[3]}, sk{k, ks[0], ks[1], ks[2], ks[3]}, sv{v, vs[0], vs[1], vs[2], vs[3]}; \
    Strided so{out, out ? os[0] : 0, out ? os[1] : 0, out ? os[2] : 0, out ? os[3] : 0};                    \
    Strided sa{attn, attn ? as[0] : 0, attn ? as[1] : 0, attn ? as[2] : 0, attn ? as[3] : 0};                \
    forward<T>(sq, sk, sv, (const T*)rpb, (int)shape[0], (int)shape[1], (int)shape[2], (int)shape[3],        \
               (int)shape[4], (int)shape[5], (int)shape[6], so, (T*)qp, (T*)kp, (T*)vp, (T*)probs,            \
               attn ? &sa : nullptr, threads);                                                                \
  }                                                                                                          \
  void pna_na2d_backward_##SUFFIX(const void* go, const int64_t* gs, const void* qp, const void* kp,          \
                                  const void* vp, const void* probs, const int64_t* shape, void* gp, void* gq,  \
                                  const int64_t* gqs, void* gk, const int64_t* gks, void* gv,                 \
                                  const int64_t* gvs, void* grpb, int threads) {                              \
    Strided sgo{go, gs[0], gs[1], gs[2], gs[3]}, sq{gq, gqs[0], gqs[1], gqs[2], gqs[3]};                     \
    Strided sk{gk, gks[0], gks[1], gks[2], gks[3]}, sv{gv, gvs[0], gvs[1], gvs[2], gvs[3]};                  \
    backward<T>(sgo, (const T*)qp, (const T*)kp, (const T*)vp, (const T*)probs, (int)shape[0], (int)shape[1], \
                (int)shape[2], (int)shape[3], (int)shape[4], (int)shape[5], (int)shape[6], (T*)gp, sq, sk, sv, \
                (T*)grpb, threads);                                                                           \
  }

PNA_EXPORT(float, f32)
PNA_EXPORT(double, f64)
#undef PNA_EXPORT
}
