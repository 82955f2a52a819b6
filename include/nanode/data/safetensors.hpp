#pragma once
// Tensors to and from the safetensors format: an 8-byte little-endian header
// length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets"}, ...,
// "__metadata__": {string: string}}), then the tensors' bytes. Saving is atomic:
// the file is written beside its destination under a name unique to the process,
// fsync'ed and renamed over it (then the folder is fsync'ed), so a run killed
// mid-save leaves the previous checkpoint intact. Each tensor's CRC-32 rides in the
// metadata and is checked on load, with the format's rules (exact integer shapes
// and offsets, tensors tiling the data). Uses nlohmann::json and zlib (nanode::data).
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nanode/autograd/anomaly.hpp"
#include "nanode/core/error.hpp"
#include "nanode/data/readers.hpp"
#include "nanode/tensor.hpp"

namespace nanode::data {

struct TensorFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  ///< in file order
  std::map<std::string, std::string> metadata;
  std::string path;  ///< where it was read from (for messages)
  const Tensor& at(const std::string& name) const {
    for (const auto& [n, t] : tensors)
      if (n == name) return t;
    fail(path.empty() ? "safetensors" : path, ": no tensor named '", name, "'");
  }
  bool contains(const std::string& name) const {
    for (const auto& [n, t] : tensors)
      if (n == name) return true;
    return false;
  }
};

namespace detail {
inline const char* st_dtype(DType d) {
  switch (d) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int32: return "I32";
  }
  return "?";
}
}  // namespace detail

/// The metadata key that holds tensor `name`'s CRC-32 (zlib's polynomial) as 8 hex
/// digits; "crc32:__metadata__" covers the other metadata entries. Other
/// safetensors tools read the file as usual and ignore them.
inline std::string crc_key(const std::string& name) { return "crc32:" + name; }
inline constexpr const char* kMetadataCrcKey = "crc32:__metadata__";

inline uint32_t crc32_of(const void* p, size_t n, uint32_t crc = 0) {
  const auto* b = static_cast<const Bytef*>(p);
  while (n > 0) {  // zlib takes uInt lengths
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, size_t{1} << 30));
    crc = static_cast<uint32_t>(::crc32(crc, b, chunk));
    b += chunk, n -= chunk;
  }
  return crc;
}
inline std::string crc_hex(uint32_t c) {
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", c);
  return buf;
}
/// The CRC of every metadata entry but the checksums, in key order.
inline uint32_t metadata_crc(const std::map<std::string, std::string>& m) {
  uint32_t c = 0;
  for (const auto& [k, v] : m) {
    if (k.rfind("crc32:", 0) == 0) continue;
    c = crc32_of(k.data(), k.size(), c);
    c = crc32_of("\0", 1, c);
    c = crc32_of(v.data(), v.size(), c);
    c = crc32_of("\0", 1, c);
  }
  return c;
}

/// Refuses a file any of whose float tensors holds a NaN or an infinity (weights
/// and optimizer state must be finite to be loaded), naming the tensor.
inline void require_finite(const TensorFile& f) {
  for (const auto& [name, t] : f.tensors) {
    const int64_t i = anomaly::first_nonfinite(t);
    if (i < 0) continue;
    fail(f.path, ": tensor '", excerpt(name, 80), "' holds a non-finite value (", anomaly::describe_bad(t, i),
         "); a model cannot be loaded from it");
  }
}

namespace detail {
/// Writes all of [p, p + n) to fd, or fails naming `path`.
inline void write_all(int fd, const void* p, size_t n, const std::string& path) {
  const auto* b = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, b, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    NANODE_CHECK(w > 0, path, ": write failed (", std::strerror(errno), ")");
    b += w, n -= static_cast<size_t>(w);
  }
}
/// Flushes a folder's entries (a rename in it) to the disk.
inline void fsync_folder(const std::string& file) {
  const size_t slash = file.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : file.substr(0, slash);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // not every filesystem lets a folder be opened; the rename is done
  ::fsync(fd);
  ::close(fd);
}
}  // namespace detail

/// Writes `tensors` and `metadata` as a safetensors file, atomically: into a temp
/// file unique to this process beside `path`, fsync'ed, renamed over `path`, and
/// the folder fsync'ed. A run killed at any point leaves the previous file whole.
/// Each tensor's CRC-32 and one of the metadata go into the metadata.
inline void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  std::map<std::string, std::string> meta = metadata;
  for (const auto& [k, v] : metadata)
    NANODE_CHECK(k.rfind("crc32:", 0) != 0, "save_safetensors: metadata key '", k, "' is reserved (crc32:*)");
  std::vector<Tensor> host;
  size_t offset = 0;
  nlohmann::ordered_json entries = nlohmann::ordered_json::object();
  for (const auto& [name, t] : tensors) {
    NANODE_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
    NANODE_CHECK(!entries.contains(name) && name != "__metadata__", "save_safetensors: duplicate name '", name, "'");
    host.push_back(t.cpu());
    const size_t bytes = host.back().nbytes();
    entries[name] = {{"dtype", detail::st_dtype(t.dtype())},
                     {"shape", t.shape().vec()},
                     {"data_offsets", {offset, offset + bytes}}};
    meta[crc_key(name)] = crc_hex(crc32_of(host.back().raw_data(), bytes));
    offset += bytes;
  }
  meta[kMetadataCrcKey] = crc_hex(metadata_crc(meta));
  h["__metadata__"] = meta;
  for (auto it = entries.begin(); it != entries.end(); ++it) h[it.key()] = it.value();
  std::string header = h.dump();
  while (header.size() % 8 != 0) header += ' ';  // keeps the data 8-byte aligned

  static std::atomic<uint64_t> serial{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(serial++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  NANODE_CHECK(fd >= 0, tmp, ": cannot write (", std::strerror(errno), ")");
  try {
    const uint64_t n = header.size();
    char le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    detail::write_all(fd, le, 8, tmp);
    detail::write_all(fd, header.data(), header.size(), tmp);
    for (const auto& t : host) detail::write_all(fd, t.raw_data(), t.nbytes(), tmp);
    NANODE_CHECK(::fsync(fd) == 0, tmp, ": fsync failed (", std::strerror(errno), ")");
    NANODE_CHECK(::close(fd) == 0, tmp, ": close failed (", std::strerror(errno), ")");
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    fail("cannot rename ", tmp, " to ", path, " (", why, ")");
  }
  detail::fsync_folder(path);
}

/// Reads a safetensors file. Enforces the format: exact non-negative integer
/// shapes and offsets, products that do not overflow, tensors that tile the data
/// section exactly (no overlap, no uncovered byte). When the file carries nanode's
/// checksums (crc32:* metadata), every tensor and the metadata must match them.
/// Errors name the file and the tensor; text from the file is quoted escaped.
inline TensorFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  NANODE_CHECK(in.good(), path, ": cannot open (", std::strerror(errno), ")");
  const std::vector<char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  NANODE_CHECK(b.size() >= 8, path, ": not a safetensors file (", b.size(), " bytes)");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(b[static_cast<size_t>(i)])) << (8 * i);
  NANODE_CHECK(n <= b.size() - 8, path, ": truncated safetensors header (", n, " bytes promised, ", b.size() - 8,
               " present)");
  nlohmann::ordered_json h;
  try {
    h = nlohmann::ordered_json::parse(b.begin() + 8, b.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const std::exception& e) {
    fail(path, ": malformed safetensors header (", excerpt(e.what(), 200), ")");
  }
  NANODE_CHECK(h.is_object(), path, ": safetensors header is not a JSON object");
  const size_t data = 8 + n, avail = b.size() - data;
  TensorFile f;
  f.path = path;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  // An exact non-negative integer (a float, a negative or a huge number is refused).
  auto exact = [](const nlohmann::ordered_json& j, const char* what) -> uint64_t {
    NANODE_CHECK(j.is_number_unsigned(), what, " must hold non-negative integers, got ", excerpt(j.dump(), 60));
    return j.get<uint64_t>();
  };
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string name = excerpt(it.key(), 80);
    if (it.key() == "__metadata__") {
      NANODE_CHECK(it->is_object(), path, ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        NANODE_CHECK(m->is_string(), path, ": metadata '", excerpt(m.key(), 80), "' is not a string");
        f.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& e = *it;
    try {
      NANODE_CHECK(e.is_object(), "entry is not an object");
      const auto& jdt = e.at("dtype");
      NANODE_CHECK(jdt.is_string(), "dtype is not a string");
      const std::string dt = jdt.get<std::string>();
      DType dtype;
      if (dt == "F32") dtype = DType::Float32;
      else if (dt == "F64") dtype = DType::Float64;
      else if (dt == "I32") dtype = DType::Int32;
      else fail("dtype '", excerpt(dt, 40), "' is not supported (F32, F64, I32)");
      const auto& js = e.at("shape");
      NANODE_CHECK(js.is_array(), "shape is not an array");
      NANODE_CHECK(js.size() <= 5, "rank ", js.size(), " above 5");
      std::vector<int64_t> shape;
      uint64_t numel = 1, nonzero = 1;
      for (const auto& d : js) {
        const uint64_t ud = exact(d, "shape");
        NANODE_CHECK(ud <= static_cast<uint64_t>(INT64_MAX), "shape dimension ", ud, " is out of range");
        if (ud != 0 && (__builtin_mul_overflow(nonzero, ud, &nonzero) || nonzero > static_cast<uint64_t>(INT64_MAX)))
          fail("shape ", excerpt(js.dump(), 80), " overflows 64-bit sizes");
        numel *= ud;
        shape.push_back(static_cast<int64_t>(ud));
      }
      const auto& jo = e.at("data_offsets");
      NANODE_CHECK(jo.is_array() && jo.size() == 2, "data_offsets is not a pair [begin, end]");
      const uint64_t b0 = exact(jo[0], "data_offsets"), b1 = exact(jo[1], "data_offsets");
      NANODE_CHECK(b0 <= b1 && b1 <= avail, "data_offsets [", b0, ", ", b1, "] outside the ", avail,
                   "-byte data section");
      uint64_t bytes = 0;
      NANODE_CHECK(!__builtin_mul_overflow(numel, dtype_size(dtype), &bytes) && bytes <= avail,
                   "shape promises more than the ", avail, "-byte data section");
      NANODE_CHECK(b1 - b0 == bytes, "data_offsets span ", b1 - b0, " bytes, the shape needs ", bytes, " (", dt, ")");
      spans.push_back({b0, b1, name});
      f.tensors.emplace_back(it.key(), Tensor());
      Tensor t = Tensor::empty(Shape(shape), dtype);
      if (t.nbytes() > 0) std::memcpy(t.raw_data(), b.data() + data + b0, t.nbytes());
      f.tensors.back().second = t;
    } catch (const Error& err) {
      fail(path, ": tensor '", name, "': ", err.what());
    } catch (const std::exception& err) {
      fail(path, ": tensor '", name, "': malformed entry (", excerpt(err.what(), 120), ")");
    }
  }
  // The tensors must tile the data section: sorted by offset, each starts where
  // the previous one ended, and the last ends at the end of the file.
  std::stable_sort(spans.begin(), spans.end(), [](const Span& a, const Span& c) { return a.begin < c.begin; });
  uint64_t at = 0;
  const Span* prev = nullptr;
  for (const auto& sp : spans) {
    NANODE_CHECK(sp.begin >= at, path, ": tensor '", sp.name, "' (bytes ", sp.begin, "..", sp.end, ") overlaps tensor '",
                 prev ? prev->name : "", "' (bytes ", prev ? prev->begin : 0, "..", at, ")");
    NANODE_CHECK(sp.begin == at, path, ": bytes ", at, "..", sp.begin, " of the data section belong to no tensor");
    at = sp.end, prev = &sp;
  }
  NANODE_CHECK(at == avail, path, ": bytes ", at, "..", avail, " of the data section belong to no tensor (",
               spans.empty() ? "no tensors" : "after the last one", ")");
  // nanode's checksums, when the file has them.
  if (auto mc = f.metadata.find(kMetadataCrcKey); mc != f.metadata.end()) {
    NANODE_CHECK(mc->second == crc_hex(metadata_crc(f.metadata)), path,
                 ": the metadata do not match their checksum (the file is corrupt)");
    for (const auto& [name, t] : f.tensors) {
      auto c = f.metadata.find(crc_key(name));
      NANODE_CHECK(c != f.metadata.end(), path, ": tensor '", excerpt(name, 80), "' has no checksum (crc32:",
                   excerpt(name, 80), ") although the file carries them");
      const std::string got = crc_hex(crc32_of(t.raw_data(), t.nbytes()));
      NANODE_CHECK(c->second == got, path, ": tensor '", excerpt(name, 80), "' does not match its checksum (stored ",
                   excerpt(c->second, 20), ", computed ", got, "): the file is corrupt");
    }
  }
  return f;
}

}  // namespace nanode::data
