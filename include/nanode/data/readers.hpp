#pragma once
// Readers of the data formats of DESIGN.md §3: IDX (MNIST, Fashion-MNIST; gzipped
// or not), CIFAR-10/100 binary, NPY (uint8, float32/64, int32/64, C order) and PNG. Each
// checks what it reads and throws nanode::Error naming the file and what is wrong
// (a bad magic number, a truncated payload, trailing bytes, a label out of range).
// Link nanode::data (zlib and libpng) to use them.
#include <png.h>
#include <zlib.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
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

/// The whole file, gunzipped when it is gzip (zlib reads plain files unchanged).
/// A truncated or corrupt gzip stream is an error naming the file.
inline std::vector<uint8_t> read_maybe_gzipped(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  NANODE_CHECK(f != nullptr, path, ": cannot open (", std::strerror(errno), ")");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      fail(path, ": corrupt or truncated gzip data (", msg, ")");
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  int code = 0;
  const std::string msg = gzerror(f, &code);
  gzclose(f);
  // zlib reports a stream cut short only through its error state.
  NANODE_CHECK(code == Z_OK || code == Z_STREAM_END, path, ": corrupt or truncated gzip data (", msg, ")");
  return out;
}

inline uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

/// An IDX file of unsigned bytes (type 0x08), 1 to 4 dimensions.
inline Array read_idx(const std::string& path) {
  const std::vector<uint8_t> b = read_maybe_gzipped(path);
  NANODE_CHECK(b.size() >= 4, path, ": not an IDX file (", b.size(), " bytes, shorter than the 4-byte magic)");
  NANODE_CHECK(b[0] == 0 && b[1] == 0, path, ": not an IDX file (magic starts ", int(b[0]), " ", int(b[1]),
               ", expected 0 0)");
  NANODE_CHECK(b[2] == 0x08, path, ": IDX element type 0x", std::hex, int(b[2]), std::dec,
               " is not supported (only unsigned bytes, 0x08)");
  const int nd = b[3];
  NANODE_CHECK(nd >= 1 && nd <= 4, path, ": IDX with ", nd, " dimensions is not supported (1 to 4)");
  const size_t head = 4 + 4 * static_cast<size_t>(nd);
  NANODE_CHECK(b.size() >= head, path, ": truncated IDX header (", b.size(), " bytes, need ", head, ")");
  Array a;
  for (int i = 0; i < nd; ++i) {
    const uint32_t d = read_be32(b.data() + 4 + 4 * i);
    NANODE_CHECK(d > 0 && d < (1u << 28), path, ": IDX dimension ", i, " is ", d);
    a.dims.push_back(d);
  }
  const size_t expect = checked_bytes(path, a.dims, 1, b.size() - head);
  NANODE_CHECK(b.size() - head == expect, path, ": IDX ", (b.size() - head < expect ? "truncated" : "has trailing bytes"),
               ": header promises ", expect, " bytes of data, the file holds ", b.size() - head);
  a.bytes.assign(b.begin() + static_cast<std::ptrdiff_t>(head), b.end());
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
  const std::vector<uint8_t> b = read_maybe_gzipped(path);
  static const char magic[] = "\x93NUMPY";
  NANODE_CHECK(b.size() >= 10 && std::memcmp(b.data(), magic, 6) == 0, path, ": not an NPY file (bad magic)");
  const int major = b[6];
  NANODE_CHECK(major >= 1 && major <= 3, path, ": NPY version ", major, " is not supported");
  size_t hlen = 0, hstart = 0;
  if (major == 1) {
    hlen = b[8] | (size_t(b[9]) << 8), hstart = 10;
  } else {
    NANODE_CHECK(b.size() >= 12, path, ": truncated NPY header");
    hlen = b[8] | (size_t(b[9]) << 8) | (size_t(b[10]) << 16) | (size_t(b[11]) << 24), hstart = 12;
  }
  NANODE_CHECK(b.size() >= hstart + hlen, path, ": truncated NPY header (", b.size(), " bytes, header ends at ",
               hstart + hlen, ")");
  const std::string h(reinterpret_cast<const char*>(b.data() + hstart), hlen);
  auto value_of = [&](const std::string& key) {
    const size_t k = h.find("'" + key + "'");
    NANODE_CHECK(k != std::string::npos, path, ": NPY header has no '", key, "': ", h);
    const size_t colon = h.find(':', k);
    NANODE_CHECK(colon != std::string::npos, path, ": malformed NPY header: ", h);
    size_t v = colon + 1;
    while (v < h.size() && h[v] == ' ') ++v;
    return v;
  };
  Array a;
  {
    const size_t v = value_of("descr");
    const size_t e = h.find('\'', v + 1);
    NANODE_CHECK(v < h.size() && h[v] == '\'' && e != std::string::npos, path, ": malformed NPY descr: ", h);
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
    NANODE_CHECK(v < h.size() && h[v] == '(' && e != std::string::npos, path, ": malformed NPY shape: ", h);
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
        fail(path, ": malformed NPY shape '(", dims, ")'");
      }
      NANODE_CHECK(d >= 0, path, ": negative NPY dimension in '(", dims, ")'");
      a.dims.push_back(d);
      pos += used;
    }
  }
  const size_t esize = elem_size(a.elem), data = hstart + hlen;
  const size_t expect = checked_bytes(path, a.dims, esize, b.size() - data);
  NANODE_CHECK(b.size() - data == expect, path, ": NPY ", (b.size() - data < expect ? "truncated" : "has trailing bytes"),
               ": shape promises ", expect, " bytes of data, the file holds ", b.size() - data);
  a.bytes.assign(b.begin() + static_cast<std::ptrdiff_t>(data), b.end());
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

inline Image read_png(const std::string& path, int channels = 3) {
  NANODE_CHECK(channels == 1 || channels == 3, "read_png: channels must be 1 or 3, got ", channels);
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  NANODE_CHECK(png_image_begin_read_from_file(&img, path.c_str()) != 0, path, ": not a readable PNG (", img.message,
               ")");
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  Image out;
  out.h = img.height, out.w = img.width, out.c = channels;
  const uint64_t bytes = static_cast<uint64_t>(img.height) * img.width * static_cast<uint64_t>(channels);
  if (bytes > (uint64_t{1} << 31)) {
    png_image_free(&img);
    fail(path, ": PNG of ", img.width, "x", img.height, " is too large");
  }
  out.pixels.resize(static_cast<size_t>(bytes));
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
