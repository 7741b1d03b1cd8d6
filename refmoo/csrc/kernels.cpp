// refmoo's compiled kernels (built by refmoo/compiled.py), two custom operators:
//
// - refmoo_fused::mgda_tiles: bucketwise(MGDA) for many equal buckets of
//   consecutive columns, in one pass over G. Per bucket (a tile of `width` columns
//   of the K x D matrix G, K <= 8) and while the tile is in cache: its Gram in
//   double, its min-norm weights, and its update w^T G^b written into `out`. The
//   weights of up to 8 neighbouring tiles are found side by side, one per lane
//   (each lane with the single problem's operations), so that the divisions and
//   square roots of one problem overlap with the others'.
// - refmoo_fused::min_norm_guesses: the weights alone, for a batch of Grams.
//
// The weights are found by the support guesses of refmoo/min_norm.py, step for
// step (equilibrated Cholesky, per-row certificate, no-worse-than-a-vertex test).
// Whatever a kernel cannot settle it leaves to the eager solver, with a status per
// problem (see refmoo/fused_mgda.py and min_norm._compiled_rounds): it never
// returns an uncertified answer.
//
// Bits. Built with -ffp-contract=off and without -ffast-math, every operation
// below is one correctly rounded IEEE 754 +, -, *, / or sqrt in a fixed order
// (vector lanes only ever hold independent partial sums; the one fused
// multiply-add, in add_product, takes exact products and so rounds as * then +
// do), so a problem's weights and update do not depend on the CPU, on the thread
// count, or on other problems;
// min_norm_guesses does exactly the element-wise operations of the eager unrolled
// path (min_norm._UnrolledCholesky), so it returns the same bits.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

constexpr int kMaxK = 8;
constexpr int kLanes = 4;  // independent partial sums per Gram entry
constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kTiny = std::numeric_limits<double>::min();
constexpr double kMax = std::numeric_limits<double>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kRounding = 4.0;  // min_norm._ROUNDING
// 2^H: where a float64 bucket's largest entry is put before its Gram is formed. The
// Gram's largest entry is then below width * 4^H = 2^962 for width <= 4096
// (fused_mgda.MAX_WIDTH), within u * max = 2^971 (bucketwise.in_range's bound).
constexpr int kHeadroom = 475;

// refmoo._scale.RELATIVE_FLOOR_EXPONENT: a nonzero row whose normalised squared norm
// is below 2^-969 is out of the solver's reach (rows about 1e-146 of the largest).
constexpr int kRelativeFloorExponent = -969;

enum Status : uint8_t {
  kDone = 0, kUnsolved = 1, kNonFinite = 2, kOverflow = 3, kOutOfRange = 4,
  kZeroRow = 5  // tile_problem only: a zero row, so the update is 0 (weights e_k)
};

using Matrix = double[kMaxK][kMaxK];

// x * 2^e as refmoo._scale.ldexp computes it: one factor for |e| <= 1000, else two
// (2^floor(e/2) first), so that no intermediate leaves the range unless x * 2^e does.
inline double scale2(double x, int e) {
  if (e >= -1000 && e <= 1000) return std::ldexp(x, e);
  const int half = e >= 0 ? e / 2 : -((1 - e) / 2);
  return std::ldexp(std::ldexp(x, half), e - half);
}

// Four doubles, one per partial sum; GCC's vector extension, so that every
// operation on it is the element-wise IEEE operation, one instruction in the AVX2
// build and two in the SSE2 baseline build.
typedef double Lanes __attribute__((vector_size(32)));
typedef float FloatLanes __attribute__((vector_size(16)));
static_assert(kLanes == 4, "Lanes holds kLanes doubles");

inline Lanes load_lanes(const float* p) {  // exact
#if defined(__AVX__)
  return reinterpret_cast<Lanes>(_mm256_cvtps_pd(_mm_loadu_ps(p)));
#else
  FloatLanes f;
  std::memcpy(&f, p, sizeof f);
  return __builtin_convertvector(f, Lanes);
#endif
}

// acc + x * y. Where the products are exact (float32 entries), a fused multiply-add
// rounds once, as x * y then + does, so it gives the same bits in half the
// instructions.
template <bool kExactProducts>
inline Lanes add_product(Lanes acc, Lanes x, Lanes y) {
#if defined(__FMA__)
  if (kExactProducts)
    return reinterpret_cast<Lanes>(_mm256_fmadd_pd(reinterpret_cast<__m256d>(x),
                                                   reinterpret_cast<__m256d>(y),
                                                   reinterpret_cast<__m256d>(acc)));
#endif
  return acc + x * y;
}

inline Lanes load_lanes(const double* p) {
  Lanes d;
  std::memcpy(&d, p, sizeof d);
  return d;
}

// Q = X X^T of the tile (upper triangle, mirrored), X = G^b * 2^-e in double, with
// 2^-e applied as the factors f1 * f2 of refmoo._scale.ldexp (f2 = 1 unless |e| >
// 1000), so each X entry is exactly x * 2^-e as ldexp rounds it; a float32 tile is
// not scaled (its products are exact in double). Column c goes into partial sum
// c mod kLanes of each entry, added in column order; the kLanes partial sums are added
// in order at the end. K is a template parameter, so that for K <= 4 the K(K+1)/2
// sums stay in vector registers.
template <int K, typename T>
void tile_gram(const T* tile, int64_t ld, int64_t width, double f1, double f2, Matrix Q) {
  constexpr int kPairs = K * (K + 1) / 2;
  constexpr bool kScaled = std::is_same<T, double>::value;
  Lanes acc[kPairs];
#pragma GCC unroll 36
  for (int p = 0; p < kPairs; ++p) acc[p] = Lanes{0.0, 0.0, 0.0, 0.0};
  auto add = [&acc](const Lanes* x) __attribute__((always_inline)) {
    int p = 0;
#pragma GCC unroll 8
    for (int i = 0; i < K; ++i)
#pragma GCC unroll 8
      for (int j = i; j < K; ++j, ++p) acc[p] = add_product<!kScaled>(acc[p], x[i], x[j]);
  };
  int64_t c = 0;
  for (; c + kLanes <= width; c += kLanes) {
    Lanes x[K];
#pragma GCC unroll 8
    for (int i = 0; i < K; ++i) {
      x[i] = load_lanes(tile + i * ld + c);
      if (kScaled) x[i] = x[i] * f1 * f2;
    }
    add(x);
  }
  if (c < width) {  // the last columns, zero-padded (adding exact zeros changes nothing)
    Lanes x[K];
    for (int i = 0; i < K; ++i) {
      T padded[kLanes] = {};
      for (int64_t l = 0; c + l < width; ++l) padded[l] = tile[i * ld + c + l];
      x[i] = load_lanes(padded);
      if (kScaled) x[i] = x[i] * f1 * f2;
    }
    add(x);
  }
  int p = 0;
  for (int i = 0; i < K; ++i)
    for (int j = i; j < K; ++j, ++p) {
      double total = acc[p][0];
      for (int l = 1; l < kLanes; ++l) total += acc[p][l];
      Q[i][j] = Q[j][i] = total;
    }
}

// The two factors of refmoo._scale.ldexp for 2^e: 2^e and 1 where |e| <= 1000, else
// 2^floor(e/2) and 2^(e - floor(e/2)), each a normal number.
inline void pow2_factors(int e, double* f1, double* f2) {
  if (e >= -1000 && e <= 1000) {
    *f1 = std::ldexp(1.0, e);
    *f2 = 1.0;
    return;
  }
  const int half = e >= 0 ? e / 2 : -((1 - e) / 2);
  *f1 = std::ldexp(1.0, half);
  *f2 = std::ldexp(1.0, e - half);
}

template <typename T>
double tile_amax(const T* tile, int64_t ld, int K, int64_t width) {
  double amax = 0.0;
  for (int i = 0; i < K; ++i)
    for (int64_t c = 0; c < width; ++c) {
      const double a = std::fabs(static_cast<double>(tile[i * ld + c]));
      if (std::isnan(a)) return a;
      amax = std::max(amax, a);
    }
  return amax;
}

// The affine minimiser on support S of the equilibrated system C = RQR (unit
// diagonal), as min_norm._affine_minimisers: Cholesky without pivoting, masked
// rows turned into identity rows with a zero right-hand side. False where a pivot
// is below the smallest normal number or the weights do not sum to a positive.
bool affine_minimiser(const Matrix Q, const double* r, const bool* S, int K, double* lam) {
  Matrix L;
  for (int j = 0; j < K; ++j) {
    double d = S[j] ? (Q[j][j] * r[j]) * r[j] : 1.0;
    for (int k = 0; k < j; ++k) d = d - L[j][k] * L[j][k];
    if (!(d >= kTiny)) return false;  // also NaN
    L[j][j] = std::sqrt(d);
    for (int i = j + 1; i < K; ++i) {
      double a = (S[i] && S[j]) ? (Q[i][j] * r[i]) * r[j] : 0.0;
      for (int k = 0; k < j; ++k) a = a - L[i][k] * L[j][k];
      L[i][j] = a / L[j][j];
    }
  }
  double z[kMaxK], y[kMaxK];
  for (int i = 0; i < K; ++i) z[i] = S[i] ? r[i] : 0.0;
  for (int j = 0; j < K; ++j) {  // L z = r_S
    z[j] = z[j] / L[j][j];
    for (int i = j + 1; i < K; ++i) z[i] = z[i] - L[i][j] * z[j];
  }
  for (int j = K - 1; j >= 0; --j) {  // L^T y = z
    y[j] = z[j] / L[j][j];
    for (int i = 0; i < j; ++i) z[i] = z[i] - L[j][i] * y[j];
  }
  double total = 0.0;
  for (int k = 0; k < K; ++k) {
    lam[k] = r[k] * y[k];
    total = k ? total + lam[k] : lam[k];
  }
  if (!(total > 0.0)) return false;
  for (int k = 0; k < K; ++k) lam[k] = lam[k] / total;
  return true;
}

// min_norm._guess_supports for one problem Qn (largest diagonal entry in [1/2, 1)):
// the full support, then up to `rounds` guesses, each answer certified by the
// per-row test and the vertex test before it is accepted.
bool guess_supports(const Matrix Q, int K, double tol, int rounds, double* lam) {
  double sd[kMaxK], r[kMaxK], vertex = kInf;
  bool S[kMaxK];
  for (int k = 0; k < K; ++k) {
    sd[k] = std::sqrt(std::max(Q[k][k], 0.0));
    r[k] = 1.0 / std::max(sd[k], kTiny);
    vertex = std::min(vertex, Q[k][k]);
    S[k] = true;
  }
  const double rounding = kRounding * K * kEps;
  for (int left = rounds;; --left) {
    if (!affine_minimiser(Q, r, S, K, lam)) return false;
    bool positive = true;
    for (int k = 0; k < K; ++k) positive &= !S[k] || lam[k] > 0.0;
    double v[kMaxK], f = 0.0, s = 0.0;
    for (int i = 0; i < K; ++i) {
      v[i] = Q[i][0] * lam[0];
      for (int j = 1; j < K; ++j) v[i] = v[i] + Q[i][j] * lam[j];
    }
    for (int i = 0; i < K; ++i) {
      f = i ? f + lam[i] * v[i] : lam[i] * v[i];
      s = i ? s + lam[i] * sd[i] : lam[i] * sd[i];
    }
    const double root_f = std::sqrt(std::max(f, 0.0));
    bool violated[kMaxK], any_violated = false;
    for (int i = 0; i < K; ++i) {
      violated[i] = f - v[i] > tol * sd[i] * root_f + rounding * s * (sd[i] + s);
      any_violated |= violated[i];
    }
    const bool below = f + rounding * s * s <= vertex * (1.0 + 2.0 * rounding);
    if (positive && !any_violated && below) return true;
    if (left == 0) return false;
    if (positive) {  // add the row that fails the per-row test most (row 0 if none)
      int add = 0;
      double best = -kInf;
      for (int i = 0; i < K; ++i) {
        const double score = (violated[i] && !S[i]) ? (f - v[i]) / std::max(sd[i], 1e-300) : -kInf;
        if (score > best) best = score, add = i;
      }
      S[add] = true;
    } else {
      for (int k = 0; k < K; ++k) S[k] = S[k] && lam[k] > 0.0;
    }
  }
}

// guess_supports, then min_norm._on_simplex (clamped at 0, divided by the sum taken
// in order): true where lam is certified.
bool certified_weights(const Matrix Q, int K, double tol, int rounds, double* lam) {
  if (!guess_supports(Q, K, tol, rounds, lam)) return false;
  double total = 0.0;
  for (int k = 0; k < K; ++k) {
    lam[k] = std::max(lam[k], 0.0);
    total = k ? total + lam[k] : lam[k];
  }
  for (int k = 0; k < K; ++k) lam[k] = lam[k] / total;
  return true;
}

// certified_weights for up to kGroup problems at once, one per lane: lane l is
// problem Q[l] where active[l]. Every lane does the scalar functions' operations in
// their order, and a lane that has finished is left alone, so each problem gets the
// scalar answer bit for bit, whatever its neighbours. The lanes only serve the CPU:
// their divisions and square roots, serial within a problem, overlap (and share
// vector instructions) across problems. Returns, per lane, whether lam[l] is certified.
constexpr int kGroup = 8;

template <int K>
bool affine_minimisers(const double (&Q)[K][K][kGroup], const double (&r)[K][kGroup],
                       const bool (&S)[K][kGroup], double (&lam)[K][kGroup], bool* good) {
  double L[K][K][kGroup];
  for (int j = 0; j < K; ++j) {
    double d[kGroup];
    for (int l = 0; l < kGroup; ++l) d[l] = S[j][l] ? (Q[j][j][l] * r[j][l]) * r[j][l] : 1.0;
    for (int k = 0; k < j; ++k)
      for (int l = 0; l < kGroup; ++l) d[l] = d[l] - L[j][k][l] * L[j][k][l];
    for (int l = 0; l < kGroup; ++l) {
      good[l] = good[l] && d[l] >= kTiny;  // also NaN; a failed lane's values are unused
      L[j][j][l] = std::sqrt(good[l] ? d[l] : 1.0);
    }
    for (int i = j + 1; i < K; ++i) {
      double a[kGroup];
      for (int l = 0; l < kGroup; ++l)
        a[l] = (S[i][l] && S[j][l]) ? (Q[i][j][l] * r[i][l]) * r[j][l] : 0.0;
      for (int k = 0; k < j; ++k)
        for (int l = 0; l < kGroup; ++l) a[l] = a[l] - L[i][k][l] * L[j][k][l];
      for (int l = 0; l < kGroup; ++l) L[i][j][l] = a[l] / L[j][j][l];
    }
  }
  double z[K][kGroup], y[K][kGroup];
  for (int i = 0; i < K; ++i)
    for (int l = 0; l < kGroup; ++l) z[i][l] = S[i][l] ? r[i][l] : 0.0;
  for (int j = 0; j < K; ++j) {  // L z = r_S
    for (int l = 0; l < kGroup; ++l) z[j][l] = z[j][l] / L[j][j][l];
    for (int i = j + 1; i < K; ++i)
      for (int l = 0; l < kGroup; ++l) z[i][l] = z[i][l] - L[i][j][l] * z[j][l];
  }
  for (int j = K - 1; j >= 0; --j) {  // L^T y = z
    for (int l = 0; l < kGroup; ++l) y[j][l] = z[j][l] / L[j][j][l];
    for (int i = 0; i < j; ++i)
      for (int l = 0; l < kGroup; ++l) z[i][l] = z[i][l] - L[j][i][l] * y[j][l];
  }
  double total[kGroup];
  for (int k = 0; k < K; ++k)
    for (int l = 0; l < kGroup; ++l) {
      lam[k][l] = r[k][l] * y[k][l];
      total[l] = k ? total[l] + lam[k][l] : lam[k][l];
    }
  bool any = false;
  for (int l = 0; l < kGroup; ++l) {
    good[l] = good[l] && total[l] > 0.0;
    any |= good[l];
  }
  for (int k = 0; k < K; ++k)
    for (int l = 0; l < kGroup; ++l) lam[k][l] = lam[k][l] / (good[l] ? total[l] : 1.0);
  return any;
}

template <int K>
void certified_weights_group(const Matrix* Qs, const bool* active, double tol, int rounds,
                             double (*out)[kMaxK], bool* certified) {
  double Q[K][K][kGroup], sd[K][kGroup], r[K][kGroup], vertex[kGroup], lam[K][kGroup];
  bool S[K][kGroup], open[kGroup];
  for (int l = 0; l < kGroup; ++l) {
    open[l] = active[l];
    certified[l] = false;
    vertex[l] = kInf;
    for (int i = 0; i < K; ++i)
      for (int j = 0; j < K; ++j) Q[i][j][l] = active[l] ? Qs[l][i][j] : (i == j);
  }
  for (int k = 0; k < K; ++k)
    for (int l = 0; l < kGroup; ++l) {
      sd[k][l] = std::sqrt(std::max(Q[k][k][l], 0.0));
      r[k][l] = 1.0 / std::max(sd[k][l], kTiny);
      vertex[l] = std::min(vertex[l], Q[k][k][l]);
      S[k][l] = true;
    }
  const double rounding = kRounding * K * kEps;
  for (int left = rounds;; --left) {
    bool good[kGroup];
    for (int l = 0; l < kGroup; ++l) good[l] = open[l];
    affine_minimisers<K>(Q, r, S, lam, good);
    for (int l = 0; l < kGroup; ++l) open[l] = good[l];  // guess_supports: false
    double v[K][kGroup], f[kGroup], s[kGroup], root_f[kGroup];
    bool positive[kGroup], violated[K][kGroup], any_violated[kGroup], below[kGroup];
    for (int l = 0; l < kGroup; ++l) positive[l] = true;
    for (int k = 0; k < K; ++k)
      for (int l = 0; l < kGroup; ++l) positive[l] = positive[l] && (!S[k][l] || lam[k][l] > 0.0);
    for (int i = 0; i < K; ++i) {
      for (int l = 0; l < kGroup; ++l) v[i][l] = Q[i][0][l] * lam[0][l];
      for (int j = 1; j < K; ++j)
        for (int l = 0; l < kGroup; ++l) v[i][l] = v[i][l] + Q[i][j][l] * lam[j][l];
    }
    for (int i = 0; i < K; ++i)
      for (int l = 0; l < kGroup; ++l) {
        f[l] = i ? f[l] + lam[i][l] * v[i][l] : lam[i][l] * v[i][l];
        s[l] = i ? s[l] + lam[i][l] * sd[i][l] : lam[i][l] * sd[i][l];
      }
    for (int l = 0; l < kGroup; ++l) {
      root_f[l] = std::sqrt(std::max(f[l], 0.0));
      any_violated[l] = false;
    }
    for (int i = 0; i < K; ++i)
      for (int l = 0; l < kGroup; ++l) {
        violated[i][l] = f[l] - v[i][l] > tol * sd[i][l] * root_f[l] +
                                              rounding * s[l] * (sd[i][l] + s[l]);
        any_violated[l] = any_violated[l] || violated[i][l];
      }
    bool any_open = false;
    for (int l = 0; l < kGroup; ++l) {
      below[l] = f[l] + rounding * s[l] * s[l] <= vertex[l] * (1.0 + 2.0 * rounding);
      if (open[l] && positive[l] && !any_violated[l] && below[l]) {
        certified[l] = true;
        open[l] = false;
        for (int k = 0; k < K; ++k) out[l][k] = lam[k][l];
      }
      if (left == 0) open[l] = false;
      any_open |= open[l];
    }
    if (!any_open) break;
    for (int l = 0; l < kGroup; ++l) {
      if (!open[l]) continue;
      if (positive[l]) {  // add the row that fails the per-row test most (row 0 if none)
        int add = 0;
        double best = -kInf;
        for (int i = 0; i < K; ++i) {
          const double score = (violated[i][l] && !S[i][l])
                                   ? (f[l] - v[i][l]) / std::max(sd[i][l], 1e-300) : -kInf;
          if (score > best) best = score, add = i;
        }
        S[add][l] = true;
      } else {
        for (int k = 0; k < K; ++k) S[k][l] = S[k][l] && lam[k][l] > 0.0;
      }
    }
  }
  for (int l = 0; l < kGroup; ++l) {  // certified_weights: on the simplex
    if (!certified[l]) continue;
    double total = 0.0;
    for (int k = 0; k < K; ++k) {
      out[l][k] = std::max(out[l][k], 0.0);
      total = k ? total + out[l][k] : out[l][k];
    }
    for (int k = 0; k < K; ++k) out[l][k] = out[l][k] / total;
  }
}

// One min-norm problem q (K x K, row-major) normalised as min_norm._normalise_entries
// does: e from the largest diagonal entry (0 unless it is positive and finite),
// Qn = (Q 2^-e + (Q 2^-e)^T) / 2, in double.
template <typename T>
uint8_t solve_gram(const T* q, int K, double tol, int rounds, double* lam, int64_t* exponent) {
  double top = 0.0;
  for (int k = 0; k < K; ++k) {
    const double d = static_cast<double>(q[k * K + k]);
    if (std::isnan(d) || d > top) top = d;
  }
  int e = 0;
  if (top > 0.0 && std::isfinite(top)) std::frexp(top, &e);
  *exponent = e;
  Matrix Qn;
  for (int i = 0; i < K; ++i)
    for (int j = 0; j < K; ++j)
      Qn[i][j] = (scale2(static_cast<double>(q[i * K + j]), -e) +
                  scale2(static_cast<double>(q[j * K + i]), -e)) * 0.5;
  return certified_weights(Qn, K, tol, rounds, lam) ? kDone : kUnsolved;
}

// max_k Q_kk, NaN if any of them is (once NaN, top compares false and stays).
inline double largest_diagonal(const Matrix Q, int K) {
  double top = 0.0;
  for (int k = 0; k < K; ++k)
    if (std::isnan(Q[k][k]) || Q[k][k] > top) top = Q[k][k];
  return top;
}

// A tile's min-norm problem: Q, its Gram formed from 2^-e G^b, normalised by 2^-shift
// for the solver (largest diagonal entry in [1/2, 1)). kDone when Q is ready for the
// solver, else the tile's final status.
template <int K, typename T>
uint8_t tile_problem(const T* tile, int64_t ld, int64_t width, Matrix Q, int* e_out,
                     int* shift_out, int* zero_row) {
  int e = 0;
  // A zero row (a language absent from the bucket; all of them where a bucket has no
  // gradient) puts the optimum at its vertex: weights e_k, update 0, value 0, which
  // the Cholesky of the full support cannot reach.
  auto all_zero = [&]() {
    for (int i = 0; i < K; ++i)
      for (int j = 0; j < K; ++j) Q[i][j] = 0.0;
    *e_out = 0;
    *shift_out = 0;
    *zero_row = 0;
    return kZeroRow;
  };
  double top;
  if (std::is_same<T, float>::value) {
    // Exact products in double: no float32 bucket under- or overflows there, so the
    // Gram is formed as it is (e = 0); only zeros and non-finite entries stand out.
    tile_gram<K>(tile, ld, width, 1.0, 1.0, Q);
    top = largest_diagonal(Q, K);
    if (!(top > 0.0) || !std::isfinite(top)) {
      const double amax = tile_amax(tile, ld, K, width);
      if (!std::isfinite(amax)) return kNonFinite;
      if (amax == 0.0) return all_zero();
    }
  } else {
    // A float64 bucket is scaled by 2^-e, its largest entry into [2^(H-1), 2^H),
    // before its Gram is formed. Formed as it comes, a row far below the largest
    // (1e-35 of it at entries of 1e-145, say) would have its squares flushed to zero
    // and pass for a zero row. High in the range, every square down to 1e-290 of
    // the largest is a normal number, so the Gram's only rounding below float64's
    // normal range is the one division that normalises it for the solver. And the
    // Gram of 2^k G is then that of G, bit for bit.
    const double amax = tile_amax(tile, ld, K, width);
    if (!std::isfinite(amax)) return kNonFinite;
    if (amax == 0.0) return all_zero();
    std::frexp(amax, &e);
    e -= kHeadroom;
    double f1, f2;
    pow2_factors(-e, &f1, &f2);
    tile_gram<K>(tile, ld, width, f1, f2, Q);
    top = largest_diagonal(Q, K);
  }
  if (!std::isfinite(top)) return kNonFinite;
  *e_out = e;
  int shift;
  std::frexp(top, &shift);  // Qn = Q * 2^-shift, largest diagonal entry in [1/2, 1)
  // top is in [4^(H-1), width 4^H] for a float64 bucket and within float32's squared
  // range otherwise, so 2^-shift is a normal number and multiplying by it rounds
  // exactly as ldexp does (one library call per tile instead of K^2).
  const double factor = std::ldexp(1.0, -shift);
  for (int i = 0; i < K; ++i)
    for (int j = 0; j < K; ++j) Q[i][j] = Q[i][j] * factor;
  *shift_out = shift;
  // A nonzero row far below the largest (refmoo._scale.rows_in_range): the eager
  // path names it. A float32 row is zero exactly when its exact squared norm is.
  const double floor = std::ldexp(1.0, kRelativeFloorExponent);
  *zero_row = -1;
  for (int k = 0; k < K; ++k) {
    if (!(Q[k][k] < floor)) continue;
    const bool zero = std::is_same<T, float>::value
                          ? Q[k][k] == 0.0 : tile_amax(tile + k * ld, ld, 1, width) == 0.0;
    if (!zero) return kOutOfRange;
    if (*zero_row < 0) *zero_row = k;
  }
  return *zero_row < 0 ? kDone : kZeroRow;
}

// The update of a tile whose problem (tile_problem: Q, e, shift) has certified
// weights lam, written into out; its status.
template <int K, typename T>
uint8_t tile_update(const T* tile, int64_t ld, int64_t width, const Matrix Q, int e,
                    int shift, const double* lam, T* out) {
  T w[kMaxK];
  double bound = 0.0;  // sum_k |w_k| ||g_k|| >= |update_c| (up to rounding), unscaled
  double norms[kMaxK];
  for (int k = 0; k < K; ++k) {
    w[k] = static_cast<T>(lam[k]);
    norms[k] = std::sqrt(Q[k][k]);
    bound += std::fabs(static_cast<double>(w[k])) * norms[k];
  }
  // A weight below T's normal range rounds with an absolute error up to u tiny; where
  // that costs more than the rounding of the normal weights (refmoo._scale.weights_fit),
  // the eager path names the bucket.
  const double tiny_t = static_cast<double>(std::numeric_limits<T>::min());
  double spread = 0.0;
  for (int k = 0; k < K; ++k) spread += std::fabs(lam[k]) * norms[k];
  for (int k = 0; k < K; ++k)
    if (lam[k] != 0.0 && std::fabs(lam[k]) < tiny_t && tiny_t * norms[k] > spread)
      return kOutOfRange;
  bound = scale2(bound, e + (shift + 1) / 2 + 1);  // sqrt(2^shift) <= 2^((shift+1)/2), spare 2
  const bool may_overflow = !(bound < static_cast<double>(std::numeric_limits<T>::max()));
  // Row by row, so that each loop is one vector operation over the columns; every
  // entry still gets w_0 g_0 + w_1 g_1 + ... added in that order.
  for (int64_t c = 0; c < width; ++c) out[c] = w[0] * tile[c];
  for (int k = 1; k < K; ++k) {
    const T* g = tile + k * ld;
    for (int64_t c = 0; c < width; ++c) out[c] = out[c] + w[k] * g[c];
  }
  if (may_overflow)
    for (int64_t c = 0; c < width; ++c)
      if (!std::isfinite(out[c])) return kOverflow;
  return kDone;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mgda_tiles(const at::Tensor& G, int64_t width,
                                                           double tol, int64_t rounds,
                                                           at::Tensor out) {
  TORCH_CHECK(G.dim() == 2 && G.stride(1) == 1, "G must be K x D with unit column stride");
  TORCH_CHECK(G.device().is_cpu() && out.device().is_cpu(), "CPU tensors only");
  const int K = static_cast<int>(G.size(0));
  const int64_t D = G.size(1);
  TORCH_CHECK(K >= 1 && K <= kMaxK, "K must be 1..", kMaxK, ", got ", K);
  TORCH_CHECK(width >= 1 && D % width == 0, "D must be a multiple of width");
  TORCH_CHECK(out.is_contiguous() && out.numel() == D && out.scalar_type() == G.scalar_type(),
              "out must be a contiguous D-vector of G's dtype");
  const int64_t tiles = D / width;
  auto lam = at::empty({tiles, K}, G.options().dtype(at::kDouble));
  auto exponent = at::empty({tiles}, G.options().dtype(at::kLong));
  auto status = at::empty({tiles}, G.options().dtype(at::kByte));
  const int64_t ld = G.stride(0);
  double* lam_p = lam.data_ptr<double>();
  int64_t* e_p = exponent.data_ptr<int64_t>();
  uint8_t* status_p = status.data_ptr<uint8_t>();
  auto run = [&](auto* g, auto* o) {
    auto for_k = [&](auto k) {
      constexpr int kK = decltype(k)::value;
      // About 16 KB of G per grain: small enough to balance threads, large enough
      // that scheduling costs nothing next to the tiles.
      const int64_t grain = std::max<int64_t>(1, 4096 / (kK * width));
      at::parallel_for(0, tiles, grain, [&](int64_t lo, int64_t hi) {
        // Up to kGroup tiles at a time: their Grams, their problems solved side by
        // side (certified_weights_group), their updates, as many tiles as stay in a
        // core's L2 cache until their updates are written (about 256 KB).
        using Entry = std::remove_pointer_t<decltype(g)>;
        const int64_t span = std::max<int64_t>(
            1, std::min<int64_t>(kGroup, (int64_t{256} << 10) / (kK * width * sizeof(Entry))));
        for (int64_t t0 = lo; t0 < hi; t0 += span) {
          const int n = static_cast<int>(std::min<int64_t>(span, hi - t0));
          Matrix Q[kGroup];
          int e[kGroup] = {}, shift[kGroup] = {};
          bool pending[kGroup] = {}, certified[kGroup];
          double lam[kGroup][kMaxK];
          for (int l = 0; l < n; ++l) {
            int zero_row = -1;
            const uint8_t status = tile_problem<kK>(g + (t0 + l) * width, ld, width, Q[l],
                                                    e + l, shift + l, &zero_row);
            pending[l] = status == kDone;
            status_p[t0 + l] = status;
            e_p[t0 + l] = e[l];
            if (status == kZeroRow) {
              double* w = lam_p + (t0 + l) * kK;
              for (int k = 0; k < kK; ++k) w[k] = k == zero_row ? 1.0 : 0.0;
              status_p[t0 + l] = tile_update<kK>(g + (t0 + l) * width, ld, width, Q[l], e[l],
                                                 shift[l], w, o + (t0 + l) * width);
            }
          }
          certified_weights_group<kK>(Q, pending, tol, static_cast<int>(rounds), lam,
                                      certified);
          for (int l = 0; l < n; ++l) {
            if (!pending[l]) continue;
            if (!certified[l]) {
              status_p[t0 + l] = kUnsolved;
              continue;
            }
            std::copy(lam[l], lam[l] + kK, lam_p + (t0 + l) * kK);
            status_p[t0 + l] = tile_update<kK>(g + (t0 + l) * width, ld, width, Q[l], e[l],
                                               shift[l], lam[l], o + (t0 + l) * width);
          }
        }
      });
    };
    switch (K) {
      case 1: return for_k(std::integral_constant<int, 1>{});
      case 2: return for_k(std::integral_constant<int, 2>{});
      case 3: return for_k(std::integral_constant<int, 3>{});
      case 4: return for_k(std::integral_constant<int, 4>{});
      case 5: return for_k(std::integral_constant<int, 5>{});
      case 6: return for_k(std::integral_constant<int, 6>{});
      case 7: return for_k(std::integral_constant<int, 7>{});
      default: return for_k(std::integral_constant<int, 8>{});
    }
  };
  if (G.scalar_type() == at::kFloat)
    run(G.data_ptr<float>(), out.data_ptr<float>());
  else if (G.scalar_type() == at::kDouble)
    run(G.data_ptr<double>(), out.data_ptr<double>());
  else
    TORCH_CHECK(false, "G must be float32 or float64, got ", G.scalar_type());
  return {lam, exponent, status};
}

// The support guesses of min_norm._first_rounds for a batch of Grams Q [B, K, K]:
// (weights [B, K], exponents e [B], status [B]: kDone or kUnsolved).
std::tuple<at::Tensor, at::Tensor, at::Tensor> min_norm_guesses(const at::Tensor& Q, double tol,
                                                                int64_t rounds) {
  TORCH_CHECK(Q.dim() == 3 && Q.size(1) == Q.size(2) && Q.is_contiguous(),
              "Q must be a contiguous [B, K, K] batch");
  TORCH_CHECK(Q.device().is_cpu(), "CPU tensors only");
  const int K = static_cast<int>(Q.size(1));
  TORCH_CHECK(K >= 1 && K <= kMaxK, "K must be 1..", kMaxK, ", got ", K);
  const int64_t B = Q.size(0);
  auto lam = at::empty({B, K}, Q.options().dtype(at::kDouble));
  auto exponent = at::empty({B}, Q.options().dtype(at::kLong));
  auto status = at::empty({B}, Q.options().dtype(at::kByte));
  double* lam_p = lam.data_ptr<double>();
  int64_t* e_p = exponent.data_ptr<int64_t>();
  uint8_t* status_p = status.data_ptr<uint8_t>();
  auto run = [&](auto* q) {
    at::parallel_for(0, B, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b)
        status_p[b] = solve_gram(q + b * K * K, K, tol, static_cast<int>(rounds),
                                 lam_p + b * K, e_p + b);
    });
  };
  if (Q.scalar_type() == at::kFloat)
    run(Q.data_ptr<float>());
  else if (Q.scalar_type() == at::kDouble)
    run(Q.data_ptr<double>());
  else
    TORCH_CHECK(false, "Q must be float32 or float64, got ", Q.scalar_type());
  return {lam, exponent, status};
}

}  // namespace

TORCH_LIBRARY(refmoo_fused, m) {
  m.def("mgda_tiles(Tensor G, int width, float tol, int rounds, Tensor(a!) out)"
        " -> (Tensor, Tensor, Tensor)");
  m.impl("mgda_tiles", c10::DispatchKey::CPU, TORCH_FN(mgda_tiles));
  m.def("min_norm_guesses(Tensor Q, float tol, int rounds) -> (Tensor, Tensor, Tensor)");
  m.impl("min_norm_guesses", c10::DispatchKey::CPU, TORCH_FN(min_norm_guesses));
}
