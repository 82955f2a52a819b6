#pragma once
// Which BLAS the peer's dense products run on: the BLAS libraries mapped into this
// process (LibTorch links the system's libblas.so.3, an alternatives link that may
// point at the reference BLAS or at OpenBLAS), resolved to their real files, and
// OpenBLAS's own build description when it is there. nanode itself uses no BLAS on
// the CPU (Eigen's GEMM).
#include <dlfcn.h>
#include <link.h>

#include <climits>
#include <cstdlib>
#include <string>
#include <vector>

namespace nanode::bench {

struct BlasInfo {
  std::string description;  ///< e.g. "OpenBLAS 0.3.21 ... (/usr/lib/.../openblas-pthread/libblas.so.3)"
  bool optimised = false;   ///< false for the reference BLAS, or when none was found
};

inline BlasInfo blas_info() {
  std::vector<std::string> libs;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        const std::string base = name.substr(name.find_last_of('/') + 1);
        const bool cuda = base.find("cublas") != std::string::npos;  // the GPU's, not the CPU peer's
        if (!cuda && (base.find("blas") != std::string::npos || base.find("mkl") != std::string::npos ||
                      base.find("blis") != std::string::npos)) {
          char real[PATH_MAX];
          auto* out = static_cast<std::vector<std::string>*>(data);
          out->push_back(realpath(name.c_str(), real) ? std::string(real) : name);
        }
        return 0;
      },
      &libs);
  BlasInfo r;
  bool reference = false;
  std::string files;
  for (const auto& l : libs) {
    files += (files.empty() ? "" : ", ") + l;
    if (l.find("openblas") != std::string::npos || l.find("mkl") != std::string::npos ||
        l.find("blis") != std::string::npos)
      r.optimised = true;
    if (l.find("/blas/libblas") != std::string::npos) reference = true;  // Debian's reference BLAS
  }
  using GetConfig = char* (*)();
  using GetThreads = int (*)();
  std::string what;
  if (auto cfg = reinterpret_cast<GetConfig>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    what = cfg();
    if (auto nt = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")))
      what += ", " + std::to_string(nt()) + " threads";
  }
  if (reference && what.empty()) r.optimised = false, what = "the reference BLAS (netlib), not optimised";
  if (libs.empty()) what = "none loaded";
  r.description = (what.empty() ? std::string("unknown BLAS") : what) + (files.empty() ? "" : " (" + files + ")");
  return r;
}

}  // namespace nanode::bench
