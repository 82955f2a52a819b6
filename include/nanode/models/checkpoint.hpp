#pragma once
// Training checkpoints shared by the trainers: a safetensors file (written
// atomically by save_safetensors) with the model's parameters ("model.<name>"),
// buffers ("buffer.<name>"), the optimizer's state ("optim.<index>.<name>") and
// string metadata: a format tag, the run's settings ("config"), epochs done and
// optimizer steps. Loading checks every one of them against the run that
// resumes and names what does not match.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nanode/data/safetensors.hpp"
#include "nanode/nn/module.hpp"
#include "nanode/nn/optim.hpp"

namespace nanode::models {

inline void save_training_state(const std::string& path, nn::Module& model, const optim::Optimizer& opt,
                                std::map<std::string, std::string> meta) {
  std::vector<std::pair<std::string, Tensor>> ts;
  for (auto& [n, v] : model.named_parameters()) ts.emplace_back("model." + n, v.data());
  for (auto& [n, v] : model.named_buffers()) ts.emplace_back("buffer." + n, v.data());
  for (auto& [k, t] : opt.state()) ts.emplace_back("optim." + k, t);
  meta["optimizer_steps"] = std::to_string(opt.steps());
  data::save_safetensors(path, ts, meta);
}

/// What a checkpoint must match to be resumed from.
struct ResumeCheck {
  std::string format;       ///< e.g. "nanode-classifier-1"
  std::string fingerprint;  ///< the run's settings, compared with the "config" metadata
  int64_t max_epochs = 0;   ///< epochs_done must be in [0, max_epochs]
  int64_t steps_per_epoch = 0;
  size_t state_per_param = 0;  ///< optimizer state tensors per parameter after a step
};

/// Loads a checkpoint of save_training_state into model and opt after checking
/// it against `check`; returns its metadata (with "epochs_done" validated).
inline std::map<std::string, std::string> load_training_state(const std::string& path, nn::Module& model,
                                                              optim::Optimizer& opt, const ResumeCheck& check,
                                                              int64_t* epochs_done) {
  const data::TensorFile f = data::load_safetensors(path);  // checksums checked here
  data::require_finite(f);
  auto meta = [&](const std::string& k) {
    auto it = f.metadata.find(k);
    NANODE_CHECK(it != f.metadata.end(), path, ": not a ", check.format, " checkpoint (no '", k, "')");
    return it->second;
  };
  auto meta_int = [&](const std::string& k, int64_t lo, int64_t hi) {
    const std::string v = meta(k);
    size_t used = 0;
    long long n = -1;
    try {
      n = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    NANODE_CHECK(used == v.size() && !v.empty() && n >= lo && n <= hi, path, ": metadata '", k, "' is '", v,
                 "', expected an integer in [", lo, ", ", hi, "]");
    return static_cast<int64_t>(n);
  };
  NANODE_CHECK(meta("format") == check.format, path, ": unknown checkpoint format '", meta("format"), "' (expected '",
               check.format, "')");
  NANODE_CHECK(meta("config") == check.fingerprint, path,
               ": was written by a run with different settings:\n  checkpoint: ", meta("config"),
               "\n  this run:   ", check.fingerprint);
  auto load_into = [&](const std::string& name, Var& v) {
    NANODE_CHECK(f.contains(name), path, ": has no tensor '", name, "' that the model needs");
    const Tensor& t = f.at(name);
    NANODE_CHECK(t.shape() == v.shape() && t.dtype() == v.dtype(), path, ": tensor '", name, "' is ",
                 dtype_name(t.dtype()), " ", t.shape(), ", the model needs ", dtype_name(v.dtype()), " ", v.shape());
    v.mutable_data() = t.to(v.device()).clone();
  };
  for (auto& [n, v] : model.named_parameters()) load_into("model." + n, v);
  for (auto& [n, v] : model.named_buffers()) load_into("buffer." + n, v);
  model.notify_state_loaded();  // e.g. random features rebuild their bases from the loaded draws
  // Optimizer state "optim.<i>.<name>": each entry must belong to parameter i and
  // match its shape; after any step every parameter must have its full state.
  const auto& params = opt.params();
  std::map<std::string, Tensor> st;
  for (const auto& [n, t] : f.tensors) {
    if (n.rfind("optim.", 0) != 0) continue;
    const std::string key = n.substr(6);
    const size_t dot = key.find('.');
    size_t i = params.size();
    try {
      i = dot == std::string::npos ? params.size() : static_cast<size_t>(std::stoull(key.substr(0, dot)));
    } catch (const std::exception&) {
    }
    NANODE_CHECK(i < params.size(), path, ": optimizer state '", key, "' names no parameter");
    NANODE_CHECK(t.shape() == params[i].shape() && t.dtype() == params[i].dtype(), path, ": optimizer state '", key,
                 "' is ", t.shape(), ", parameter ", i, " is ", params[i].shape());
    st[key] = t;
  }
  const int64_t done = meta_int("epochs_done", 0, check.max_epochs);
  const int64_t steps = meta_int("optimizer_steps", 0, done * check.steps_per_epoch);
  NANODE_CHECK(steps == 0 || st.size() == check.state_per_param * params.size(), path, ": optimizer state has ",
               st.size(), " tensors, after ", steps, " steps the optimizer needs ",
               check.state_per_param * params.size());
  opt.load_state(st, steps);
  if (epochs_done) *epochs_done = done;
  return f.metadata;
}

}  // namespace nanode::models
