#pragma once
// A module's parameters and buffers to and from a safetensors file, by name
// (Module::state_dict / load_state_dict): the format PyTorch users write with
// safetensors.torch.save_file(model.state_dict(), path). Needs nanode::data.
#include <map>
#include <string>

#include "nanode/data/safetensors.hpp"
#include "nanode/nn/module.hpp"

namespace nanode::io {

/// Writes every parameter and buffer of `m` under its dotted name (atomically).
inline void save_state_dict(const nn::Module& m, const std::string& path,
                            const std::map<std::string, std::string>& metadata = {}) {
  data::save_safetensors(path, m.state_dict(), metadata);
}

/// Loads parameters and buffers of `m` by name from a safetensors file; see
/// Module::load_state_dict for `strict` and the checks; a NaN or infinite value
/// is refused, naming its tensor. Errors name the file.
inline data::TensorFile load_state_dict(nn::Module& m, const std::string& path, bool strict = true) {
  data::TensorFile f = data::load_safetensors(path);
  data::require_finite(f);
  try {
    m.load_state_dict(f.tensors, strict);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  return f;
}

}  // namespace nanode::io
