// Integer ZMConv tiers with x86 dot-product instructions that Highway 1.0.3 lacks: AMX-INT8
// (tdpbusd), AVX-512 VNNI (vpdpbusd zmm) and AVX-VNNI (vpdpbusd ymm). Internal to kernels/zmconv.cc,
// which validates the task, chooses the tier and runs the shared integer PPE (EpilogueInt).
//
// Exactness. The definition is acc = sum (x - x_zp) * (w - w_zp) in wrapping int32. These
// instructions multiply an unsigned byte by a signed byte and add four products into int32
// without saturation (mod 2^32). The kernels therefore compute with
//   a    = x (u8 activations) or x XOR 0x80 = x + 128 (i8 activations), a byte in [0, 255];
//   a_zp = x_zp, or x_zp + 128: so x - x_zp = a - a_zp exactly;
//   w'   = w - w_zp spans at most 256 consecutive values, so w'' = w' + z is a signed byte for
//          z = -128 - min w' (z = 0 when every w' is one already: i8 weights with w_zp = 0, u8
//          weights with w_zp = 128);
// and with S(p) = sum over pixel p's window of (a - a_zp):
//   sum (a - a_zp) * w' = sum (a - a_zp) * (w'' - z)
//                       = sum a * w''  -  a_zp * sum w''  -  z * S(p).
// The first sum is what the instructions produce, the second a per-output-channel constant, the
// third a per-pixel term (zero when z = 0); both are subtracted after accumulation. All of it is
// taken mod 2^32, and mod-2^32 arithmetic is a ring, so the result
// equals the reference's wrapping int32 sum bit for bit. Padding pixels and map-0 elements hold
// a_zp (they read as x_zp), so they add nothing to S(p) and a_zp * w'' - a_zp * w'' = 0 to the rest; taps padded up to
// the AMX tile depth carry w'' = 0 and are outside S(p), so they contribute nothing.
#ifndef DPUEMU_KERNELS_ZMCONV_X86_H_
#define DPUEMU_KERNELS_ZMCONV_X86_H_

#include <cstdint>
#include <string>
#include <vector>

namespace dpuemu {
namespace x86 {

// Integer tiers, fastest first. kAvx2 is the Highway int16 kernel compiled for AVX2, kHighway
// the same kernel on Highway's own choice of target (tests select it per target).
enum class IntTier { kAmx, kAvx512Vnni, kAvxVnni, kAvx2, kHighway };

const char* IntTierName(IntTier t);     // as requested: "amx", "avx512vnni", ...
const char* IntTierIsaName(IntTier t);  // as reported: "AMX-INT8", "AVX512-VNNI", "AVX-VNNI"
// Whether this CPU (and OS) runs a dot-product tier (kAmx..kAvxVnni); `why` says what is missing.
// For AMX this asks Linux once per process for the tile-data state (ARCH_REQ_XCOMP_PERM).
bool TierAvailable(IntTier t, std::string* why);

// Weights w'' = w - w_zp + z in the VNNI 4-byte layout: [k / 16][taps64 / 4][16 channels][4 taps],
// taps in (ky, kx, c) order and padded with zeros to a multiple of 64 (the AMX tile depth). The
// [16][4] rows are also the AMX B-tile rows.
struct VnniWeights {
  int32_t z = 0;  // w'' = w' + z
  std::string why;
  int64_t k = 0, taps = 0, taps64 = 0;
  std::vector<int8_t> w;  // w''
  std::vector<int32_t> wsum;  // per channel, sum over taps of w'' (for the a_zp compensation)
};
// `w` holds the weights as [k][taps] bytes (u8, or i8 when `w_signed`); w' = w - w_zp.
VnniWeights PackVnniWeights(const uint8_t* w, bool w_signed, int32_t w_zp, int64_t k, int64_t taps);

// Receives `npix` consecutive output pixels from flat pixel index `pix0` (oy * ow + ox), channels
// k0..k0 + 15, as int32 [npix][16] raw sums; acc = sum - comp16[c] - pixel[px] (wrapping int32;
// `pixel` null: no pixel term). The epilogue may compensate `tile` in place.
using EpilogueFn = void (*)(const void* ctx, int32_t* tile, int64_t npix, int64_t pix0, int64_t k0,
                            const int32_t* comp16, const uint32_t* pixel);
// Subtracts the compensation terms (as EpilogueFn describes) from a [npix][16] tile in place.
void Compensate(int32_t* tile, int64_t npix, const int32_t* comp16, const uint32_t* pixel);

struct VnniConv {
  const uint8_t* x;  // dense input [h][w][c], u8 or i8 bytes
  bool x_signed;
  int32_t x_zp;
  int64_t h, w, c, pad_top, pad_left, hp, wp;  // hp, wp: padded sizes
  int64_t ky, kx, sy, sx, oh, ow;
  const VnniWeights* weights;
  EpilogueFn epilogue;
  const void* ctx;
};

// Computes every output pixel and channel through `epilogue`. The tier must be available.
void RunVnniTier(IntTier t, const VnniConv& a);

// The integer PPE for u8/i8 outputs (kernels/ppe.h PpeInt, bit for bit) in exact int64 arithmetic
// on AVX-512F, for the tiers whose CPUs have it (AMX, AVX-512 VNNI). Per output channel, with
// acc and bias int32, mult <= 65535 and mult * lrelu_mult < 2^27 (so each product is one signed
// 32 x 32 -> 64-bit multiply, vpmuldq):
//   v  = acc * mult + bias * mult               (= (acc + bias) * mult, |v| < 2^49)
//   v < 0 with leaky ReLU: v = acc * mult * lrelu_mult + bias * mult * lrelu_mult, and the shift
//        is shift + lrelu_shift                    (|v| < 2^60)
//   round half to even of v / 2^s:  (v + 2^(s-1) - 1 + bit s of v) >> s  (arithmetic shift), for
//        s >= 1: with v = q * 2^s + r, 0 <= r < 2^s, it adds 1 to q = v >> s exactly when r > 2^(s-1),
//        or r = 2^(s-1) and q is odd (bit s of v); s = 0 adds nothing. s is capped at 63: for
//        s >= 62 every |v| < 2^60 rounds to 0 either way (RoundShiftHalfEven), and no sum overflows
//        (|v| + 2^62 < 2^63);
//   then + out_zp and the clamp to [lo, hi], in int64 (nothing wraps).
// Without leaky ReLU it runs in double instead, in fewer operations and as exactly:
//   t = acc * (mult * 2^-s) + bias * mult * 2^-s   (one FMA; both constants are exact doubles,
//        and the exact result V * 2^-s with V = (acc + bias) * mult, |V| < 2^48, has at most 49
//        significant bits, so the FMA's single rounding leaves it exact),
//   clamp t to [lo - out_zp, hi - out_zp] (integers, so clamping and rounding commute), round
//   half to even to int32 (embedded rounding, whatever MXCSR says), + out_zp.
struct IntPpe64 {
  // Per output channel, as int64 lanes: [0] the plain case, [1] the leaky case (v < 0).
  std::vector<int64_t> mult[2], bias_mult[2], shift[2], round[2], odd[2];  // round: 2^(s-1) - 1 or 0
  std::vector<double> dmult, dbias;  // the double path: mult * 2^-s, bias * mult * 2^-s
  bool leaky = false;
  int64_t lo = 0, hi = 0, out_zp = 0;
};
IntPpe64 MakeIntPpe64(const int32_t* bias, const int32_t* mult, const int32_t* shift, int64_t k,
                      bool leaky, int32_t lrelu_mult, int32_t lrelu_shift, int32_t lo,
                      int32_t hi, int32_t out_zp);
bool HasAvx512Ppe();  // AVX-512F usable (CPU and OS)
// `npix` pixels x channels k0..k0 + 15 of int32 accumulators ([npix][16]) to u8/i8 bytes at
// out[px * stride + c]. With `comp16` (16 channel terms) and `pixel` (npix pixel terms, may be
// null) it first subtracts both from each accumulator in wrapping int32, as the dot-product
// tiers' compensation asks. Needs HasAvx512Ppe().
void PpeIntAvx512(const IntPpe64& t, const int32_t* tile, int64_t npix, int64_t k0, int64_t stride,
                  uint8_t* out, const int32_t* comp16 = nullptr, const uint32_t* pixel = nullptr);

// dst[i * 16 + j] = src[j * stride + i] for i, j < 16: a 16 x 16 transpose of 32-bit elements
// (floats or int32 bits), in 64 AVX-512 shuffles. Needs HasAvx512Ppe().
void Transpose16x16(const float* src, int64_t stride, float* dst);

// ---- Sparse weights on AVX-512 VNNI ----
// Per output channel only the 4-tap quads (4 consecutive input channels of one (ky, kx)) with a
// non-zero w' = w - w_zp are visited, one vpdpbusd each over 16 output pixels: accumulators are
// [channel][16 pixels] and the input is read as [row][C / 4][x][4 bytes] ("quad-planar"), so the
// 64 bytes of 16 consecutive pixels' quad are one load. Exact without the shift z: w' (at most
// 256 consecutive values) = w1 + w2 with w1 = clamp(w', -128, 127) and w2 = w' - w1, both signed
// bytes, so a zero w' is two zero bytes and skipping it drops nothing; a quad with any w2 != 0
// takes a second vpdpbusd. acc = sum a * w1 + sum a * w2 - a_zp * sum w' (mod 2^32), padding
// holding a_zp as in the dense tiers. Needs stride 1 in x (a pixel run is an input run).
struct VnniSparseWeights {
  int64_t k = 0, wq4 = 0;      // wq4: input row width in pixels, AlignUp(ow, 16) + kx - 1
  int64_t quads = 0;           // quads per channel: ky * kx * c / 4
  std::vector<int64_t> begin;  // per channel, into off and w
  std::vector<int64_t> off;    // byte offset in the quad-planar input from the window's origin
  std::vector<int32_t> w;      // the quad's 4 signed bytes (w1, or w2 for a second entry)
  std::vector<int32_t> wsum;   // per channel, sum of w' (mod 2^32)
  double density = 1;          // entries / (k * quads): the work relative to dense
};
VnniSparseWeights PackVnniSparse(const uint8_t* w, bool w_signed, int32_t w_zp, int64_t k, int64_t ky,
                                 int64_t kx, int64_t c, int64_t ow);
// Computes every output through `a.epilogue` (a.weights is not read). Needs
// TierAvailable(kAvx512Vnni) and a.sx == 1.
void RunVnniSparse(const VnniConv& a, const VnniSparseWeights& s);

}  // namespace x86
}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_ZMCONV_X86_H_
