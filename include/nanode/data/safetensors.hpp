#pragma once
// Tensors to and from the safetensors format: an 8-byte little-endian header
// length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets"}, ...,
// "__metadata__": {string: string}}), then the tensors' bytes. Saving is atomic:
// the file is written beside its destination, flushed, and renamed over it, so a
// run killed mid-save leaves the previous checkpoint intact. Loading checks every
// offset and size against the file. Uses nlohmann::json (nanode::data links it).
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nanode/core/error.hpp"
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

inline void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::vector<Tensor> host;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    NANODE_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
    NANODE_CHECK(!h.contains(name) && name != "__metadata__", "save_safetensors: duplicate name '", name, "'");
    host.push_back(t.cpu());
    const size_t bytes = host.back().nbytes();
    h[name] = {{"dtype", detail::st_dtype(t.dtype())},
               {"shape", t.shape().vec()},
               {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header = h.dump();
  while (header.size() % 8 != 0) header += ' ';  // keeps the data 8-byte aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    NANODE_CHECK(out.good(), tmp, ": cannot write (", std::strerror(errno), ")");
    const uint64_t n = header.size();
    char le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    out.write(le, 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& t : host) out.write(static_cast<const char*>(t.raw_data()), static_cast<std::streamsize>(t.nbytes()));
    out.flush();
    NANODE_CHECK(out.good(), tmp, ": write failed (disk full?)");
  }
  NANODE_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path, " (",
               std::strerror(errno), ")");
}

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
    fail(path, ": malformed safetensors header (", e.what(), ")");
  }
  NANODE_CHECK(h.is_object(), path, ": safetensors header is not a JSON object");
  const size_t data = 8 + n, avail = b.size() - data;
  TensorFile f;
  f.path = path;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      NANODE_CHECK(it->is_object(), path, ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        NANODE_CHECK(m->is_string(), path, ": metadata '", m.key(), "' is not a string");
        f.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& e = *it;
    try {
      const std::string dt = e.at("dtype").get<std::string>();
      const auto shape = e.at("shape").get<std::vector<int64_t>>();
      const auto off = e.at("data_offsets").get<std::vector<uint64_t>>();
      DType dtype;
      if (dt == "F32") dtype = DType::Float32;
      else if (dt == "F64") dtype = DType::Float64;
      else if (dt == "I32") dtype = DType::Int32;
      else fail("dtype ", dt, " is not supported (F32, F64, I32)");
      NANODE_CHECK(shape.size() <= 5, "rank ", shape.size(), " above 5");
      NANODE_CHECK(off.size() == 2 && off[0] <= off[1] && off[1] <= avail, "data_offsets outside the ", avail,
                   "-byte data section");
      uint64_t bytes = dtype_size(dtype);
      for (auto d : shape) {
        NANODE_CHECK(d >= 0, "negative dimension");
        const uint64_t ud = static_cast<uint64_t>(d);
        NANODE_CHECK(ud == 0 || bytes <= avail / ud, "shape promises more than the ", avail, "-byte data section");
        bytes *= ud;
      }
      NANODE_CHECK(off[1] - off[0] == bytes, "data_offsets span ", off[1] - off[0], " bytes, the shape needs ", bytes,
                   " (", dt, ")");
      Tensor t = Tensor::empty(Shape(shape), dtype);
      if (t.nbytes() > 0) std::memcpy(t.raw_data(), b.data() + data + off[0], t.nbytes());
      f.tensors.emplace_back(it.key(), t);
    } catch (const Error& err) {
      fail(path, ": tensor '", it.key(), "': ", err.what());
    } catch (const std::exception& err) {
      fail(path, ": tensor '", it.key(), "': malformed entry (", err.what(), ")");
    }
  }
  return f;
}

}  // namespace nanode::data
