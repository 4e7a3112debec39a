// x86 dot-product tiers of the integer ZMConv (see zmconv_x86.h for the exactness argument).
// Each kernel carries its own target attribute; nothing here needs per-ISA build flags, and the
// caller only runs a tier that TierAvailable confirmed.
#include "kernels/zmconv_x86.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace dpuemu {
namespace x86 {

const char* IntTierName(IntTier t) {
  switch (t) {
    case IntTier::kAmx: return "amx";
    case IntTier::kAvx512Vnni: return "avx512vnni";
    case IntTier::kAvxVnni: return "avxvnni";
    case IntTier::kAvx2: return "avx2";
    case IntTier::kHighway: return "highway";
  }
  return "?";
}

const char* IntTierIsaName(IntTier t) {
  switch (t) {
    case IntTier::kAmx: return "AMX-INT8";
    case IntTier::kAvx512Vnni: return "AVX512-VNNI";
    case IntTier::kAvxVnni: return "AVX-VNNI";
    case IntTier::kAvx2: return "AVX2";
    case IntTier::kHighway: return "Highway";
  }
  return "?";
}

namespace {

struct CpuFeatures {
  bool avx2 = false, avx512 = false, avx512vnni = false, avxvnni = false, amx = false;
  std::string amx_why;  // empty when AMX is usable
};

uint64_t Xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

CpuFeatures DetectOnce() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const uint64_t xcr0 = osxsave ? Xcr0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6, os_avx512 = (xcr0 & 0xE6) == 0xE6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1;
  const bool vnni512 = (c >> 11) & 1, amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  const bool avxvnni = (a1 >> 4) & 1;
  f.avx2 = os_avx && avx2;
  f.avx512 = os_avx512 && avx512f && avx512bw;
  f.avx512vnni = f.avx512 && vnni512;
  f.avxvnni = f.avx2 && avxvnni;
  if (!(amx_tile && amx_int8)) {
    f.amx_why = "the CPU lacks AMX-INT8";
  } else if (!f.avx512) {
    f.amx_why = "AMX-INT8 needs AVX-512 for its epilogue, which the OS does not enable";
  } else {
    // Linux enables the 8 KiB tile-data state per process on request (XFEATURE_XTILEDATA = 18).
    constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
      f.amx_why = std::string("Linux refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM): ") +
                  std::strerror(errno);
    } else if ((Xcr0() & 0x60000) != 0x60000) {
      f.amx_why = "the OS does not enable the AMX tile state (XCR0 bits 17-18)";
    } else {
      f.amx = true;
    }
  }
  return f;
}

const CpuFeatures& Features() {
  static const CpuFeatures f = DetectOnce();
  return f;
}

}  // namespace

bool TierAvailable(IntTier t, std::string* why) {
  const CpuFeatures& f = Features();
  switch (t) {
    case IntTier::kAmx:
      if (!f.amx) *why = f.amx_why;
      return f.amx;
    case IntTier::kAvx512Vnni:
      if (!f.avx512vnni) *why = "the CPU (or OS) lacks AVX-512 VNNI";
      return f.avx512vnni;
    case IntTier::kAvxVnni:
      if (!f.avxvnni) *why = "the CPU lacks AVX-VNNI";
      return f.avxvnni;
    case IntTier::kAvx2:
      if (!f.avx2) *why = "the CPU (or OS) lacks AVX2";
      return f.avx2;
    case IntTier::kHighway:
      return true;
  }
  return false;
}

bool HasAvx512Ppe() { return Features().avx512; }

IntPpe64 MakeIntPpe64(const int32_t* bias, const int32_t* mult, const int32_t* shift, int64_t k,
                      bool leaky, int32_t lrelu_mult, int32_t lrelu_shift, int32_t lo,
                      int32_t hi, int32_t out_zp) {
  IntPpe64 t;
  t.leaky = leaky;
  t.lo = lo;
  t.hi = hi;
  t.out_zp = out_zp;
  for (int l = 0; l < 2; ++l) {
    const int64_t lm = l ? lrelu_mult : 1, ls = l ? lrelu_shift : 0;
    for (int64_t i = 0; i < k; ++i) {
      const int64_t m = int64_t{mult[i]} * lm;  // < 2^27: vpmuldq reads its low 32 bits, signed
      const int64_t s = std::min<int64_t>(shift[i] + ls, 63);
      t.mult[l].push_back(m);
      t.bias_mult[l].push_back(int64_t{bias[i]} * m);
      t.shift[l].push_back(s);
      t.round[l].push_back(s > 0 ? (int64_t{1} << (s - 1)) - 1 : 0);
      t.odd[l].push_back(s > 0 ? 1 : 0);
    }
  }
  for (int64_t i = 0; i < k; ++i) {
    t.dmult.push_back(std::ldexp(static_cast<double>(mult[i]), -shift[i]));
    t.dbias.push_back(std::ldexp(static_cast<double>(int64_t{bias[i]} * mult[i]), -shift[i]));
  }
  return t;
}

namespace {

struct PpeLanes {  // one 8-channel half of a 16-channel block, one case (plain or leaky)
  __m512i mult, bias_mult, shift, round, odd;
};

__attribute__((target("avx512f"))) inline PpeLanes LoadPpeLanes(const IntPpe64& t, int l, int64_t k) {
  return {_mm512_loadu_si512(t.mult[l].data() + k), _mm512_loadu_si512(t.bias_mult[l].data() + k),
          _mm512_loadu_si512(t.shift[l].data() + k), _mm512_loadu_si512(t.round[l].data() + k),
          _mm512_loadu_si512(t.odd[l].data() + k)};
}

// Eight accumulators (int32, sign-extended to int64) -> eight clamped output values in int64.
template <bool kLeaky>
__attribute__((target("avx512f"))) inline __m512i PpeEight(__m512i a, const PpeLanes& p,
                                                           const PpeLanes& n, __m512i zp,
                                                           __m512i lo, __m512i hi) {
  __m512i v = _mm512_add_epi64(_mm512_mul_epi32(a, p.mult), p.bias_mult);
  __m512i s = p.shift, r = p.round, o = p.odd;
  if (kLeaky) {
    const __mmask8 neg = _mm512_cmplt_epi64_mask(v, _mm512_setzero_si512());
    v = _mm512_mask_mov_epi64(v, neg, _mm512_add_epi64(_mm512_mul_epi32(a, n.mult), n.bias_mult));
    s = _mm512_mask_mov_epi64(s, neg, n.shift);
    r = _mm512_mask_mov_epi64(r, neg, n.round);
    o = _mm512_mask_mov_epi64(o, neg, n.odd);
  }
  const __m512i odd = _mm512_and_si512(_mm512_srav_epi64(v, s), o);
  const __m512i y = _mm512_srav_epi64(_mm512_add_epi64(_mm512_add_epi64(v, r), odd), s);
  return _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(y, zp), lo), hi);
}

// acc - comp16 - pixel term, wrapping (vpsubd).
__attribute__((target("avx512f"))) inline __m512i LoadAcc(const int32_t* tile, int64_t px, __m512i comp,
                                                         const uint32_t* pixel) {
  __m512i acc = _mm512_sub_epi32(_mm512_loadu_si512(tile + px * 16), comp);
  if (pixel != nullptr) acc = _mm512_sub_epi32(acc, _mm512_set1_epi32(static_cast<int32_t>(pixel[px])));
  return acc;
}

__attribute__((target("avx512f"))) void PpeIntAvx512Int64(const IntPpe64& t, const int32_t* tile, int64_t npix,
                                                          int64_t k0, int64_t stride, uint8_t* out,
                                                          __m512i comp, const uint32_t* pixel) {
  const PpeLanes p0 = LoadPpeLanes(t, 0, k0), p1 = LoadPpeLanes(t, 0, k0 + 8);
  const PpeLanes n0 = LoadPpeLanes(t, 1, k0), n1 = LoadPpeLanes(t, 1, k0 + 8);
  const __m512i zp = _mm512_set1_epi64(t.out_zp), lo = _mm512_set1_epi64(t.lo), hi = _mm512_set1_epi64(t.hi);
  for (int64_t px = 0; px < npix; ++px) {
    const __m512i acc = LoadAcc(tile, px, comp, pixel);
    const __m512i y0 = PpeEight<true>(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc)), p0, n0, zp, lo, hi);
    const __m512i y1 = PpeEight<true>(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc, 1)), p1, n1, zp, lo, hi);
    // Values lie in [lo, hi] within the output type: the low byte is the u8 or i8 value.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + px * stride),
                     _mm_unpacklo_epi64(_mm512_cvtepi64_epi8(y0), _mm512_cvtepi64_epi8(y1)));
  }
}

// The double path (no leaky ReLU; see IntPpe64).
__attribute__((target("avx512f"))) void PpeIntAvx512Double(const IntPpe64& t, const int32_t* tile, int64_t npix,
                                                           int64_t k0, int64_t stride, uint8_t* out,
                                                           __m512i comp, const uint32_t* pixel) {
  const __m512d m0 = _mm512_loadu_pd(t.dmult.data() + k0), m1 = _mm512_loadu_pd(t.dmult.data() + k0 + 8);
  const __m512d b0 = _mm512_loadu_pd(t.dbias.data() + k0), b1 = _mm512_loadu_pd(t.dbias.data() + k0 + 8);
  const __m512d lo = _mm512_set1_pd(static_cast<double>(t.lo - t.out_zp));
  const __m512d hi = _mm512_set1_pd(static_cast<double>(t.hi - t.out_zp));
  const __m512i zp = _mm512_set1_epi32(static_cast<int32_t>(t.out_zp));
  constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (int64_t px = 0; px < npix; ++px) {
    const __m512i acc = LoadAcc(tile, px, comp, pixel);
    const __m512d t0 = _mm512_fmadd_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(acc)), m0, b0);
    const __m512d t1 = _mm512_fmadd_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(acc, 1)), m1, b1);
    const __m256i y0 = _mm512_cvt_roundpd_epi32(_mm512_min_pd(_mm512_max_pd(t0, lo), hi), kRne);
    const __m256i y1 = _mm512_cvt_roundpd_epi32(_mm512_min_pd(_mm512_max_pd(t1, lo), hi), kRne);
    const __m512i y = _mm512_add_epi32(_mm512_inserti64x4(_mm512_castsi256_si512(y0), y1, 1), zp);
    // Values lie in [lo, hi] within the output type: the low byte is the u8 or i8 value.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + px * stride), _mm512_cvtepi32_epi8(y));
  }
}

__attribute__((target("avx512f"))) void PpeIntAvx512Impl(const IntPpe64& t, const int32_t* tile, int64_t npix,
                                                         int64_t k0, int64_t stride, uint8_t* out,
                                                         const int32_t* comp16, const uint32_t* pixel) {
  const __m512i comp = comp16 ? _mm512_loadu_si512(comp16) : _mm512_setzero_si512();
  if (t.leaky) return PpeIntAvx512Int64(t, tile, npix, k0, stride, out, comp, pixel);
  PpeIntAvx512Double(t, tile, npix, k0, stride, out, comp, pixel);
}

}  // namespace

void PpeIntAvx512(const IntPpe64& t, const int32_t* tile, int64_t npix, int64_t k0, int64_t stride,
                  uint8_t* out, const int32_t* comp16, const uint32_t* pixel) {
  PpeIntAvx512Impl(t, tile, npix, k0, stride, out + k0, comp16, pixel);
}

VnniWeights PackVnniWeights(const uint8_t* w, bool w_signed, int32_t w_zp, int64_t k, int64_t taps) {
  VnniWeights v;
  v.k = k;
  v.taps = taps;
  v.taps64 = (taps + 63) / 64 * 64;
  v.w.assign(static_cast<size_t>(k * v.taps64), 0);
  v.wsum.assign(static_cast<size_t>(k), 0);
  // w' = w - w_zp spans at most 255 values (w has 256): shifting by z = -128 - min w' makes every
  // w'' = w' + z a signed byte; z = 0 when w' already is one. Plain loops: they vectorize.
  const int64_t n = k * taps;
  int32_t lo = 0, hi = 0;
  if (w_signed) {
    int8_t mn = 127, mx = -128;
    for (int64_t i = 0; i < n; ++i) {
      mn = std::min(mn, static_cast<int8_t>(w[i]));
      mx = std::max(mx, static_cast<int8_t>(w[i]));
    }
    if (n > 0) lo = std::min(0, mn - w_zp), hi = std::max(0, mx - w_zp);
  } else {
    uint8_t mn = 255, mx = 0;
    for (int64_t i = 0; i < n; ++i) {
      mn = std::min(mn, w[i]);
      mx = std::max(mx, w[i]);
    }
    if (n > 0) lo = std::min(0, mn - w_zp), hi = std::max(0, mx - w_zp);
  }
  v.z = lo >= -128 && hi <= 127 ? 0 : -128 - lo;
  // w'' = w + (z - w_zp) is a signed byte, so adding the shift mod 256 to the byte gives its bits.
  const uint8_t shift = static_cast<uint8_t>(v.z - w_zp);
  std::vector<int8_t> row(static_cast<size_t>(taps));
  for (int64_t i = 0; i < k; ++i) {
    const uint8_t* src = w + i * taps;
    int64_t sum = 0;
    for (int64_t t = 0; t < taps; ++t) {
      row[static_cast<size_t>(t)] = static_cast<int8_t>(static_cast<uint8_t>(src[t] + shift));
      sum += row[static_cast<size_t>(t)];
    }
    v.wsum[static_cast<size_t>(i)] = static_cast<int32_t>(static_cast<uint32_t>(sum));  // mod 2^32
    int8_t* dst = v.w.data() + (i / 16) * (v.taps64 / 4) * 64 + (i % 16) * 4;
    int64_t t = 0;
    for (; t + 4 <= taps; t += 4) std::memcpy(dst + t * 16, row.data() + t, 4);
    for (; t < taps; ++t) dst[(t / 4) * 64 + t % 4] = row[static_cast<size_t>(t)];
  }
  return v;
}

namespace {

// The padded input as bytes a (x, or x XOR 0x80 for i8); padding holds a_zp. Per thread, reused.
struct X86Scratch {
  std::vector<uint8_t> xpad, im2col;
  std::vector<int32_t> comp;
  std::vector<int64_t> tap_off;
  std::vector<uint32_t> pixel, pixel_in;
  alignas(64) int32_t tile[4 * 64 * 16];
};
thread_local X86Scratch g_scratch;

uint8_t ActivationZp(const VnniConv& a) {
  return static_cast<uint8_t>(a.x_signed ? a.x_zp + 128 : a.x_zp);
}

const uint8_t* PadInput(const VnniConv& a) {
  // Unpadded u8 input (1x1 layers, mostly) is read in place.
  if (!a.x_signed && a.hp == a.h && a.wp == a.w) return a.x;
  std::vector<uint8_t>& xp = g_scratch.xpad;
  xp.assign(static_cast<size_t>(a.hp * a.wp * a.c), ActivationZp(a));
  const uint8_t flip = a.x_signed ? 0x80 : 0;
  for (int64_t y = 0; y < a.h; ++y) {
    const uint8_t* src = a.x + y * a.w * a.c;
    uint8_t* dst = xp.data() + ((y + a.pad_top) * a.wp + a.pad_left) * a.c;
    if (flip == 0) {
      std::memcpy(dst, src, static_cast<size_t>(a.w * a.c));
    } else {
      for (int64_t i = 0; i < a.w * a.c; ++i) dst[i] = src[i] ^ flip;
    }
  }
  return xp.data();
}

// comp[k] = a_zp * sum w' (mod 2^32), subtracted from every accumulator of channel k.
const int32_t* Compensation(const VnniConv& a) {
  std::vector<int32_t>& comp = g_scratch.comp;
  const VnniWeights& w = *a.weights;
  comp.resize(static_cast<size_t>(w.k));
  const uint32_t zp = ActivationZp(a);
  for (int64_t i = 0; i < w.k; ++i) {
    comp[static_cast<size_t>(i)] = static_cast<int32_t>(zp * static_cast<uint32_t>(w.wsum[static_cast<size_t>(i)]));
  }
  return comp.data();
}

// Per output pixel, z * sum over its window of (a - a_zp) (mod 2^32); empty when z = 0. Each
// padded input pixel's C bytes are summed once (C is a multiple of 16), then each window adds
// its KY x KX pixel sums: a 3x3 layer reads its input once instead of nine times.
const uint32_t* PixelTerms(const VnniConv& a, const uint8_t* xpad) {
  std::vector<uint32_t>& out = g_scratch.pixel;
  const int32_t z = a.weights->z;
  if (z == 0) return nullptr;
  std::vector<uint32_t>& in_sum = g_scratch.pixel_in;
  in_sum.resize(static_cast<size_t>(a.hp * a.wp));
  for (int64_t i = 0; i < a.hp * a.wp; ++i) {
    const uint8_t* px = xpad + i * a.c;
    __m128i acc = _mm_setzero_si128();
    for (int64_t c = 0; c < a.c; c += 16) {
      acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(px + c)),
                                            _mm_setzero_si128()));
    }
    in_sum[static_cast<size_t>(i)] =
        static_cast<uint32_t>(_mm_cvtsi128_si64(acc) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc)));
  }
  out.resize(static_cast<size_t>(a.oh * a.ow));
  const uint32_t base = static_cast<uint32_t>(a.ky * a.kx * a.c) * ActivationZp(a);
  for (int64_t oy = 0; oy < a.oh; ++oy) {
    for (int64_t ox = 0; ox < a.ow; ++ox) {
      uint32_t sum = 0;
      for (int64_t ky = 0; ky < a.ky; ++ky) {
        const uint32_t* row = in_sum.data() + (oy * a.sy + ky) * a.wp + ox * a.sx;
        for (int64_t kx = 0; kx < a.kx; ++kx) sum += row[kx];
      }
      out[static_cast<size_t>(oy * a.ow + ox)] = static_cast<uint32_t>(z) * (sum - base);
    }
  }
  return out.data();
}

}  // namespace

// Every dot-product tier's CPU has AVX2: the 16 channels are two vector subtractions.
__attribute__((target("avx2"))) void Compensate(int32_t* tile, int64_t npix, const int32_t* comp16, const uint32_t* pixel) {
  for (int64_t px = 0; px < npix; ++px) {
    const uint32_t pt = pixel ? pixel[px] : 0;
    for (int c = 0; c < 16; ++c) {
      tile[px * 16 + c] = static_cast<int32_t>(static_cast<uint32_t>(tile[px * 16 + c]) -
                                               static_cast<uint32_t>(comp16[c]) - pt);
    }
  }
}

namespace {

inline int32_t Load32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- AVX-512 VNNI: MR pixels of one output row x NV blocks of 16 channels ----
// Each 4-channel group of an input pixel is broadcast as one 32-bit word and meets the 16
// channels x 4 taps of a weight row (64 bytes) in one vpdpbusd.

constexpr int64_t kChunk = 48;  // pixels per epilogue call

template <int MR, int NV>
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vnni"))) void TileZmm(
    const VnniConv& a, const uint8_t* xpad, int64_t oy, int64_t ox0, int64_t kb0, int32_t* tile, int64_t m_off) {
  __m512i acc[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_si512();
  const VnniWeights& W = *a.weights;
  const int64_t wstride = W.taps64 * 16;
  const int8_t* w0 = W.w.data() + kb0 * wstride;
  const int64_t pix_step = a.sx * a.c;
  for (int64_t ky = 0; ky < a.ky; ++ky) {
    for (int64_t kx = 0; kx < a.kx; ++kx) {
      const uint8_t* xr = xpad + ((oy * a.sy + ky) * a.wp + ox0 * a.sx + kx) * a.c;
      const int8_t* w = w0 + (ky * a.kx + kx) * a.c * 16;
      for (int64_t c = 0; c < a.c; c += 4, w += 64) {
        __m512i wv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_si512(w + v * wstride);
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) {
          const __m512i xb = _mm512_set1_epi32(Load32(xr + m * pix_step + c));
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_dpbusd_epi32(acc[m][v], xb, wv[v]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_store_si512(tile + (v * kChunk + m_off + m) * 16, acc[m][v]);
}

template <int NV>
void TileZmmN(int mr, const VnniConv& a, const uint8_t* xpad, int64_t oy, int64_t ox0, int64_t kb0,
              int32_t* tile, int64_t m_off) {
  switch (mr) {
    case 1: return TileZmm<1, NV>(a, xpad, oy, ox0, kb0, tile, m_off);
    case 2: return TileZmm<2, NV>(a, xpad, oy, ox0, kb0, tile, m_off);
    case 3: return TileZmm<3, NV>(a, xpad, oy, ox0, kb0, tile, m_off);
    case 4: return TileZmm<4, NV>(a, xpad, oy, ox0, kb0, tile, m_off);
    case 5: return TileZmm<5, NV>(a, xpad, oy, ox0, kb0, tile, m_off);
    default: return TileZmm<6, NV>(a, xpad, oy, ox0, kb0, tile, m_off);
  }
}

// ---- AVX-VNNI: MR pixels x 16 channels (two ymm of 8 int32) ----

template <int MR>
__attribute__((target("avx2,fma,avxvnni"))) void TileYmm(const VnniConv& a, const uint8_t* xpad, int64_t oy,
                                                         int64_t ox0, int64_t kb, int32_t* tile, int64_t m_off) {
  __m256i acc[MR][2];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_si256();
  const VnniWeights& W = *a.weights;
  const int8_t* w0 = W.w.data() + kb * W.taps64 * 16;
  const int64_t pix_step = a.sx * a.c;
  for (int64_t ky = 0; ky < a.ky; ++ky) {
    for (int64_t kx = 0; kx < a.kx; ++kx) {
      const uint8_t* xr = xpad + ((oy * a.sy + ky) * a.wp + ox0 * a.sx + kx) * a.c;
      const int8_t* w = w0 + (ky * a.kx + kx) * a.c * 16;
      for (int64_t c = 0; c < a.c; c += 4, w += 64) {
        const __m256i w_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
        const __m256i w_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32));
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) {
          const __m256i xb = _mm256_set1_epi32(Load32(xr + m * pix_step + c));
          acc[m][0] = _mm256_dpbusd_avx_epi32(acc[m][0], xb, w_lo);
          acc[m][1] = _mm256_dpbusd_avx_epi32(acc[m][1], xb, w_hi);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile + (m_off + m) * 16), acc[m][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile + (m_off + m) * 16 + 8), acc[m][1]);
  }
}

void TileYmmN(int mr, const VnniConv& a, const uint8_t* xpad, int64_t oy, int64_t ox0, int64_t kb, int32_t* tile,
              int64_t m_off) {
  switch (mr) {
    case 1: return TileYmm<1>(a, xpad, oy, ox0, kb, tile, m_off);
    case 2: return TileYmm<2>(a, xpad, oy, ox0, kb, tile, m_off);
    case 3: return TileYmm<3>(a, xpad, oy, ox0, kb, tile, m_off);
    case 4: return TileYmm<4>(a, xpad, oy, ox0, kb, tile, m_off);
    case 5: return TileYmm<5>(a, xpad, oy, ox0, kb, tile, m_off);
    default: return TileYmm<6>(a, xpad, oy, ox0, kb, tile, m_off);
  }
}

constexpr int kMR = 6;

void RunVnni(const VnniConv& a, bool zmm) {
  const uint8_t* xpad = PadInput(a);
  const int32_t* comp = Compensation(a);
  const uint32_t* pixel = PixelTerms(a, xpad);
  int32_t* tile = g_scratch.tile;
  const int64_t nkb = a.weights->k / 16;
  const int nv_max = zmm ? 4 : 1;
  for (int64_t oy = 0; oy < a.oh; ++oy) {
    for (int64_t kb = 0; kb < nkb; kb += nv_max) {
      const int nv = static_cast<int>(std::min<int64_t>(nv_max, nkb - kb));
      // Chunks of nearly equal width too (56 pixels: 28 + 28, not 48 + 8).
      const int64_t chunk = (a.ow + (a.ow + kChunk - 1) / kChunk - 1) / ((a.ow + kChunk - 1) / kChunk);
      for (int64_t ox0 = 0; ox0 < a.ow; ox0 += chunk) {
        const int64_t end = std::min(a.ow, ox0 + chunk);
        // Tiles of nearly equal width (14 pixels: 5 + 5 + 4, not 6 + 6 + 2): a narrow tile
        // loads the same weights for fewer dot products.
        const int64_t n = end - ox0, tiles = (n + kMR - 1) / kMR;
        for (int64_t i = 0, ox = ox0; i < tiles; ++i) {
          const int mr = static_cast<int>(n / tiles + (i < n % tiles ? 1 : 0));
          if (!zmm) {
            TileYmmN(mr, a, xpad, oy, ox, kb, tile, ox - ox0);
          } else switch (nv) {
            case 1: TileZmmN<1>(mr, a, xpad, oy, ox, kb, tile, ox - ox0); break;
            case 2: TileZmmN<2>(mr, a, xpad, oy, ox, kb, tile, ox - ox0); break;
            case 3: TileZmmN<3>(mr, a, xpad, oy, ox, kb, tile, ox - ox0); break;
            default: TileZmmN<4>(mr, a, xpad, oy, ox, kb, tile, ox - ox0); break;
          }
          ox += mr;
        }
        for (int v = 0; v < nv; ++v) {
          int32_t* t = tile + v * kChunk * 16;
          a.epilogue(a.ctx, t, end - ox0, oy * a.ow + ox0, (kb + v) * 16, comp + (kb + v) * 16,
                     pixel ? pixel + oy * a.ow + ox0 : nullptr);
        }
      }
    }
  }
}

// ---- AMX-INT8: C[16 pixels][16 channels] += A[16 pixels][64 tap bytes] . B[16 tap quads][16 x 4] ----
// Tiles: C tmm0..3 = (pixel half h, channel block v) for h, v in {0, 1}; A tmm4 + h; B tmm6 + v.
// An A tile reads the padded input directly when its 16 pixels lie in one output row and 64 taps
// stay within one (ky, kx) (C a multiple of 64); otherwise it reads an im2col copy of its pixels.

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

struct AmxA {
  const int64_t* tap_off;  // per 64-tap step: the direct path's offset (ky * wp + kx) * c + c0
  const uint8_t* base[2];  // per half: pixel 0 at tap 0 (direct: the (ky, kx, c) of tap 0 applies)
  int64_t stride[2];
  bool direct[2];
};

template <bool H2, bool V2>
__attribute__((target("avx512f,avx512bw,amx-tile,amx-int8"))) void AmxBlock(const VnniConv& a, const AmxA& A,
                                                                            int64_t kb, int32_t* tile) {
  const VnniWeights& W = *a.weights;
  const int64_t wstride = W.taps64 * 16;
  _tile_zero(0);
  if (V2) _tile_zero(1);
  if (H2) _tile_zero(2);
  if (H2 && V2) _tile_zero(3);
  const int8_t* w = W.w.data() + kb * wstride;
  for (int64_t t0 = 0; t0 < W.taps64; t0 += 64) {
    // Address of tap t0 for each half.
    const uint8_t* ap[2];
    for (int h = 0; h < (H2 ? 2 : 1); ++h) {
      if (A.direct[h]) {
        ap[h] = A.base[h] + A.tap_off[t0 / 64];
      } else {
        ap[h] = A.base[h] + t0;
      }
    }
    _tile_loadd(4, ap[0], A.stride[0]);
    if (H2) _tile_loadd(5, ap[1], A.stride[1]);
    _tile_loadd(6, w + t0 * 16, 64);
    if (V2) _tile_loadd(7, w + wstride + t0 * 16, 64);
    _tile_dpbusd(0, 4, 6);
    if (V2) _tile_dpbusd(1, 4, 7);
    if (H2) _tile_dpbusd(2, 5, 6);
    if (H2 && V2) _tile_dpbusd(3, 5, 7);
  }
  // tile layout [v][32 pixels][16]: C(h, v) at v * 512 + h * 256.
  _tile_stored(0, tile, 64);
  if (V2) _tile_stored(1, tile + 512, 64);
  if (H2) _tile_stored(2, tile + 256, 64);
  if (H2 && V2) _tile_stored(3, tile + 512 + 256, 64);
}

__attribute__((target("avx512f,avx512bw,amx-tile,amx-int8"))) void RunAmx(const VnniConv& a) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int i = 0; i < 8; ++i) {
    cfg.colsb[i] = 64;
    cfg.rows[i] = 16;
  }
  _tile_loadconfig(&cfg);
  const uint8_t* xpad = PadInput(a);
  const int32_t* comp = Compensation(a);
  const uint32_t* pixel = PixelTerms(a, xpad);
  const VnniWeights& W = *a.weights;
  const int64_t npix = a.oh * a.ow, nkb = W.k / 16;
  const uint8_t a_zp = ActivationZp(a);
  std::vector<int64_t>& tap_off = g_scratch.tap_off;
  tap_off.clear();
  for (int64_t t0 = 0; t0 < W.taps64; t0 += 64) {
    const int64_t kyx = t0 / a.c, c0 = t0 % a.c;
    tap_off.push_back(((kyx / a.kx) * a.wp + kyx % a.kx) * a.c + c0);
  }
  std::vector<uint8_t>& col = g_scratch.im2col;
  col.resize(static_cast<size_t>(32 * W.taps64));
  int32_t* tile = g_scratch.tile;
  for (int64_t pix0 = 0; pix0 < npix; pix0 += 32) {
    const int64_t n = std::min<int64_t>(32, npix - pix0);
    AmxA A;
    A.tap_off = tap_off.data();
    for (int h = 0; h < 2; ++h) {
      const int64_t p = pix0 + 16 * h;
      const int64_t oy = p / a.ow, ox = p % a.ow;
      A.direct[h] = a.c % 64 == 0 && ox + 16 <= a.ow && p + 16 <= npix;
      if (A.direct[h]) {
        A.base[h] = xpad + ((oy * a.sy) * a.wp + ox * a.sx) * a.c;
        A.stride[h] = a.sx * a.c;
        continue;
      }
      // im2col rows of this half's pixels (rows past the last pixel hold a_zp and are dropped).
      uint8_t* dst = col.data() + h * 16 * W.taps64;
      A.base[h] = dst;
      A.stride[h] = W.taps64;
      std::memset(dst, a_zp, static_cast<size_t>(16 * W.taps64));
      for (int64_t r = 0; r < 16 && p + r < npix; ++r) {
        const int64_t y = (p + r) / a.ow, x = (p + r) % a.ow;
        uint8_t* row = dst + r * W.taps64;
        for (int64_t ky = 0; ky < a.ky; ++ky) {
          const uint8_t* src = xpad + ((y * a.sy + ky) * a.wp + x * a.sx) * a.c;
          std::memcpy(row + ky * a.kx * a.c, src, static_cast<size_t>(a.kx * a.c));
        }
      }
    }
    const bool h2 = n > 16;
    for (int64_t kb = 0; kb < nkb; kb += 2) {
      const bool v2 = kb + 1 < nkb;
      if (h2 && v2) AmxBlock<true, true>(a, A, kb, tile);
      else if (h2) AmxBlock<true, false>(a, A, kb, tile);
      else if (v2) AmxBlock<false, true>(a, A, kb, tile);
      else AmxBlock<false, false>(a, A, kb, tile);
      for (int v = 0; v < (v2 ? 2 : 1); ++v) {
        int32_t* t = tile + v * 512;
        a.epilogue(a.ctx, t, n, pix0, (kb + v) * 16, comp + (kb + v) * 16, pixel ? pixel + pix0 : nullptr);
      }
    }
  }
  _tile_release();
}

}  // namespace

__attribute__((target("avx512f"))) void Transpose16x16(const float* src, int64_t stride, float* dst) {
  __m512 r[16], a[16], b[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * stride);
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // b[4j + m], 128-bit lane L: element 4L + m of rows 4j..4j + 3.
  for (int j = 0; j < 4; ++j) {
    const __m512d a0 = _mm512_castps_pd(a[4 * j]), a1 = _mm512_castps_pd(a[4 * j + 1]);
    const __m512d a2 = _mm512_castps_pd(a[4 * j + 2]), a3 = _mm512_castps_pd(a[4 * j + 3]);
    b[4 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    b[4 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[4 * j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    b[4 * j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  // Then a 4 x 4 transpose of 128-bit lanes across b[m], b[4 + m], b[8 + m], b[12 + m].
  for (int m = 0; m < 4; ++m) {
    const __m512 c0 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0x88), c1 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0xDD);
    const __m512 c2 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0x88), c3 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0xDD);
    _mm512_storeu_ps(dst + (0 + m) * 16, _mm512_shuffle_f32x4(c0, c2, 0x88));
    _mm512_storeu_ps(dst + (4 + m) * 16, _mm512_shuffle_f32x4(c1, c3, 0x88));
    _mm512_storeu_ps(dst + (8 + m) * 16, _mm512_shuffle_f32x4(c0, c2, 0xDD));
    _mm512_storeu_ps(dst + (12 + m) * 16, _mm512_shuffle_f32x4(c1, c3, 0xDD));
  }
}

VnniSparseWeights PackVnniSparse(const uint8_t* w, bool w_signed, int32_t w_zp, int64_t k, int64_t ky,
                                 int64_t kx, int64_t c, int64_t ow) {
  VnniSparseWeights s;
  s.k = k;
  s.wq4 = (ow + 15) / 16 * 16 + kx - 1;
  s.quads = ky * kx * c / 4;
  const int64_t taps = ky * kx * c, row_bytes = c * s.wq4;
  s.begin.push_back(0);
  for (int64_t i = 0; i < k; ++i) {
    const uint8_t* src = w + i * taps;
    uint32_t sum = 0;
    for (int64_t y = 0; y < ky; ++y) {
      for (int64_t x = 0; x < kx; ++x) {
        for (int64_t q = 0; q < c / 4; ++q) {
          uint32_t w1 = 0, w2 = 0;
          bool any = false, hi = false;
          for (int j = 0; j < 4; ++j) {
            const uint8_t b = src[(y * kx + x) * c + 4 * q + j];
            const int32_t wp = (w_signed ? int32_t{static_cast<int8_t>(b)} : int32_t{b}) - w_zp;
            const int32_t p1 = std::min(127, std::max(-128, wp)), p2 = wp - p1;
            sum += static_cast<uint32_t>(wp);
            any |= wp != 0;
            hi |= p2 != 0;
            w1 |= uint32_t{static_cast<uint8_t>(p1)} << (8 * j);
            w2 |= uint32_t{static_cast<uint8_t>(p2)} << (8 * j);
          }
          if (!any) continue;
          const int64_t off = y * row_bytes + q * s.wq4 * 4 + x * 4;
          s.off.push_back(off);
          s.w.push_back(static_cast<int32_t>(w1));
          if (hi) {
            s.off.push_back(off);
            s.w.push_back(static_cast<int32_t>(w2));
          }
        }
      }
    }
    s.wsum.push_back(static_cast<int32_t>(sum));
    s.begin.push_back(static_cast<int64_t>(s.off.size()));
  }
  s.density = k * s.quads > 0 ? static_cast<double>(s.off.size()) / static_cast<double>(k * s.quads) : 1.0;
  return s;
}

namespace {

// R output rows' 16-channel block kb over pixels [ox0, ox0 + 16 * P) (R * P <= 4 accumulators,
// so narrow layers still feed four per weight quad): per channel the visited quads, stored
// channel-major, then transposed to the epilogue's [pixel][16] tiles, one per row.
template <int P, int R>
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vnni"))) void SparseVnniBlock(
    const VnniSparseWeights& s, const uint8_t* base, int64_t row_step, int64_t kb, int32_t* cm, int32_t* tile) {
  constexpr int kRow = R * P * 16;  // one channel's sums
  for (int64_t kk = 0; kk < 16; ++kk) {
    const int64_t k = kb * 16 + kk;
    __m512i acc[R * P];
    for (int q = 0; q < R * P; ++q) acc[q] = _mm512_setzero_si512();
    for (int64_t j = s.begin[k], end = s.begin[k + 1]; j < end; ++j) {
      const __m512i wv = _mm512_set1_epi32(s.w[j]);
      const uint8_t* x = base + s.off[j];
      for (int r = 0; r < R; ++r) {
        for (int v = 0; v < P; ++v) {
          acc[r * P + v] = _mm512_dpbusd_epi32(acc[r * P + v], _mm512_loadu_si512(x + r * row_step + v * 64), wv);
        }
      }
    }
    for (int q = 0; q < R * P; ++q) _mm512_storeu_si512(cm + kk * kRow + q * 16, acc[q]);
  }
  for (int q = 0; q < R * P; ++q) {
    Transpose16x16(reinterpret_cast<const float*>(cm + q * 16), kRow, reinterpret_cast<float*>(tile + q * 256));
  }
}

}  // namespace

void RunVnniSparse(const VnniConv& a, const VnniSparseWeights& s) {
  const uint8_t* xpad = PadInput(a);
  const uint8_t a_zp = ActivationZp(a);
  // The quad-planar input [hp][c / 4][wq4][4]; columns past the padded width hold a_zp too (they
  // feed only pixels past the row's end, which are discarded).
  const int64_t row_bytes = a.c * s.wq4;
  std::vector<uint8_t>& qp = g_scratch.im2col;
  qp.resize(static_cast<size_t>(a.hp * row_bytes));
  for (int64_t y = 0; y < a.hp; ++y) {
    for (int64_t q = 0; q < a.c / 4; ++q) {
      uint8_t* dst = qp.data() + y * row_bytes + q * s.wq4 * 4;
      const uint8_t* src = xpad + y * a.wp * a.c + q * 4;
      for (int64_t x = 0; x < a.wp; ++x) std::memcpy(dst + x * 4, src + x * a.c, 4);
      std::memset(dst + a.wp * 4, a_zp, static_cast<size_t>((s.wq4 - a.wp) * 4));
    }
  }
  std::vector<int32_t>& comp = g_scratch.comp;
  comp.resize(static_cast<size_t>(s.k));
  for (int64_t i = 0; i < s.k; ++i) {
    comp[static_cast<size_t>(i)] = static_cast<int32_t>(uint32_t{a_zp} * static_cast<uint32_t>(s.wsum[static_cast<size_t>(i)]));
  }
  alignas(64) int32_t cm[16 * 64];
  int32_t* tile = g_scratch.tile;
  const int64_t row_step = a.sy * row_bytes;
  const int64_t vecs_row = (std::min<int64_t>(64, a.ow) + 15) / 16;
  for (int64_t oy = 0; oy < a.oh;) {
    // Narrow rows: several output rows per block, so each weight quad still feeds 4 vectors.
    const int64_t rows = std::min<int64_t>(std::max<int64_t>(1, 4 / vecs_row), a.oh - oy);
    for (int64_t kb = 0; kb < s.k / 16; ++kb) {
      for (int64_t ox0 = 0; ox0 < a.ow; ox0 += 64) {
        const int64_t n = std::min<int64_t>(64, a.ow - ox0);
        const uint8_t* base = qp.data() + oy * row_step + ox0 * 4;
        const int64_t vecs = (n + 15) / 16;
        switch (vecs * 8 + rows) {
          case 8 + 1: SparseVnniBlock<1, 1>(s, base, row_step, kb, cm, tile); break;
          case 8 + 2: SparseVnniBlock<1, 2>(s, base, row_step, kb, cm, tile); break;
          case 8 + 3: SparseVnniBlock<1, 3>(s, base, row_step, kb, cm, tile); break;
          case 8 + 4: SparseVnniBlock<1, 4>(s, base, row_step, kb, cm, tile); break;
          case 16 + 1: SparseVnniBlock<2, 1>(s, base, row_step, kb, cm, tile); break;
          case 16 + 2: SparseVnniBlock<2, 2>(s, base, row_step, kb, cm, tile); break;
          case 24 + 1: SparseVnniBlock<3, 1>(s, base, row_step, kb, cm, tile); break;
          default: SparseVnniBlock<4, 1>(s, base, row_step, kb, cm, tile); break;
        }
        const int64_t per_row = vecs * 16 * 16;  // a row's tile: its vecs x 16 pixels x 16 channels
        for (int64_t r = 0; r < rows; ++r) {
          a.epilogue(a.ctx, tile + r * per_row, n, (oy + r) * a.ow + ox0, kb * 16, comp.data() + kb * 16, nullptr);
        }
      }
    }
    oy += rows;
  }
}

void RunVnniTier(IntTier t, const VnniConv& a) {
  switch (t) {
    case IntTier::kAmx: return RunAmx(a);
    case IntTier::kAvx512Vnni: return RunVnni(a, true);
    default: return RunVnni(a, false);
  }
}

}  // namespace x86
}  // namespace dpuemu
