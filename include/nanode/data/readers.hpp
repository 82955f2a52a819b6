#pragma once
// Readers of the data formats of DESIGN.md §3: IDX (MNIST, Fashion-MNIST; gzipped
// or not), CIFAR-10/100 binary, NPY (uint8, float32/64, int32/64, C order) and PNG. Each
// checks what it reads and throws nanode::Error naming the file and what is wrong
// (a bad magic number, a truncated payload, trailing bytes, a label out of range).
// Link nanode::data (zlib and libpng) to use them.
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "nanode/core/error.hpp"

namespace nanode::data {

/// Element types of the arrays the readers return (NPY's descr in brackets).
enum class Elem { U8 /* |u1 */, F32 /* <f4 */, F64 /* <f8 */, I32 /* <i4 */, I64 /* <i8 */ };
inline size_t elem_size(Elem e) {
  switch (e) {
    case Elem::U8: return 1;
    case Elem::F32:
    case Elem::I32: return 4;
    case Elem::F64:
    case Elem::I64: return 8;
  }
  return 1;
}
inline const char* npy_descr(Elem e) {
  switch (e) {
    case Elem::U8: return "|u1";
    case Elem::F32: return "<f4";
    case Elem::F64: return "<f8";
    case Elem::I32: return "<i4";
    case Elem::I64: return "<i8";
  }
  return "?";
}

/// A dense array read from a file: its dimensions and raw element bytes.
struct Array {
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;  ///< elements of type `elem`, little-endian
  Elem elem = Elem::U8;
  bool is_float32 = false;     ///< elem == Elem::F32 (kept for older callers)
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
};

/// At most `max` characters of untrusted text (a header, a name from a file) fit
/// for an error message: control and non-ASCII bytes as \xNN, quotes and
/// backslashes escaped, "..." when cut.
inline std::string excerpt(const std::string& s, size_t max = 120) {
  std::string out;
  const char* hex = "0123456789abcdef";
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\' || c == '"') {
      out += '\\', out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x", out += hex[c >> 4], out += hex[c & 15];
    }
  }
  return out;
}

/// The byte count dims x elem, or fail (naming `path`) when it exceeds `limit`:
/// a header's promise is checked against the file before any product can overflow.
inline uint64_t checked_bytes(const std::string& path, const std::vector<int64_t>& dims, uint64_t elem,
                              uint64_t limit) {
  uint64_t n = elem;
  for (auto d : dims) {
    NANODE_CHECK(d >= 0, path, ": negative dimension ", d);
    const uint64_t ud = static_cast<uint64_t>(d);
    if (ud != 0 && n > limit / ud)
      fail(path, ": truncated or corrupt: the header promises more data than the file holds (", limit, " bytes)");
    n *= ud;
  }
  return n;
}

/// A file read incrementally, gunzipped on the fly when it is gzip (zlib reads
/// plain files unchanged). It knows how many bytes the file can deliver at most
/// (its size, or 1032x its size for deflate, the format's largest ratio), so a
/// header's promise is checked before anything is allocated for it, and reading
/// stops at the first inconsistency: a gzip bomb costs what its header promised.
class ByteSource {
 public:
  /// deflate cannot expand data by more than 1032:1 (a 258-byte match per ~2 bits).
  static constexpr uint64_t kDeflateRatio = 1032;

  explicit ByteSource(std::string path) : path_(std::move(path)) {
    std::ifstream probe(path_, std::ios::binary | std::ios::ate);
    NANODE_CHECK(probe.good(), path_, ": cannot open (", std::strerror(errno), ")");
    const auto end = probe.tellg();
    NANODE_CHECK(end >= 0, path_, ": cannot read its size (not a regular file?)");
    file_bytes_ = static_cast<uint64_t>(end);
    probe.seekg(0);
    unsigned char magic[2] = {0, 0};
    probe.read(reinterpret_cast<char*>(magic), 2);
    gzip_ = probe.gcount() == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    f_ = gzopen(path_.c_str(), "rb");
    NANODE_CHECK(f_ != nullptr, path_, ": cannot open (", std::strerror(errno), ")");
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;
  ~ByteSource() {
    if (f_) gzclose(f_);
  }

  const std::string& path() const { return path_; }
  bool gzip() const { return gzip_; }
  uint64_t consumed() const { return consumed_; }
  /// The most bytes still to come (exact for a plain file, a bound for gzip).
  uint64_t can_deliver() const {
    const uint64_t total = gzip_ ? file_bytes_ * kDeflateRatio : file_bytes_;
    return total > consumed_ ? total - consumed_ : 0;
  }

  /// Up to n bytes into dst; fewer only at the end of the data.
  size_t read(void* dst, size_t n) {
    size_t got = 0;
    auto* out = static_cast<uint8_t*>(dst);
    while (got < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - got, size_t{1} << 30));
      const int r = gzread(f_, out + got, chunk);
      if (r < 0) corrupt();
      if (r == 0) {
        int code = 0;
        const char* msg = gzerror(f_, &code);
        // zlib reports a stream cut short only through its error state.
        if (code != Z_OK && code != Z_STREAM_END) corrupt(msg);
        break;
      }
      got += static_cast<size_t>(r);
    }
    consumed_ += got;
    return got;
  }
  /// Exactly n bytes of `what`, or an error saying how many the file held.
  void read_exact(void* dst, size_t n, const char* what) {
    const size_t got = read(dst, n);
    NANODE_CHECK(got == n, path_, ": truncated ", what, " (", n, " bytes expected, ", got, " present)");
  }
  /// True when no byte is left (reads at most one).
  bool at_end() {
    uint8_t b;
    if (read(&b, 1) == 0) return true;
    --consumed_;
    return false;
  }

 private:
  [[noreturn]] void corrupt(const char* msg = nullptr) {
    int code = 0;
    const std::string m = msg ? msg : gzerror(f_, &code);
    fail(path_, ": corrupt or truncated ", gzip_ ? "gzip data" : "file", " (", m, ")");
  }
  std::string path_;
  gzFile f_ = nullptr;
  uint64_t file_bytes_ = 0, consumed_ = 0;
  bool gzip_ = false;
};

/// Reads the `expect`-byte payload a header promised, after checking that the
/// file can deliver it, then requires the file to end there.
inline std::vector<uint8_t> read_payload(ByteSource& src, uint64_t expect, const char* format) {
  NANODE_CHECK(expect <= src.can_deliver(), src.path(), ": truncated or corrupt ", format, ": the header promises ",
               expect, " bytes of data, more than the ", (src.gzip() ? "compressed " : ""), "file can hold");
  std::vector<uint8_t> out(static_cast<size_t>(expect));
  const size_t got = src.read(out.data(), out.size());
  NANODE_CHECK(got == expect, src.path(), ": ", format, " truncated: header promises ", expect,
               " bytes of data, the file holds ", got);
  NANODE_CHECK(src.at_end(), src.path(), ": ", format, " has trailing bytes after the ", expect,
               " bytes of data its header promises");
  return out;
}

inline uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

/// An IDX file of unsigned bytes (type 0x08), 1 to 4 dimensions, gzipped or not.
inline Array read_idx(const std::string& path) {
  ByteSource src(path);
  uint8_t b[16];
  const size_t got = src.read(b, 4);
  NANODE_CHECK(got == 4, path, ": not an IDX file (", got, " bytes, shorter than the 4-byte magic)");
  NANODE_CHECK(b[0] == 0 && b[1] == 0, path, ": not an IDX file (magic starts ", int(b[0]), " ", int(b[1]),
               ", expected 0 0)");
  NANODE_CHECK(b[2] == 0x08, path, ": IDX element type 0x", std::hex, int(b[2]), std::dec,
               " is not supported (only unsigned bytes, 0x08)");
  const int nd = b[3];
  NANODE_CHECK(nd >= 1 && nd <= 4, path, ": IDX with ", nd, " dimensions is not supported (1 to 4)");
  src.read_exact(b, 4 * static_cast<size_t>(nd), "IDX header");
  Array a;
  for (int i = 0; i < nd; ++i) {
    const uint32_t d = read_be32(b + 4 * i);
    NANODE_CHECK(d > 0 && d < (1u << 28), path, ": IDX dimension ", i, " is ", d);
    a.dims.push_back(d);
  }
  a.bytes = read_payload(src, checked_bytes(path, a.dims, 1, src.can_deliver()), "IDX");
  return a;
}

/// Labelled images as bytes: images [N, C, H, W] uint8, labels [N].
struct ImageSet {
  int64_t n = 0, c = 0, h = 0, w = 0;
  std::vector<uint8_t> images;
  std::vector<int32_t> labels;
  int64_t classes = 0;
};

/// MNIST-style IDX pair: images [N, H, W], labels [N] < classes.
inline ImageSet read_idx_pair(const std::string& images, const std::string& labels, int64_t classes = 10) {
  Array im = read_idx(images), lb = read_idx(labels);
  NANODE_CHECK(im.dims.size() == 3, images, ": expected 3 IDX dimensions [N, H, W], got ", im.dims.size());
  NANODE_CHECK(lb.dims.size() == 1, labels, ": expected 1 IDX dimension [N], got ", lb.dims.size());
  NANODE_CHECK(im.dims[0] == lb.dims[0], images, " holds ", im.dims[0], " images but ", labels, " holds ", lb.dims[0],
               " labels");
  ImageSet s;
  s.n = im.dims[0], s.c = 1, s.h = im.dims[1], s.w = im.dims[2], s.classes = classes;
  s.images = std::move(im.bytes);
  s.labels.reserve(lb.bytes.size());
  for (size_t i = 0; i < lb.bytes.size(); ++i) {
    NANODE_CHECK(lb.bytes[i] < classes, labels, ": label ", int(lb.bytes[i]), " of item ", i, " is outside [0, ",
                 classes, ")");
    s.labels.push_back(lb.bytes[i]);
  }
  return s;
}

/// CIFAR binary files appended in order. CIFAR-10: records of 1 label byte + 3072
/// image bytes; CIFAR-100 (`cifar100`): coarse label, fine label, 3072 bytes (the
/// fine label is used, or the coarse one with `coarse`).
inline ImageSet read_cifar(const std::vector<std::string>& files, bool cifar100, bool coarse = false) {
  const size_t label_bytes = cifar100 ? 2 : 1, rec = label_bytes + 3072;
  const int64_t classes = cifar100 ? (coarse ? 20 : 100) : 10;
  ImageSet s;
  s.c = 3, s.h = 32, s.w = 32, s.classes = classes;
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    NANODE_CHECK(in.good(), path, ": cannot open (", std::strerror(errno), ")");
    const std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    NANODE_CHECK(!b.empty() && b.size() % rec == 0, path, ": size ", b.size(), " is not a whole number of ", rec,
                 "-byte CIFAR-", cifar100 ? "100" : "10", " records (truncated or not a CIFAR file)");
    for (size_t r = 0; r < b.size() / rec; ++r) {
      const uint8_t* p = b.data() + r * rec;
      const int label = cifar100 ? (coarse ? p[0] : p[1]) : p[0];
      NANODE_CHECK(label < classes, path, ": record ", r, " has label ", label, ", outside [0, ", classes, ")");
      s.labels.push_back(label);
      s.images.insert(s.images.end(), p + label_bytes, p + rec);
      ++s.n;
    }
  }
  NANODE_CHECK(s.n > 0, "read_cifar: no files given");
  return s;
}

/// An NPY array, C order, of uint8 ('|u1'), or little-endian float32 ('<f4'),
/// float64 ('<f8'), int32 ('<i4') or int64 ('<i8').
inline Array read_npy(const std::string& path) {
  ByteSource src(path);
  uint8_t pre[12];
  static const char magic[] = "\x93NUMPY";
  const size_t got = src.read(pre, 10);
  NANODE_CHECK(got == 10 && std::memcmp(pre, magic, 6) == 0, path, ": not an NPY file (bad magic)");
  const int major = pre[6];
  NANODE_CHECK(major >= 1 && major <= 3, path, ": NPY version ", major, " is not supported");
  size_t hlen = 0;
  if (major == 1) {
    hlen = pre[8] | (size_t(pre[9]) << 8);
  } else {
    src.read_exact(pre + 10, 2, "NPY header length");
    hlen = pre[8] | (size_t(pre[9]) << 8) | (size_t(pre[10]) << 16) | (size_t(pre[11]) << 24);
  }
  // numpy writes headers of a few hundred bytes; 1 MiB bounds what a corrupt length costs.
  NANODE_CHECK(hlen <= (size_t{1} << 20) && hlen <= src.can_deliver(), path, ": truncated or corrupt NPY header ("
               "its length field says ", hlen, " bytes)");
  std::string h(hlen, '\0');
  src.read_exact(h.data(), hlen, "NPY header");
  auto value_of = [&](const std::string& key) {
    const size_t k = h.find("'" + key + "'");
    NANODE_CHECK(k != std::string::npos, path, ": NPY header has no '", key, "': ", excerpt(h));
    const size_t colon = h.find(':', k);
    NANODE_CHECK(colon != std::string::npos, path, ": malformed NPY header: ", excerpt(h));
    size_t v = colon + 1;
    while (v < h.size() && h[v] == ' ') ++v;
    return v;
  };
  Array a;
  {
    const size_t v = value_of("descr");
    const size_t e = h.find('\'', v + 1);
    NANODE_CHECK(v < h.size() && h[v] == '\'' && e != std::string::npos, path, ": malformed NPY descr: ", excerpt(h));
    const std::string descr = h.substr(v + 1, e - v - 1);
    if (descr == "|u1" || descr == "<u1") a.elem = Elem::U8;
    else if (descr == "<f4") a.elem = Elem::F32;
    else if (descr == "<f8") a.elem = Elem::F64;
    else if (descr == "<i4") a.elem = Elem::I32;
    else if (descr == "<i8") a.elem = Elem::I64;
    else
      fail(path, ": NPY dtype '", descr, "' is not supported (uint8 '|u1'; little-endian float32 '<f4', float64 "
           "'<f8', int32 '<i4', int64 '<i8')");
    a.is_float32 = a.elem == Elem::F32;
  }
  {
    const size_t v = value_of("fortran_order");
    NANODE_CHECK(h.compare(v, 5, "False") == 0, path, ": Fortran-order NPY arrays are not supported");
  }
  {
    const size_t v = value_of("shape");
    const size_t e = h.find(')', v);
    NANODE_CHECK(v < h.size() && h[v] == '(' && e != std::string::npos, path, ": malformed NPY shape: ", excerpt(h));
    std::string dims = h.substr(v + 1, e - v - 1);
    size_t pos = 0;
    while (pos < dims.size()) {
      while (pos < dims.size() && (dims[pos] == ' ' || dims[pos] == ',')) ++pos;
      if (pos >= dims.size()) break;
      size_t used = 0;
      long long d = -1;
      try {
        d = std::stoll(dims.substr(pos), &used);
      } catch (const std::exception&) {
        fail(path, ": malformed NPY shape '(", excerpt(dims), ")'");
      }
      NANODE_CHECK(d >= 0, path, ": negative NPY dimension in '(", excerpt(dims), ")'");
      a.dims.push_back(d);
      pos += used;
    }
  }
  a.bytes = read_payload(src, checked_bytes(path, a.dims, elem_size(a.elem), src.can_deliver()), "NPY");
  return a;
}

/// Writes an NPY (version 1) file of `elem` data (C order, little-endian).
inline void write_npy(const std::string& path, const std::vector<int64_t>& dims, const void* data, Elem elem) {
  std::string shape = "(";
  int64_t n = 1;
  for (auto d : dims) {
    NANODE_CHECK(d >= 0, "write_npy: ", path, ": negative dimension ", d);
    shape += std::to_string(d) + ", ", n *= d;
  }
  if (dims.size() > 1) shape.resize(shape.size() - 1), shape.back() = ')';
  else shape += ")";
  std::string h = std::string("{'descr': '") + npy_descr(elem) + "', 'fortran_order': False, 'shape': " + shape +
                  ", }";
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::ofstream out(path, std::ios::binary);
  NANODE_CHECK(out.good(), path, ": cannot write (", std::strerror(errno), ")");
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(h.size());
  const char le[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(le, 2);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n * static_cast<int64_t>(elem_size(elem))));
  NANODE_CHECK(out.good(), path, ": write failed");
}

/// Writes an NPY file of uint8 or float32 data.
inline void write_npy(const std::string& path, const std::vector<int64_t>& dims, const void* data, bool float32) {
  write_npy(path, dims, data, float32 ? Elem::F32 : Elem::U8);
}

/// A PNG image as bytes [H, W, C], C = 1 (gray) or 3 (RGB): other layouts are
/// converted by libpng (alpha is composited away).
struct Image {
  int64_t h = 0, w = 0, c = 0;
  std::vector<uint8_t> pixels;
};

/// The most pixels read_png accepts unless told otherwise (8192 x 8192).
inline constexpr int64_t kPngMaxPixels = int64_t{1} << 26;

/// Reads a PNG as gray (channels = 1) or RGB (3). Before allocating, its header's
/// size is checked against `max_pixels` and against what the file can hold: PNG
/// rows are deflated, at least 1 bit per pixel plus a filter byte per row, and
/// deflate expands at most 1032:1, so a tiny file cannot claim a huge image.
inline Image read_png(const std::string& path, int channels = 3, int64_t max_pixels = kPngMaxPixels) {
  NANODE_CHECK(channels == 1 || channels == 3, "read_png: channels must be 1 or 3, got ", channels);
  NANODE_CHECK(max_pixels > 0, "read_png: max_pixels must be positive, got ", max_pixels);
  uint64_t file_bytes = 0;
  {
    std::ifstream probe(path, std::ios::binary | std::ios::ate);
    NANODE_CHECK(probe.good(), path, ": cannot open (", std::strerror(errno), ")");
    const auto end = probe.tellg();
    NANODE_CHECK(end >= 0, path, ": cannot read its size (not a regular file?)");
    file_bytes = static_cast<uint64_t>(end);
  }
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  NANODE_CHECK(png_image_begin_read_from_file(&img, path.c_str()) != 0, path, ": not a readable PNG (", img.message,
               ")");
  const uint64_t w = img.width, h = img.height;
  auto refuse = [&](auto&&... why) {
    png_image_free(&img);
    fail(path, ": PNG header claims ", w, "x", h, " pixels, ", why...);
  };
  if (w * h > static_cast<uint64_t>(max_pixels)) refuse("more than the limit of ", max_pixels, " (max_pixels)");
  const uint64_t least_raw = h * (1 + (w + 7) / 8);
  if (least_raw > file_bytes * ByteSource::kDeflateRatio + 1024)
    refuse("which need at least ", least_raw, " bytes of image data; a ", file_bytes,
           "-byte file cannot hold them (truncated or corrupt)");
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  Image out;
  out.h = static_cast<int64_t>(h), out.w = static_cast<int64_t>(w), out.c = channels;
  out.pixels.resize(static_cast<size_t>(w * h * static_cast<uint64_t>(channels)));
  if (png_image_finish_read(&img, nullptr, out.pixels.data(), 0, nullptr) == 0) {
    const std::string msg = img.message;
    png_image_free(&img);
    fail(path, ": corrupt or truncated PNG (", msg, ")");
  }
  return out;
}

/// Writes 8-bit gray (c = 1) or RGB (c = 3) pixels [H, W, C] as a PNG.
inline void write_png(const std::string& path, const Image& im) {
  NANODE_CHECK(im.c == 1 || im.c == 3, "write_png: channels must be 1 or 3, got ", im.c);
  NANODE_CHECK(static_cast<int64_t>(im.pixels.size()) == im.h * im.w * im.c, "write_png: ", im.pixels.size(),
               " bytes for a ", im.h, "x", im.w, "x", im.c, " image");
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(im.w), img.height = static_cast<png_uint_32>(im.h);
  img.format = im.c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  NANODE_CHECK(png_image_write_to_file(&img, path.c_str(), 0, im.pixels.data(), 0, nullptr) != 0, path,
               ": cannot write PNG (", img.message, ")");
}

}  // namespace nanode::data
