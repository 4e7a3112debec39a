#include "hw/se_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <numeric>
#include <utility>

#include "hw/formats.h"

namespace dpuemu {
namespace {

std::string Str(int64_t v) { return std::to_string(v); }
std::string Shape3(int64_t h, int64_t w, int64_t c) {
  return "[" + Str(h) + ", " + Str(w) + ", " + Str(c) + "]";
}

// A virtual dimension derived from an op's parameters; `formula` says how, for the message.
Status CheckVirtualDim(const std::string& field, const std::string& formula, int64_t v,
                       int64_t lo = 1) {
  if (v < lo || v > kMaxSpatial) {
    return InvalidArgument(field + ": virtual " + formula + " = " + Str(v) + " must be in [" +
                           Str(lo) + ", " + Str(kMaxSpatial) + "]");
  }
  return OkStatus();
}

Status CheckPads(const Pads& pads) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("pads.top", pads.top, 0, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("pads.bottom", pads.bottom, 0, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("pads.left", pads.left, 0, kMaxSpatial));
  return CheckRange("pads.right", pads.right, 0, kMaxSpatial);
}

template <typename E, size_t N>
StatusOr<E> ParseName(const std::string& field, const std::string& name,
                      const char* const (&names)[N]) {
  std::string all;
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i]) return static_cast<E>(i);
    all += (i ? "|" : "") + std::string(names[i]);
  }
  return InvalidArgument(field + ": must be one of " + all + ", got '" + name + "'");
}

constexpr const char* kCoordNames[] = {"asymmetric", "half_pixel", "align_corners",
                                       "pytorch_half_pixel", "tf_half_pixel_for_nn"};
constexpr const char* kNearestNames[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                         "ceil"};
constexpr const char* kPadNames[] = {"constant", "edge", "reflect", "symmetric"};

// One tile's share of the source: rows [first_row, first_row + rows) at bytes [begin, end).
struct SourcePart {
  int64_t first_row = 0, rows = 0, begin = 0, end = 0;
};

// Validates the layout of a source of h rows of row_bytes each; part i lives in tile i.
StatusOr<std::vector<SourcePart>> PlaceSource(const SourceLayout& layout, int64_t h,
                                              int64_t row_bytes, const Target& t) {
  const std::vector<SourceLayout::Part> tiles =
      layout.tiles.empty() ? std::vector<SourceLayout::Part>{{h, 0}} : layout.tiles;
  if (static_cast<int64_t>(tiles.size()) > t.tiles) {
    return InvalidArgument("layout.tiles: " + Str(tiles.size()) + " parts, " + t.name + " has " +
                           Str(t.tiles) + " tiles");
  }
  std::vector<SourcePart> parts;
  int64_t row = 0;
  for (size_t i = 0; i < tiles.size(); ++i) {
    const SourceLayout::Part& p = tiles[i];
    const std::string field = "layout.tiles[" + Str(i) + "]";
    DPUEMU_RETURN_IF_ERROR(CheckRange(field + ".rows", p.rows, 1, h));
    if (p.base_offset < 0 || p.base_offset % 16 != 0 || p.base_offset > kSeMaxOffset) {
      return InvalidArgument(field + ".base_offset = " + Str(p.base_offset) +
                             ": must be a multiple of 16 in [0, " + Str(kSeMaxOffset) +
                             "] (SE pointers address 16-byte units)");
    }
    const int64_t end = p.base_offset + p.rows * row_bytes;
    if (end > kSeMaxOffset + 16) {
      return InvalidArgument(field + ": rows end at byte " + Str(end) +
                             ", beyond what DATA_PTR "
                             "addresses (" +
                             Str(kSeMaxOffset + 16) + ")");
    }
    parts.push_back({row, p.rows, p.base_offset, end});
    row += p.rows;
  }
  if (row != h) {
    return InvalidArgument("layout.tiles: rows add up to " + Str(row) +
                           ", the source has H = " + Str(h));
  }
  return parts;
}

// Checks the source description; returns where its rows live.
StatusOr<std::vector<SourcePart>> CheckSource(const SeSource& s, const Target& t) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.h", s.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.w", s.w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckChannels("source.c", s.c));
  if (s.dtype != DType::kU8 && s.dtype != DType::kI8 && s.dtype != DType::kFP16 &&
      s.dtype != DType::kBF16) {
    return InvalidArgument(std::string("source.dtype = ") + DTypeName(s.dtype) +
                           ": must be u8, i8, fp16 or bf16");
  }
  const int64_t n = s.h * s.w * s.c;
  if (n > kMaxInputElements) {
    return InvalidArgument("source: " + Shape3(s.h, s.w, s.c) + " has more than 2^31 elements");
  }
  if (!s.map.empty()) {
    if (static_cast<int64_t>(s.map.size()) != ActivationMapBytes(n)) {
      return InvalidArgument("source.map: " + Str(s.map.size()) + " bytes, expected " +
                             Str(ActivationMapBytes(n)) + " (one bit per element of " +
                             Shape3(s.h, s.w, s.c) + ", padded to 16 bytes)");
    }
    for (int64_t b = n; b < static_cast<int64_t>(s.map.size()) * 8; ++b) {
      if (MapBit(s.map.data(), b)) {
        return InvalidArgument("source.map: padding bit " + Str(b) + " is set");
      }
    }
  }
  return PlaceSource(s.layout, s.h, s.w * s.c * DTypeBytes(s.dtype), t);
}

StatusOr<int64_t> ResolveSeSize(const Target& t, int64_t se_size, int64_t c) {
  const int64_t se = se_size ? se_size : DefaultSeSize(t, c);
  DPUEMU_RETURN_IF_ERROR(CheckSeSize(t, se, "se_size"));
  if (c % se != 0) return InvalidArgument("se_size = " + Str(se) + ": must divide C = " + Str(c));
  return se;
}

// An inserted zero on one axis whose SE pointers address source index i: encoded as -1 - i.
// The compiler points inserted zeros and constant padding at the source pixel its SE attribute's
// backInferInputCoord picks (VPU/IR/se_attributes.cpp: SEUpsamplingAttr, SEPaddingAttr), not at
// (0, 0); the table bytes follow it (computeSEOffsets, convert_se_tables_to_constants.cpp).
constexpr int64_t InsertedZero(int64_t i) { return -1 - i; }
int64_t Clamp(int64_t i, int64_t n) { return std::min(std::max<int64_t>(i, 0), n - 1); }

// The gather in which virtual pixel (y, x) reads source pixel (rows[y], cols[x]), or is an
// inserted zero when either is negative (InsertedZero: its pointers address the encoded index).
// Every op here is separable in y and x.
StatusOr<SeGather> BuildGather(const SeSource& src, const Target& t, int64_t se_size,
                               const std::vector<int64_t>& rows, const std::vector<int64_t>& cols,
                               const std::string& what) {
  std::vector<SourcePart> parts;
  DPUEMU_ASSIGN_OR_RETURN(parts, CheckSource(src, t));
  SeGather g;
  DPUEMU_ASSIGN_OR_RETURN(g.se_size, ResolveSeSize(t, se_size, src.c));
  g.h = static_cast<int64_t>(rows.size());
  g.w = static_cast<int64_t>(cols.size());
  g.c = src.c;
  g.source_h = src.h;
  g.source_w = src.w;
  if (g.h * g.w * g.c > kMaxInputElements) {
    return InvalidArgument(what + ": virtual tensor " + Shape3(g.h, g.w, g.c) +
                           " has more than 2^31 elements");
  }
  const int64_t eb = DTypeBytes(src.dtype);
  const int64_t ses = g.c / g.se_size;
  const int64_t pixel_bytes = g.c / 8;  // map bytes per pixel; C is a multiple of 16
  // Byte offset and tile of each source row's first pixel.
  std::vector<int64_t> row_offset(static_cast<size_t>(src.h));
  std::vector<int32_t> row_tile(static_cast<size_t>(src.h));
  for (size_t i = 0; i < parts.size(); ++i) {
    for (int64_t r = 0; r < parts[i].rows; ++r) {
      row_offset[parts[i].first_row + r] = parts[i].begin + r * src.w * src.c * eb;
      row_tile[parts[i].first_row + r] = static_cast<int32_t>(i);
    }
  }
  g.table.reserve(static_cast<size_t>(g.h * g.w * ses));
  g.map.assign(static_cast<size_t>(ActivationMapBytes(g.h * g.w * g.c)), 0);
  for (int64_t y = 0; y < g.h; ++y) {
    for (int64_t x = 0; x < g.w; ++x) {
      const bool present = rows[y] >= 0 && cols[x] >= 0;
      const int64_t sy = rows[y] >= 0 ? rows[y] : InsertedZero(rows[y]);
      const int64_t sx = cols[x] >= 0 ? cols[x] : InsertedZero(cols[x]);
      for (int64_t s = 0; s < ses; ++s) {
        int32_t e;
        DPUEMU_ASSIGN_OR_RETURN(
            e, EncodeSePointer(row_offset[sy] + (sx * g.c + s * g.se_size) * eb, row_tile[sy]));
        g.table.push_back(e);
      }
      if (!present) continue;
      uint8_t* dst = g.map.data() + (y * g.w + x) * pixel_bytes;
      if (src.map.empty()) {
        std::memset(dst, 0xFF, static_cast<size_t>(pixel_bytes));
      } else {
        std::memcpy(dst, src.map.data() + (sy * src.w + sx) * pixel_bytes,
                    static_cast<size_t>(pixel_bytes));
      }
    }
  }
  g.description = what + ": source " + Shape3(src.h, src.w, src.c) + " -> virtual " +
                  Shape3(g.h, g.w, g.c) + ", se_size " + Str(g.se_size) + " (" +
                  Str(g.table.size()) + " SE pointers, map " + Str(g.map.size()) + " bytes)";
  return g;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// ONNX Resize (nearest): the source index read for output index x of an axis resized from `in`
// to `out` elements. The source coordinate is the fraction num / den (den > 0).
int64_t NearestSourceIndex(int64_t x, int64_t in, int64_t out, CoordMode coord, NearestMode mode) {
  int64_t num = 0, den = 1;
  switch (coord) {
    case CoordMode::kAsymmetric:  // x / scale
      num = x * in;
      den = out;
      break;
    case CoordMode::kPytorchHalfPixel:  // half_pixel, but 0 for a length-1 output
      if (out == 1) break;
      [[fallthrough]];
    case CoordMode::kHalfPixel:  // (x + 0.5) / scale - 0.5
      num = (2 * x + 1) * in - out;
      den = 2 * out;
      break;
    case CoordMode::kAlignCorners:  // x * (in - 1) / (out - 1), 0 for a length-1 output
      if (out == 1) break;
      num = x * (in - 1);
      den = out - 1;
      break;
    case CoordMode::kTfHalfPixelForNN:  // (x + 0.5) / scale
      num = (2 * x + 1) * in;
      den = 2 * out;
      break;
  }
  const int64_t fl = FloorDiv(num, den);
  const int64_t twice_frac = 2 * (num - fl * den);  // 2 * fractional part, in units of 1 / den
  int64_t i = fl;
  switch (mode) {
    case NearestMode::kRoundPreferFloor:
      i = twice_frac > den ? fl + 1 : fl;
      break;
    case NearestMode::kRoundPreferCeil:
      i = twice_frac >= den ? fl + 1 : fl;
      break;
    case NearestMode::kFloor:
      break;
    case NearestMode::kCeil:
      i = twice_frac > 0 ? fl + 1 : fl;
      break;
  }
  return std::min(std::max<int64_t>(i, 0), in - 1);
}

// Source index for padded index i (i < 0 or i >= n lies in the padding). Constant padding is an
// inserted zero addressing the nearest border pixel (SEPaddingAttr's CONSTANT/EDGE transform).
int64_t PadSourceIndex(int64_t i, int64_t n, PadMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PadMode::kConstant:
      return InsertedZero(Clamp(i, n));
    case PadMode::kEdge:
      return i < 0 ? 0 : n - 1;
    case PadMode::kReflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1);
      const int64_t m = ((i % period) + period) % period;
      return m < n ? m : period - m;
    }
    case PadMode::kSymmetric: {
      const int64_t period = 2 * n;
      const int64_t m = ((i % period) + period) % period;
      return m < n ? m : period - 1 - m;
    }
  }
  return -1;
}

// Virtual length of one axis of a zero insertion (before the range check).
int64_t ZeroInsertLength(int64_t n, int64_t stride, int64_t k, int64_t pad_begin, int64_t pad_end,
                         int64_t output_padding) {
  return (n - 1) * stride + 1 + 2 * (k - 1) - pad_begin - pad_end + output_padding;
}

// Source index of zero-inserted axis index v: source i sits at border + i * stride. A zero
// addresses the source pixel before it (u / stride), the first one in the border above and the
// last one below (SEUpsamplingAttr::backInferInputCoord: (v - pad) / (factor + 1), clamped).
std::vector<int64_t> ZeroInsertAxis(int64_t n, int64_t stride, int64_t length, int64_t border) {
  std::vector<int64_t> idx(static_cast<size_t>(length));
  for (int64_t v = 0; v < length; ++v) {
    const int64_t u = v - border;
    const bool present = u >= 0 && u % stride == 0 && u / stride < n;
    idx[v] = present ? u / stride : InsertedZero(Clamp(u >= 0 ? u / stride : 0, n));
  }
  return idx;
}

Status CheckTransposedAxis(const std::string& axis, int64_t n, int64_t stride, int64_t k,
                           int64_t pad_begin, int64_t pad_end, int64_t output_padding) {
  const std::string f = "transposed.";
  DPUEMU_RETURN_IF_ERROR(CheckRange(f + "stride_" + axis, stride, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange(f + "k" + axis, k, 1, kMaxKernel));
  const bool y = axis == "y";
  DPUEMU_RETURN_IF_ERROR(CheckRange(f + (y ? "pads.top" : "pads.left"), pad_begin, 0, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange(f + (y ? "pads.bottom" : "pads.right"), pad_end, 0, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange(f + "output_padding_" + axis, output_padding, 0, stride - 1));
  const std::string formula = std::string(y ? "height (H" : "width (W") + " - 1) * stride_" + axis +
                              " + 1 + 2 * (k" + axis + " - 1) - " +
                              (y ? "pads.top - pads.bottom" : "pads.left - pads.right") +
                              " + output_padding_" + axis;
  return CheckVirtualDim("transposed", formula,
                         ZeroInsertLength(n, stride, k, pad_begin, pad_end, output_padding), k);
}

}  // namespace

SourceLayout SplitRows(int64_t h, int tiles, int64_t base_offset) {
  SourceLayout layout;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(tiles, h));
  for (int64_t i = 0; i < parts; ++i) {
    layout.tiles.push_back({h / parts + (i < h % parts ? 1 : 0), base_offset});
  }
  return layout;
}

StatusOr<SeSource> MakeSeSource(const Tensor& t, const SourceLayout& layout, bool sparse,
                                int32_t zp) {
  if (t.shape.size() != 3)
    return InvalidArgument("source: shape must be [H, W, C], got " + t.ShapeString());
  // The map records which elements differ from the zero point: it must be one the type has.
  if (sparse) DPUEMU_RETURN_IF_ERROR(CheckZeroPoint(t.dtype, zp, "source"));
  SeSource s;
  s.h = t.shape[0];
  s.w = t.shape[1];
  s.c = t.shape[2];
  s.dtype = t.dtype;
  s.layout = layout;
  if (sparse) {
    // The map does not depend on the SE size; C itself always divides C.
    SparseActivations sa;
    DPUEMU_ASSIGN_OR_RETURN(sa, EncodeSparseActivations(t, zp, s.c));
    s.map = std::move(sa.map);
  }
  return s;
}

const char* CoordModeName(CoordMode m) { return kCoordNames[static_cast<int>(m)]; }
const char* NearestModeName(NearestMode m) { return kNearestNames[static_cast<int>(m)]; }
const char* PadModeName(PadMode m) { return kPadNames[static_cast<int>(m)]; }
StatusOr<CoordMode> ParseCoordMode(const std::string& name) {
  return ParseName<CoordMode>("coordinate_transformation_mode", name, kCoordNames);
}
StatusOr<NearestMode> ParseNearestMode(const std::string& name) {
  return ParseName<NearestMode>("nearest_mode", name, kNearestNames);
}
StatusOr<PadMode> ParsePadMode(const std::string& name) {
  return ParseName<PadMode>("pad mode", name, kPadNames);
}

StatusOr<SeGather> UpsampleNearestGather(const SeSource& src, const Target& t, int64_t se_size,
                                         int64_t fy, int64_t fx) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("fy", fy, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("fx", fx, 1, kMaxSpatial));
  // Bounded before the products below (an unchecked H * fy can overflow int64).
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.h", src.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.w", src.w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckVirtualDim("fy", "height H * fy", src.h * fy));
  DPUEMU_RETURN_IF_ERROR(CheckVirtualDim("fx", "width W * fx", src.w * fx));
  std::vector<int64_t> rows(static_cast<size_t>(src.h * fy)), cols(static_cast<size_t>(src.w * fx));
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = static_cast<int64_t>(y) / fy;
  for (size_t x = 0; x < cols.size(); ++x) cols[x] = static_cast<int64_t>(x) / fx;
  return BuildGather(src, t, se_size, rows, cols,
                     "upsample_nearest fy=" + Str(fy) + " fx=" + Str(fx));
}

StatusOr<SeGather> InterpolateNearestGather(const SeSource& src, const Target& t, int64_t se_size,
                                            int64_t out_h, int64_t out_w, CoordMode coord,
                                            NearestMode mode) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("out_h", out_h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("out_w", out_w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.h", src.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.w", src.w, 1, kMaxSpatial));
  std::vector<int64_t> rows(static_cast<size_t>(out_h)), cols(static_cast<size_t>(out_w));
  for (int64_t y = 0; y < out_h; ++y) rows[y] = NearestSourceIndex(y, src.h, out_h, coord, mode);
  for (int64_t x = 0; x < out_w; ++x) cols[x] = NearestSourceIndex(x, src.w, out_w, coord, mode);
  return BuildGather(src, t, se_size, rows, cols,
                     std::string("interpolate_nearest ") + CoordModeName(coord) + " " +
                         NearestModeName(mode) + " to " + Str(out_h) + "x" + Str(out_w));
}

std::string BilinearInterp::ToString() const {
  return std::string("interpolate_bilinear ") + CoordModeName(coord) + " " + Str(in_h) + "x" +
         Str(in_w) + " -> " + Str(out_h) + "x" + Str(out_w) + " (scale " + Str(scale_y) + "x" +
         Str(scale_x) + "): SE repeats each pixel " + Str(factor_y) + "x" + Str(factor_x) +
         ", border " + Str(pads.top) + "/" + Str(pads.bottom) + "/" + Str(pads.left) + "/" +
         Str(pads.right) + ", box kernel " + Str(ky) + "x" + Str(kx) + " of 1/" + Str(ky * kx) +
         ", stride " + Str(stride_y) + "x" + Str(stride_x);
}

StatusOr<BilinearInterp> PlanInterpolateBilinear(int64_t in_h, int64_t in_w, int64_t out_h,
                                                 int64_t out_w, CoordMode coord) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.h", in_h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.w", in_w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("size[0]", out_h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("size[1]", out_w, 1, kMaxSpatial));
  if (coord == CoordMode::kTfHalfPixelForNN) {
    return InvalidArgument(
        "mode = tf_half_pixel_for_nn: bilinear interpolation on the DPU supports asymmetric, "
        "half_pixel, pytorch_half_pixel and align_corners (NCEInterpolateOp::isSupported)");
  }
  BilinearInterp b;
  b.coord = coord;
  b.in_h = in_h;
  b.in_w = in_w;
  b.out_h = out_h;
  b.out_w = out_w;
  // One axis: scale, factor, pads, kernel, stride (nce_interpolate_utils.cpp).
  auto axis = [&](const char* field, int64_t in, int64_t out, int64_t& scale, int64_t& factor,
                  int64_t& pad_begin, int64_t& pad_end, int64_t& k, int64_t& stride) -> Status {
    int64_t num = out, den = in;
    std::string formula = "out / in";
    if (coord == CoordMode::kAlignCorners && out != in) {
      if (in == 1) {
        return InvalidArgument(std::string(field) + " = " + Str(out) +
                               ": align_corners needs at least 2 source pixels to resize an axis");
      }
      num = out - 1;
      den = in - 1;
      formula = "(out - 1) / (in - 1)";
    }
    if (num % den != 0 || num < den) {
      return InvalidArgument(std::string(field) + " = " + Str(out) + " over " + Str(in) +
                             " source pixels: the scale " + formula + " = " + Str(num) + "/" +
                             Str(den) +
                             " must be a whole number >= 1 (the DPU's bilinear interpolation "
                             "takes integer scales, isSupportedNCEInterpolateScales)");
    }
    scale = num / den;
    factor = scale;
    pad_begin = pad_end = 0;
    k = scale;
    stride = 1;
    switch (coord) {
      case CoordMode::kAsymmetric:
        pad_end = scale - 1;
        break;
      case CoordMode::kAlignCorners:
        break;
      case CoordMode::kHalfPixel:
      case CoordMode::kPytorchHalfPixel:
        if (scale % 2 == 1) {
          pad_begin = pad_end = (scale - 1) / 2;
        } else {
          factor = k = 2 * scale;
          pad_begin = pad_end = scale - 1;
          stride = 2;
        }
        break;
      case CoordMode::kTfHalfPixelForNN:
        break;
    }
    if (k > kMaxKernel) {
      return InvalidArgument(std::string(field) + " = " + Str(out) + ": the box kernel " + Str(k) +
                             " of scale " + Str(scale) + " exceeds the DPU's kernel limit " +
                             Str(kMaxKernel) + " (NCEInterpolateOp::isSupported)");
    }
    return OkStatus();
  };
  DPUEMU_RETURN_IF_ERROR(axis("size[0]", in_h, out_h, b.scale_y, b.factor_y, b.pads.top,
                              b.pads.bottom, b.ky, b.stride_y));
  DPUEMU_RETURN_IF_ERROR(axis("size[1]", in_w, out_w, b.scale_x, b.factor_x, b.pads.left,
                              b.pads.right, b.kx, b.stride_x));
  DPUEMU_RETURN_IF_ERROR(CheckVirtualDim("size[0]", "height H * factor + pads",
                                         in_h * b.factor_y + b.pads.top + b.pads.bottom));
  DPUEMU_RETURN_IF_ERROR(CheckVirtualDim("size[1]", "width W * factor + pads",
                                         in_w * b.factor_x + b.pads.left + b.pads.right));
  return b;
}

namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return -FloorDiv(-a, b); }

// SEInterpolateAttr::backInferInputCoord for BILINEAR on one axis: the source index virtual
// index v reads. The coordinate transformation is evaluated as an exact fraction (the compiler's
// doubles are exact for these small integers' quotients where the ceil matters).
int64_t BilinearSourceIndex(int64_t v, int64_t in, int64_t out, int64_t scale, int64_t k,
                            int64_t stride, CoordMode coord) {
  const int64_t o = std::max<int64_t>(0, (v - k + 1) / stride);  // C++ division, as the compiler
  if (scale == 1) return Clamp(o, in);
  int64_t num = o, den = 1;
  switch (coord) {
    case CoordMode::kAsymmetric:  // o / scale
      num = o;
      den = scale;
      break;
    case CoordMode::kPytorchHalfPixel:  // half_pixel, 0 for a length-1 output
      if (out == 1) {
        num = 0;
        break;
      }
      [[fallthrough]];
    case CoordMode::kHalfPixel:  // (o + 0.5) / scale - 0.5
      num = 2 * o + 1 - scale;
      den = 2 * scale;
      break;
    case CoordMode::kAlignCorners:  // o * (in - 1) / (out - 1)
      if (out == 1) {
        num = 0;
        break;
      }
      num = o * (in - 1);
      den = out - 1;
      break;
    case CoordMode::kTfHalfPixelForNN:
      break;
  }
  return Clamp(CeilDiv(num, den), in);
}

}  // namespace

StatusOr<SeGather> InterpolateBilinearGather(const SeSource& src, const Target& t, int64_t se_size,
                                             const BilinearInterp& b) {
  if (src.h != b.in_h || src.w != b.in_w) {
    return InvalidArgument("source: " + Shape3(src.h, src.w, src.c) + " is not the plan's " +
                           Str(b.in_h) + "x" + Str(b.in_w) + " input");
  }
  BilinearInterp check;
  DPUEMU_ASSIGN_OR_RETURN(check,
                          PlanInterpolateBilinear(b.in_h, b.in_w, b.out_h, b.out_w, b.coord));
  if (check.ToString() != b.ToString()) {
    return InvalidArgument("plan: " + b.ToString() + " is not PlanInterpolateBilinear's " +
                           check.ToString());
  }
  std::vector<int64_t> rows(static_cast<size_t>(b.in_h * b.factor_y + b.pads.top + b.pads.bottom));
  std::vector<int64_t> cols(static_cast<size_t>(b.in_w * b.factor_x + b.pads.left + b.pads.right));
  for (size_t y = 0; y < rows.size(); ++y) {
    rows[y] = BilinearSourceIndex(static_cast<int64_t>(y), b.in_h, b.out_h, b.scale_y, b.ky,
                                  b.stride_y, b.coord);
  }
  for (size_t x = 0; x < cols.size(); ++x) {
    cols[x] = BilinearSourceIndex(static_cast<int64_t>(x), b.in_w, b.out_w, b.scale_x, b.kx,
                                  b.stride_x, b.coord);
  }
  return BuildGather(src, t, se_size, rows, cols, b.ToString());
}

Status EncodePpeScale(double scale, int32_t* mult, int32_t* shift) {
  if (!(scale > 0) || !std::isfinite(scale)) {
    return InvalidArgument("scale = " + std::to_string(scale) + ": must be a positive number");
  }
  int exp = 0;
  const double m = std::frexp(scale, &exp);  // scale = m * 2^exp, m in [0.5, 1)
  int64_t mi = static_cast<int64_t>(std::llround(m * 32768.0));
  int64_t sh = 15 - exp;
  if (mi == 32768) {  // rounded up to 1.0
    mi = 16384;
    sh -= 1;
  }
  if (sh < 0 || sh > 63) {
    return InvalidArgument("scale = " + std::to_string(scale) + ": its PPE shift 15 - exponent = " +
                           Str(sh) + " must be in [0, 63]");
  }
  *mult = static_cast<int32_t>(mi);
  *shift = static_cast<int32_t>(sh);
  return OkStatus();
}

StatusOr<NceLayer> InterpolateBilinearAsZMConv(const BilinearInterp& b, const SeGather& gather,
                                               const NceOp& op, const ChannelQuant& quant) {
  const int64_t vh = b.in_h * b.factor_y + b.pads.top + b.pads.bottom;
  const int64_t vw = b.in_w * b.factor_x + b.pads.left + b.pads.right;
  if (gather.h != vh || gather.w != vw || gather.source_h != b.in_h || gather.source_w != b.in_w) {
    return InvalidArgument("gather: virtual [" + Str(gather.h) + ", " + Str(gather.w) +
                           "] over [" + Str(gather.source_h) + ", " + Str(gather.source_w) +
                           "] is not this plan's [" + Str(vh) + ", " + Str(vw) +
                           "]; build it with InterpolateBilinearGather");
  }
  NceLayer layer;
  layer.name = "interpolate_bilinear_as_zmconv";
  layer.op = op;
  layer.op.kind = NceKind::kConv;
  layer.op.g = NceGeometry{};
  layer.op.g.h = gather.h;
  layer.op.g.w = gather.w;
  layer.op.g.c = gather.c;
  layer.op.g.k = gather.c;
  layer.op.g.ky = b.ky;
  layer.op.g.kx = b.kx;
  layer.op.g.stride_y = b.stride_y;
  layer.op.g.stride_x = b.stride_x;
  const int64_t taps = b.ky * b.kx;
  const bool integer = IsInteger(op.in_dtype);
  layer.op.w_dtype = integer ? DType::kU8 : op.in_dtype;
  layer.op.w_zp = 0;
  DPUEMU_RETURN_IF_ERROR(ValidateOp(layer.op));
  if (layer.op.g.out_h() != b.out_h || layer.op.g.out_w() != b.out_w) {
    return Internal("interpolate_bilinear: the box convolution gives " + Str(layer.op.g.out_h()) +
                    "x" + Str(layer.op.g.out_w()) + ", the resize " + Str(b.out_h) + "x" +
                    Str(b.out_w));
  }
  // The interpolate's own requantisation, checked as a layer with K = C would be.
  NceOp qop = layer.op;
  DPUEMU_RETURN_IF_ERROR(ValidateQuant(qop, quant));
  layer.quant = quant;
  if (integer && op.out_dtype != DType::kI32) {
    for (size_t k = 0; k < quant.mult.size(); ++k) {
      const double s = std::ldexp(static_cast<double>(quant.mult[k]), -quant.shift[k]) /
                       static_cast<double>(taps);
      if (quant.mult[k] == 0) {
        layer.quant.shift[k] = 0;
        continue;
      }
      const Status st = EncodePpeScale(s, &layer.quant.mult[k], &layer.quant.shift[k]);
      if (!st.ok()) return st.Annotate("quant[" + Str(static_cast<int64_t>(k)) + "] / " + Str(taps));
    }
  }
  if (integer) {
    for (int32_t& v : layer.quant.bias) {
      const int64_t scaled = static_cast<int64_t>(v) * taps;
      if (scaled < std::numeric_limits<int32_t>::min() || scaled > std::numeric_limits<int32_t>::max()) {
        return InvalidArgument("bias " + Str(v) + " x " + Str(taps) +
                               " (the box kernel's taps) does not fit int32");
      }
      v = static_cast<int32_t>(scaled);
    }
  }
  layer.weights = Tensor(layer.op.w_dtype, {gather.c, b.ky, b.kx, gather.c});
  uint8_t* w = layer.weights.bytes.data();
  for (int64_t k = 0; k < gather.c; ++k) {
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t i = (k * taps + t) * gather.c + k;
      if (integer) {
        StoreInt(DType::kU8, w, i, 1);
      } else {
        StoreFloat(layer.op.w_dtype, w, i, 1.0f / static_cast<float>(taps));
      }
    }
  }
  DPUEMU_RETURN_IF_ERROR(ValidateQuant(layer.op, layer.quant));
  return layer;
}

StatusOr<SeGather> PadGather(const SeSource& src, const Target& t, int64_t se_size,
                             const Pads& pads, PadMode mode) {
  DPUEMU_RETURN_IF_ERROR(CheckPads(pads));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.h", src.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.w", src.w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(
      CheckVirtualDim("pads", "height H + top + bottom", src.h + pads.top + pads.bottom));
  DPUEMU_RETURN_IF_ERROR(
      CheckVirtualDim("pads", "width W + left + right", src.w + pads.left + pads.right));
  std::vector<int64_t> rows(static_cast<size_t>(src.h + pads.top + pads.bottom));
  std::vector<int64_t> cols(static_cast<size_t>(src.w + pads.left + pads.right));
  for (size_t y = 0; y < rows.size(); ++y) {
    rows[y] = PadSourceIndex(static_cast<int64_t>(y) - pads.top, src.h, mode);
  }
  for (size_t x = 0; x < cols.size(); ++x) {
    cols[x] = PadSourceIndex(static_cast<int64_t>(x) - pads.left, src.w, mode);
  }
  return BuildGather(src, t, se_size, rows, cols,
                     std::string("pad ") + PadModeName(mode) + " top=" + Str(pads.top) +
                         " bottom=" + Str(pads.bottom) + " left=" + Str(pads.left) +
                         " right=" + Str(pads.right));
}

StatusOr<SeGather> RollGather(const SeSource& src, const Target& t, int64_t se_size, int64_t dy,
                              int64_t dx) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.h", src.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.w", src.w, 1, kMaxSpatial));
  // Reduced first so that y - dy cannot overflow for any shift.
  const int64_t sy = ((dy % src.h) + src.h) % src.h, sx = ((dx % src.w) + src.w) % src.w;
  std::vector<int64_t> rows(static_cast<size_t>(src.h)), cols(static_cast<size_t>(src.w));
  for (int64_t y = 0; y < src.h; ++y) rows[y] = (y - sy + src.h) % src.h;
  for (int64_t x = 0; x < src.w; ++x) cols[x] = (x - sx + src.w) % src.w;
  return BuildGather(src, t, se_size, rows, cols, "roll dy=" + Str(dy) + " dx=" + Str(dx));
}

StatusOr<SeGather> ZeroInsertGather(const SeSource& src, const Target& t, int64_t se_size,
                                    const TransposedConv& tc) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.h", src.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.w", src.w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckTransposedAxis("y", src.h, tc.stride_y, tc.ky, tc.pads.top,
                                             tc.pads.bottom, tc.output_padding_y));
  DPUEMU_RETURN_IF_ERROR(CheckTransposedAxis("x", src.w, tc.stride_x, tc.kx, tc.pads.left,
                                             tc.pads.right, tc.output_padding_x));
  const std::vector<int64_t> rows = ZeroInsertAxis(
      src.h, tc.stride_y,
      ZeroInsertLength(src.h, tc.stride_y, tc.ky, tc.pads.top, tc.pads.bottom, tc.output_padding_y),
      tc.ky - 1 - tc.pads.top);
  const std::vector<int64_t> cols = ZeroInsertAxis(
      src.w, tc.stride_x,
      ZeroInsertLength(src.w, tc.stride_x, tc.kx, tc.pads.left, tc.pads.right, tc.output_padding_x),
      tc.kx - 1 - tc.pads.left);
  return BuildGather(src, t, se_size, rows, cols,
                     "zero_insert (transposed conv) stride " + Str(tc.stride_y) + "x" +
                         Str(tc.stride_x) + ", kernel " + Str(tc.ky) + "x" + Str(tc.kx) +
                         ", pads " + Str(tc.pads.top) + "/" + Str(tc.pads.bottom) + "/" +
                         Str(tc.pads.left) + "/" + Str(tc.pads.right) + ", output_padding " +
                         Str(tc.output_padding_y) + "/" + Str(tc.output_padding_x));
}

StatusOr<NceLayer> TransposedConvAsZMConv(const TransposedConv& tc, const SeGather& gather,
                                           const NceOp& op, const ChannelQuant& quant,
                                           const Tensor& weights) {
  // Bounded before CheckTransposedAxis multiplies them by the strides.
  DPUEMU_RETURN_IF_ERROR(CheckRange("gather.source_h", gather.source_h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("gather.source_w", gather.source_w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckTransposedAxis("y", gather.source_h, tc.stride_y, tc.ky, tc.pads.top,
                                             tc.pads.bottom, tc.output_padding_y));
  DPUEMU_RETURN_IF_ERROR(CheckTransposedAxis("x", gather.source_w, tc.stride_x, tc.kx, tc.pads.left,
                                             tc.pads.right, tc.output_padding_x));
  const int64_t vh = ZeroInsertLength(gather.source_h, tc.stride_y, tc.ky, tc.pads.top,
                                      tc.pads.bottom, tc.output_padding_y);
  const int64_t vw = ZeroInsertLength(gather.source_w, tc.stride_x, tc.kx, tc.pads.left,
                                      tc.pads.right, tc.output_padding_x);
  if (gather.h != vh || gather.w != vw) {
    return InvalidArgument(
        "gather: virtual [" + Str(gather.h) + ", " + Str(gather.w) +
        "] is not the zero insertion of this transposed conv over a source of [" +
        Str(gather.source_h) + ", " + Str(gather.source_w) + "] (expected [" + Str(vh) + ", " +
        Str(vw) + "]); build it with ZeroInsertGather");
  }
  if (weights.shape.size() != 4 || weights.shape[1] != tc.ky || weights.shape[2] != tc.kx ||
      weights.shape[3] != gather.c || weights.dtype != op.w_dtype ||
      !HasExactBytes(weights)) {
    return InvalidArgument(std::string("weights: expected ") + DTypeName(op.w_dtype) + " [K, " +
                           Str(tc.ky) + ", " + Str(tc.kx) + ", " + Str(gather.c) + "], got " +
                           DTypeName(weights.dtype) + " " + weights.ShapeString() + " with " +
                           Str(weights.bytes.size()) + " bytes");
  }
  NceLayer layer;
  layer.name = "transposed_conv_as_zmconv";
  layer.op = op;
  layer.op.g = NceGeometry{};
  layer.op.g.h = gather.h;
  layer.op.g.w = gather.w;
  layer.op.g.c = gather.c;
  layer.op.g.k = weights.shape[0];
  layer.op.g.ky = tc.ky;
  layer.op.g.kx = tc.kx;
  DPUEMU_RETURN_IF_ERROR(ValidateOp(layer.op));
  DPUEMU_RETURN_IF_ERROR(ValidateQuant(layer.op, quant));
  layer.quant = quant;
  // Flip the kernel in y and x: virtual row oy + j meets the input pixel that the transposed
  // definition weights with kernel row ky - 1 - j.
  layer.weights = Tensor(weights.dtype, weights.shape);
  const int64_t run = gather.c * DTypeBytes(weights.dtype);
  for (int64_t k = 0; k < layer.op.g.k; ++k) {
    for (int64_t j = 0; j < tc.ky; ++j) {
      for (int64_t i = 0; i < tc.kx; ++i) {
        const int64_t from = (k * tc.ky + (tc.ky - 1 - j)) * tc.kx + (tc.kx - 1 - i);
        const int64_t to = (k * tc.ky + j) * tc.kx + i;
        std::memcpy(layer.weights.bytes.data() + to * run, weights.bytes.data() + from * run,
                    static_cast<size_t>(run));
      }
    }
  }
  return layer;
}

StatusOr<DpuTask> LowerWithGather(const NceLayer& virtual_layer, const Tensor& source,
                                  const SourceLayout& layout, const SeGather& gather,
                                  const StorageOptions& opts, const Target& t) {
  const NceOp& op = virtual_layer.op;
  DPUEMU_RETURN_IF_ERROR(ValidateOp(op));
  if (op.g.h != gather.h || op.g.w != gather.w || op.g.c != gather.c) {
    return InvalidArgument("virtual_layer.op.g: input " + Shape3(op.g.h, op.g.w, op.g.c) +
                           " must equal the gather's virtual tensor " +
                           Shape3(gather.h, gather.w, gather.c));
  }
  DPUEMU_RETURN_IF_ERROR(CheckSeSize(t, gather.se_size, "gather.se_size"));
  const int64_t se = gather.se_size;
  if (gather.c % se != 0) {
    return InvalidArgument("gather.se_size = " + Str(se) + ": must divide C = " + Str(gather.c));
  }
  if (opts.input_se_size != 0 && opts.input_se_size != se) {
    return InvalidArgument("storage.input_se_size = " + Str(opts.input_se_size) +
                           ": differs from the gather's se_size " + Str(se) +
                           " (its table has one pointer per SE of that size)");
  }
  DPUEMU_RETURN_IF_ERROR(CheckRange("gather.source_h", gather.source_h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("gather.source_w", gather.source_w, 1, kMaxSpatial));
  const std::vector<int64_t> want = {gather.source_h, gather.source_w, gather.c};
  if (source.dtype != op.in_dtype || source.shape != want ||
      !HasExactBytes(source)) {
    return InvalidArgument(std::string("source: expected ") + DTypeName(op.in_dtype) + " " +
                           Shape3(want[0], want[1], want[2]) + " (the gather's source), got " +
                           DTypeName(source.dtype) + " " + source.ShapeString() + " with " +
                           Str(source.bytes.size()) + " bytes");
  }
  const int64_t eb = DTypeBytes(op.in_dtype);
  const int64_t se_bytes = se * eb;
  const int64_t row_bytes = gather.source_w * gather.c * eb;
  std::vector<SourcePart> parts;
  DPUEMU_ASSIGN_OR_RETURN(parts, PlaceSource(layout, gather.source_h, row_bytes, t));

  const int64_t n = gather.h * gather.w * gather.c;
  const int64_t ses = n / se;
  if (static_cast<int64_t>(gather.table.size()) != ses) {
    return InvalidArgument("gather.table: " + Str(gather.table.size()) +
                           " entries, expected H * W "
                           "* C / se_size = " +
                           Str(ses));
  }
  if (static_cast<int64_t>(gather.map.size()) != ActivationMapBytes(n)) {
    return InvalidArgument("gather.map: " + Str(gather.map.size()) + " bytes, expected " +
                           Str(ActivationMapBytes(n)) + " (one bit per element of " +
                           Shape3(gather.h, gather.w, gather.c) + ", padded to 16 bytes)");
  }

  // The source as stored, and which of its elements its slots hold.
  std::vector<uint8_t> data = source.bytes;
  std::vector<uint8_t> source_map;
  if (opts.input_sparse) {
    SparseActivations sa;
    DPUEMU_ASSIGN_OR_RETURN(sa, EncodeSparseActivations(source, op.in_zp, se));
    data = std::move(sa.data);
    source_map = std::move(sa.map);
  }
  const int64_t se_map_bytes = se / 8;  // se is a multiple of 16: each SE's bits are whole bytes
  const std::vector<uint8_t> all_ones(static_cast<size_t>(se_map_bytes), 0xFF);
  const std::vector<uint8_t> all_zeros(static_cast<size_t>(se_map_bytes), 0);
  const int64_t ses_per_pixel = gather.c / se;
  // "virtual pixel (y, x) SE j" of SE s of the virtual tensor (or of the source).
  auto se_name = [ses_per_pixel](const char* what, int64_t s, int64_t w) {
    const int64_t pixel = s / ses_per_pixel;
    return std::string(what) + " pixel (" + Str(pixel / w) + ", " + Str(pixel % w) + ") SE " +
           Str(s % ses_per_pixel);
  };
  for (int64_t s = 0; s < ses; ++s) {
    auto where = [&] {
      return "gather.table[" + Str(s) + "] (" + se_name("virtual", s, gather.w) + ")";
    };
    const int32_t entry = gather.table[s];
    if (static_cast<uint32_t>(entry) >> 29) {
      return InvalidArgument(where() + " = " + Str(entry) +
                             ": bits [31:29] are unused and must be 0");
    }
    const SePointer p = DecodeSePointer(entry);
    if (p.tile >= static_cast<int32_t>(parts.size())) {
      return OutOfRange(where() + ": BASE_PTR = " + Str(p.tile) +
                        " is beyond the source's tile count " + Str(parts.size()));
    }
    const SourcePart& part = parts[static_cast<size_t>(p.tile)];
    if (p.offset < part.begin || p.offset + se_bytes > part.end) {
      return OutOfRange(where() + ": DATA_PTR offset " + Str(p.offset) + " is outside the source " +
                        "rows held by tile " + Str(p.tile) + " (bytes [" + Str(part.begin) + ", " +
                        Str(part.end) + "))");
    }
    if ((p.offset - part.begin) % se_bytes != 0) {
      return InvalidArgument(where() + ": DATA_PTR offset " + Str(p.offset) + " is not at a " +
                             "storage element of the source (tile base " + Str(part.begin) +
                             " + a multiple of " + Str(se_bytes) + " bytes)");
    }
    const int64_t src_se = (part.first_row * row_bytes + p.offset - part.begin) / se_bytes;
    const uint8_t* bits = gather.map.data() + s * se_map_bytes;
    const uint8_t* held =
        source_map.empty() ? all_ones.data() : source_map.data() + src_se * se_map_bytes;
    const size_t nb = static_cast<size_t>(se_map_bytes);
    if (std::memcmp(bits, all_zeros.data(), nb) != 0 && std::memcmp(bits, held, nb) != 0) {
      return InvalidArgument(
          "gather.map: the bits of " + se_name("virtual", s, gather.w) + " must be all 0 or " +
          "what its slot, " + se_name("source", src_se, gather.source_w) + ", holds: " +
          (source_map.empty() ? "all 1 (the source is stored dense)"
                              : "the source's map bits (a sparse slot packs only present "
                                "elements)"));
    }
  }

  // The virtual input is not materialised: LowerLayer lowers the weights and checks the op over a
  // zero placeholder of the virtual shape, whose input buffers are then replaced by the source.
  NceLayer lowered;
  lowered.name = virtual_layer.name;
  lowered.op = op;
  lowered.quant = virtual_layer.quant;
  lowered.weights = virtual_layer.weights;
  lowered.input = Tensor(op.in_dtype, {gather.h, gather.w, gather.c});
  StorageOptions o = opts;
  o.input_sparse = false;
  o.input_se_table = false;
  o.input_se_size = se;
  DpuTask task;
  DPUEMU_ASSIGN_OR_RETURN(task, LowerLayer(lowered, o, t));
  task.input_tiles.clear();
  for (const SourcePart& part : parts) {
    std::vector<uint8_t> tile(static_cast<size_t>(part.end), 0);
    std::memcpy(tile.data() + part.begin, data.data() + part.first_row * row_bytes,
                static_cast<size_t>(part.rows * row_bytes));
    task.input_tiles.push_back(std::move(tile));
  }
  task.input_map = gather.map;
  task.se_table = gather.table;
  DPUEMU_RETURN_IF_ERROR(ValidateTask(task, t));
  DPUEMU_RETURN_IF_ERROR(
      CheckGather(task.input_view(), op.in_dtype, {gather.h, gather.w, gather.c}, op.in_zp).status());
  return task;
}

bool NeedsPadGather(const NceGeometry& g) {
  return g.pad_top > g.ky / 2 || g.pad_bottom > g.ky / 2 || g.pad_left > g.kx / 2 ||
         g.pad_right > g.kx / 2;
}

Pads ExcessPads(const NceGeometry& g) {
  return Pads{std::max<int64_t>(0, g.pad_top - g.ky / 2),
              std::max<int64_t>(0, g.pad_bottom - g.ky / 2),
              std::max<int64_t>(0, g.pad_left - g.kx / 2),
              std::max<int64_t>(0, g.pad_right - g.kx / 2)};
}

StatusOr<SeGather> PadVirtual(const SeGather& g, const Pads& pads) {
  DPUEMU_RETURN_IF_ERROR(CheckPads(pads));
  DPUEMU_RETURN_IF_ERROR(CheckRange("gather.h", g.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("gather.w", g.w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckChannels("gather.c", g.c));
  if (g.se_size < 16 || g.c % g.se_size != 0) {
    return InvalidArgument("gather.se_size = " + Str(g.se_size) + ": must divide C = " + Str(g.c));
  }
  const int64_t ses = g.c / g.se_size, pixel_bytes = g.c / 8;
  if (static_cast<int64_t>(g.table.size()) != g.h * g.w * ses ||
      static_cast<int64_t>(g.map.size()) != ActivationMapBytes(g.h * g.w * g.c)) {
    return InvalidArgument("gather: table or map size does not match its virtual tensor " +
                           Shape3(g.h, g.w, g.c));
  }
  SeGather out = g;
  out.h = g.h + pads.top + pads.bottom;
  out.w = g.w + pads.left + pads.right;
  DPUEMU_RETURN_IF_ERROR(CheckVirtualDim("pads", "height H + top + bottom", out.h));
  DPUEMU_RETURN_IF_ERROR(CheckVirtualDim("pads", "width W + left + right", out.w));
  if (out.h * out.w * out.c > kMaxInputElements) {
    return InvalidArgument("pads: virtual tensor " + Shape3(out.h, out.w, out.c) +
                           " has more than 2^31 elements");
  }
  out.table.clear();
  out.table.reserve(static_cast<size_t>(out.h * out.w * ses));
  out.map.assign(static_cast<size_t>(ActivationMapBytes(out.h * out.w * out.c)), 0);
  for (int64_t y = 0; y < out.h; ++y) {
    for (int64_t x = 0; x < out.w; ++x) {
      const int64_t vy = y - pads.top, vx = x - pads.left;
      const int64_t p = Clamp(vy, g.h) * g.w + Clamp(vx, g.w);
      out.table.insert(out.table.end(), g.table.begin() + p * ses, g.table.begin() + (p + 1) * ses);
      if (vy < 0 || vy >= g.h || vx < 0 || vx >= g.w) continue;
      std::memcpy(out.map.data() + (y * out.w + x) * pixel_bytes, g.map.data() + p * pixel_bytes,
                  static_cast<size_t>(pixel_bytes));
    }
  }
  out.description = g.description + "; constant border " + Str(pads.top) + "/" +
                    Str(pads.bottom) + "/" + Str(pads.left) + "/" + Str(pads.right) +
                    " (the conv's pads beyond kernel / 2)";
  return out;
}

NceGeometry GeometryOverBorder(const NceGeometry& g, const SeGather& bordered, const Pads& excess) {
  NceGeometry v = g;
  v.h = bordered.h;
  v.w = bordered.w;
  v.pad_top -= excess.top;
  v.pad_bottom -= excess.bottom;
  v.pad_left -= excess.left;
  v.pad_right -= excess.right;
  return v;
}

StatusOr<DpuTask> LowerLayerForDpu(const NceLayer& layer, const StorageOptions& opts,
                                   const Target& t) {
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  const NceGeometry& g = layer.op.g;
  if (!NeedsPadGather(g)) return LowerLayer(layer, opts, t);
  const Pads excess = ExcessPads(g);
  SeSource src;
  DPUEMU_ASSIGN_OR_RETURN(src, MakeSeSource(layer.input, SourceLayout{}, opts.input_sparse,
                                            layer.op.in_zp));
  SeGather gather;
  DPUEMU_ASSIGN_OR_RETURN(gather, PadGather(src, t, opts.input_se_size, excess, PadMode::kConstant));
  NceLayer v;
  v.name = layer.name;
  v.op = layer.op;
  v.op.g = GeometryOverBorder(g, gather, excess);
  v.quant = layer.quant;
  v.weights = layer.weights;
  StorageOptions o = opts;
  o.input_se_table = false;
  return LowerWithGather(v, layer.input, SourceLayout{}, gather, o, t);
}

StatusOr<DilatedPlan> PlanDilatedConv(const SeSource& src, const Target& t, int64_t se_size,
                                      const NceGeometry& g, int64_t dilation_y,
                                      int64_t dilation_x) {
  if (g.h != src.h || g.w != src.w || g.c != src.c) {
    return InvalidArgument("g: input " + Shape3(g.h, g.w, g.c) + " must equal the source " +
                           Shape3(src.h, src.w, src.c));
  }
  DPUEMU_RETURN_IF_ERROR(ValidateWindow(g));
  DPUEMU_RETURN_IF_ERROR(CheckRange("dilation_y", dilation_y, 1, 1024));
  DPUEMU_RETURN_IF_ERROR(CheckRange("dilation_x", dilation_x, 1, 1024));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.h", src.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("source.w", src.w, 1, kMaxSpatial));
  DilatedPlan plan;
  plan.geometry = g;
  plan.dilation_y = dilation_y;
  plan.dilation_x = dilation_x;

  // One axis: output count, phase step, sub-conv stride, and each phase's (first output, output
  // count, first source index, sub-grid source indices).
  struct AxisPhase {
    int64_t out0, outs, src0;
    std::vector<int64_t> idx;
  };
  auto axis = [](const std::string& name, int64_t n, int64_t k, int64_t stride, int64_t pad_begin,
                 int64_t pad_end, int64_t dilation, int64_t& out, int64_t& step,
                 int64_t& sub_stride, std::vector<AxisPhase>& phases) -> Status {
    const int64_t span = (k - 1) * dilation + 1;
    if (span > n + pad_begin + pad_end) {
      return InvalidArgument("dilation_" + name + ": the dilated kernel (k" + name +
                             " - 1) * dilation_" + name + " + 1 = " + Str(span) +
                             " is larger than the padded input (" + Str(n + pad_begin + pad_end) +
                             ")");
    }
    out = (n + pad_begin + pad_end - span) / stride + 1;
    const int64_t common = std::gcd(stride, dilation);
    step = dilation / common;
    sub_stride = stride / common;
    for (int64_t p = 0; p < std::min(step, out); ++p) {
      AxisPhase ph{p, (out - p + step - 1) / step, p * stride - pad_begin, {}};
      // Sub-grid index m is padded index p * stride + dilation * m; padding reads as zero and
      // addresses the nearest border pixel, as constant padding does.
      ph.idx.resize(static_cast<size_t>((ph.outs - 1) * sub_stride + k));
      for (size_t m = 0; m < ph.idx.size(); ++m) {
        const int64_t i = ph.src0 + dilation * static_cast<int64_t>(m);
        ph.idx[m] = i >= 0 && i < n ? i : InsertedZero(Clamp(i, n));
      }
      phases.push_back(std::move(ph));
    }
    return OkStatus();
  };
  std::vector<AxisPhase> ys, xs;
  DPUEMU_RETURN_IF_ERROR(axis("y", src.h, g.ky, g.stride_y, g.pad_top, g.pad_bottom, dilation_y,
                              plan.out_h, plan.step_y, plan.stride_y, ys));
  DPUEMU_RETURN_IF_ERROR(axis("x", src.w, g.kx, g.stride_x, g.pad_left, g.pad_right, dilation_x,
                              plan.out_w, plan.step_x, plan.stride_x, xs));
  for (const AxisPhase& py : ys) {
    for (const AxisPhase& px : xs) {
      DilatedPhase ph;
      ph.out_y0 = py.out0;
      ph.out_x0 = px.out0;
      ph.out_h = py.outs;
      ph.out_w = px.outs;
      ph.source_y0 = py.src0;
      ph.source_x0 = px.src0;
      DPUEMU_ASSIGN_OR_RETURN(
          ph.gather, BuildGather(src, t, se_size, py.idx, px.idx,
                                 "dilated phase (" + Str(py.out0) + ", " + Str(px.out0) + ")"));
      plan.phases.push_back(std::move(ph));
    }
  }
  return plan;
}

std::string DilatedPlan::ToString() const {
  const NceGeometry& g = geometry;
  std::string s = "dilated conv over " + Shape3(g.h, g.w, g.c) + ", kernel " + Str(g.ky) + "x" +
                  Str(g.kx) + ", dilation " + Str(dilation_y) + "x" + Str(dilation_x) +
                  ", stride " + Str(g.stride_y) + "x" + Str(g.stride_x) + ", pads " +
                  Str(g.pad_top) + "/" + Str(g.pad_bottom) + "/" + Str(g.pad_left) + "/" +
                  Str(g.pad_right) + " -> output " + Str(out_h) + "x" + Str(out_w) + ": " +
                  Str(phases.size()) + " phase(s), each a stride " + Str(stride_y) + "x" +
                  Str(stride_x) + " ZMConv with the dense kernel over an SE-gathered sub-grid\n";
  for (const DilatedPhase& p : phases) {
    s += "  out[" + Str(p.out_y0) + " + " + Str(step_y) + "*q][" + Str(p.out_x0) + " + " +
         Str(step_x) + "*r] (q < " + Str(p.out_h) + ", r < " + Str(p.out_w) + ") <- source rows " +
         Str(p.source_y0) + " + " + Str(dilation_y) + "*m, cols " + Str(p.source_x0) + " + " +
         Str(dilation_x) + "*n (outside = padding); " + p.gather.description + "\n";
  }
  return s;
}

StatusOr<std::vector<DpuTask>> LowerDilatedConv(const NceLayer& layer, const DilatedPlan& plan,
                                                const SourceLayout& layout,
                                                const StorageOptions& opts, const Target& t) {
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  const NceGeometry& a = layer.op.g;
  const NceGeometry& b = plan.geometry;
  if (a.h != b.h || a.w != b.w || a.c != b.c || a.ky != b.ky || a.kx != b.kx ||
      a.stride_y != b.stride_y || a.stride_x != b.stride_x || a.pad_top != b.pad_top ||
      a.pad_bottom != b.pad_bottom || a.pad_left != b.pad_left || a.pad_right != b.pad_right) {
    return InvalidArgument("layer.op.g: input, kernel, stride and padding must be the plan's");
  }
  std::vector<DpuTask> tasks;
  for (const DilatedPhase& p : plan.phases) {
    NceLayer sub;
    sub.name = layer.name + " phase (" + Str(p.out_y0) + ", " + Str(p.out_x0) + ")";
    sub.op = layer.op;
    sub.op.g.h = p.gather.h;
    sub.op.g.w = p.gather.w;
    sub.op.g.stride_y = plan.stride_y;
    sub.op.g.stride_x = plan.stride_x;
    sub.op.g.pad_top = sub.op.g.pad_bottom = sub.op.g.pad_left = sub.op.g.pad_right = 0;
    sub.quant = layer.quant;
    sub.weights = layer.weights;
    DpuTask task;
    DPUEMU_ASSIGN_OR_RETURN(task, LowerWithGather(sub, layer.input, layout, p.gather, opts, t));
    tasks.push_back(std::move(task));
  }
  return tasks;
}

StatusOr<Tensor> AssembleDilatedOutput(const DilatedPlan& plan,
                                       const std::vector<DpuOutput>& outputs, int32_t out_zp) {
  if (outputs.size() != plan.phases.size() || outputs.empty()) {
    return InvalidArgument("outputs: " + Str(outputs.size()) + " given, the plan has " +
                           Str(plan.phases.size()) + " phases");
  }
  // The plan decides where each phase's outputs land: every one must fall inside the output.
  DPUEMU_RETURN_IF_ERROR(CheckRange("plan.out_h", plan.out_h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("plan.out_w", plan.out_w, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("plan.step_y", plan.step_y, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("plan.step_x", plan.step_x, 1, kMaxSpatial));
  for (size_t i = 0; i < plan.phases.size(); ++i) {
    const DilatedPhase& p = plan.phases[i];
    const std::string f = "plan.phases[" + Str(i) + "]";
    DPUEMU_RETURN_IF_ERROR(CheckRange(f + ".out_y0", p.out_y0, 0, plan.out_h - 1));
    DPUEMU_RETURN_IF_ERROR(CheckRange(f + ".out_x0", p.out_x0, 0, plan.out_w - 1));
    DPUEMU_RETURN_IF_ERROR(
        CheckRange(f + ".out_h", p.out_h, 1, (plan.out_h - 1 - p.out_y0) / plan.step_y + 1));
    DPUEMU_RETURN_IF_ERROR(
        CheckRange(f + ".out_w", p.out_w, 1, (plan.out_w - 1 - p.out_x0) / plan.step_x + 1));
  }
  Tensor out;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const DilatedPhase& p = plan.phases[i];
    Tensor part;
    DPUEMU_ASSIGN_OR_RETURN(part, DenseOutput(outputs[i], out_zp));
    if (i == 0) {
      if (part.shape.size() != 3) {
        return InvalidArgument("outputs[0]: shape " + part.ShapeString() + " is not [OH, OW, K]");
      }
      out = Tensor(part.dtype, {plan.out_h, plan.out_w, part.shape[2]});
    }
    const int64_t k = out.shape[2];
    if (part.dtype != out.dtype || part.shape != std::vector<int64_t>{p.out_h, p.out_w, k}) {
      return InvalidArgument("outputs[" + Str(i) + "]: " + DTypeName(part.dtype) + " " +
                             part.ShapeString() + ", the phase needs " + DTypeName(out.dtype) +
                             " " + Shape3(p.out_h, p.out_w, k));
    }
    const int64_t run = k * DTypeBytes(out.dtype);
    for (int64_t q = 0; q < p.out_h; ++q) {
      for (int64_t r = 0; r < p.out_w; ++r) {
        const int64_t oy = p.out_y0 + plan.step_y * q, ox = p.out_x0 + plan.step_x * r;
        std::memcpy(out.bytes.data() + (oy * plan.out_w + ox) * run,
                    part.bytes.data() + (q * p.out_w + r) * run, static_cast<size_t>(run));
      }
    }
  }
  return out;
}

StatusOr<Tensor> RunDilatedConv(const NceLayer& layer, int64_t dilation_y, int64_t dilation_x,
                                const SourceLayout& layout, const StorageOptions& opts,
                                const Target& t, const ConvRunner& run, DilatedPlan* plan) {
  if (!run) return InvalidArgument("run: no runner given");
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  SeSource src;
  DPUEMU_ASSIGN_OR_RETURN(src,
                          MakeSeSource(layer.input, layout, opts.input_sparse, layer.op.in_zp));
  DilatedPlan p;
  DPUEMU_ASSIGN_OR_RETURN(
      p, PlanDilatedConv(src, t, opts.input_se_size, layer.op.g, dilation_y, dilation_x));
  std::vector<DpuTask> tasks;
  DPUEMU_ASSIGN_OR_RETURN(tasks, LowerDilatedConv(layer, p, layout, opts, t));
  std::vector<DpuOutput> outputs;
  for (const DpuTask& task : tasks) {
    DpuOutput o;
    DPUEMU_ASSIGN_OR_RETURN(o, run(task, t));
    outputs.push_back(std::move(o));
  }
  Tensor out;
  DPUEMU_ASSIGN_OR_RETURN(out, AssembleDilatedOutput(p, outputs, layer.op.ppe.out_zp));
  if (plan) *plan = std::move(p);
  return out;
}

}  // namespace dpuemu
