#pragma once
// Which BLAS the peer's dense products run on: the BLAS libraries mapped into this
// process (LibTorch links the system's libblas.so.3, an alternatives link that may
// point at the reference BLAS or at OpenBLAS), resolved to their real files, and
// OpenBLAS's own build description when it is there. nanode itself uses no BLAS on
// the CPU (Eigen's GEMM).
#include <dlfcn.h>
#include <link.h>

#include <strings.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace nanode::bench {

struct BlasInfo {
  std::string description;  ///< e.g. "OpenBLAS 0.3.21 ... (/usr/lib/.../openblas-pthread/libblas.so.3)"
  bool optimised = false;   ///< false for the reference BLAS, generic kernels, or when none was found
  std::string why;          ///< when not optimised: what is wrong and what to do
};

namespace detail {
/// The OpenBLAS kernels (a name OPENBLAS_CORETYPE takes) that this CPU's
/// instruction sets fit, or null on a CPU with neither AVX-512 nor AVX2 + FMA
/// (older kernels exist for those, but this picks none: the choice is left as it is).
inline const char* fitting_openblas_core() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512cd");
  if (avx512 && __builtin_cpu_supports("avx512bf16")) return "Cooperlake";
  if (avx512) return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return nullptr;
}

/// The kernels the loaded OpenBLAS runs (openblas_get_corename), or "" where no
/// OpenBLAS is loaded.
inline std::string openblas_core() {
  using GetCore = char* (*)();
  auto core = reinterpret_cast<GetCore>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return core ? std::string(core()) : std::string();
}

/// The kernels that fit this CPU where the loaded OpenBLAS runs its generic
/// Prescott ones instead (fit_openblas_kernels, blas_info), else null.
inline const char* generic_openblas_fit() {
  const std::string core = openblas_core();
  return !core.empty() && strcasecmp(core.c_str(), "prescott") == 0 ? fitting_openblas_core() : nullptr;
}
}  // namespace detail

/// OpenBLAS chooses its kernels for the CPU when it loads (DYNAMIC_ARCH). A release
/// older than the CPU does not know it and falls back to its generic "Prescott"
/// kernels (SSE3): Debian 12's 0.3.21 does so on Intel family 6 model 207 (Emerald
/// Rapids), where LibTorch's W1 then took 639 ms against 231-346 ms with the
/// Cooperlake kernels. The peer would run several times slower than its users see with
/// kernels that fit the CPU, and every ratio would flatter nanode. Where that
/// happened and OPENBLAS_CORETYPE is unset, this sets it to the kernels the CPU's
/// instruction sets fit (detail::fitting_openblas_core) and runs the program again
/// (execv of /proc/self/exe with the same arguments): only a new process loads the
/// library afresh. It returns where nothing had to change, or where the new run
/// could not start (it says so; blas_info() then reports the generic kernels).
inline void fit_openblas_kernels(char** argv) {
  const char* fit = detail::generic_openblas_fit();
  if (!fit || std::getenv("OPENBLAS_CORETYPE")) return;
  std::printf("LibTorch's OpenBLAS chose its generic Prescott kernels for this CPU; running again with "
              "OPENBLAS_CORETYPE=%s, the kernels its instruction sets fit\n",
              fit);
  std::fflush(stdout);
  setenv("OPENBLAS_CORETYPE", fit, 1);
  execv("/proc/self/exe", argv);
  std::printf("WARNING: could not run again with OPENBLAS_CORETYPE=%s; set it yourself\n", fit);
  unsetenv("OPENBLAS_CORETYPE");
}

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
  if (reference && what.empty()) {
    r.optimised = false, what = "the reference BLAS (netlib), not optimised";
    r.why = "install libopenblas0-pthread";
  }
  if (const char* fit = detail::generic_openblas_fit()) {
    r.optimised = false;
    r.why = "OpenBLAS runs its generic Prescott kernels on a CPU that fits its " + std::string(fit) +
            " ones; set OPENBLAS_CORETYPE=" + fit;
  }
  if (libs.empty()) what = "none loaded", r.why = "no BLAS library is loaded";
  if (!r.optimised && r.why.empty()) r.why = "not a BLAS known to be optimised; install libopenblas0-pthread";
  r.description = (what.empty() ? std::string("unknown BLAS") : what) + (files.empty() ? "" : " (" + files + ")");
  return r;
}

}  // namespace nanode::bench
