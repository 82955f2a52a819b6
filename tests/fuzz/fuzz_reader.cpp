// libFuzzer targets for nanode's file readers, one per format, built by clang with
// -fsanitize=fuzzer,address,undefined (tests/fuzz/CMakeLists.txt):
// NANODE_FUZZ_FORMAT is idx, npy, png, safetensors or cifar. Each input is written
// to a file (the readers take paths) and read; a nanode::Error is the expected
// answer to a bad file. Anything else fails the run: another exception, a memory
// error or undefined behaviour (the sanitizers), an allocation above
// -malloc_limit_mb, or a result larger than what the file can deliver.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>

#include "nanode/data/readers.hpp"
#if NANODE_FUZZ_SAFETENSORS
#include "nanode/data/safetensors.hpp"
#endif

namespace {
const std::string& scratch() {
  static const std::string path = "/tmp/nanode_fuzz_" + std::to_string(::getpid()) + ".bin";
  return path;
}
struct RemoveScratch {
  ~RemoveScratch() { std::remove(scratch().c_str()); }
} remove_scratch;

[[noreturn]] void bad(const char* what) {
  std::fprintf(stderr, "fuzz: %s\n", what);
  std::abort();
}

void read_one(const std::string& path, const uint8_t* data, size_t n) {
  const uint64_t deliverable = uint64_t(n) * nanode::data::ByteSource::kDeflateRatio + 4096;
#if NANODE_FUZZ_IDX
  const auto a = nanode::data::read_idx(path);
  if (a.bytes.size() > deliverable) bad("IDX payload larger than the file can deliver");
#elif NANODE_FUZZ_NPY
  const auto a = nanode::data::read_npy(path);
  if (a.bytes.size() > deliverable) bad("NPY payload larger than the file can deliver");
#elif NANODE_FUZZ_PNG
  // 1 bit per pixel at most 1032:1 compressed, expanded to 3 bytes per pixel.
  const auto im = nanode::data::read_png(path, (n > 0 && (data[n - 1] & 1)) ? 1 : 3);
  if (im.pixels.size() > deliverable * 24) bad("PNG larger than the file can deliver");
#elif NANODE_FUZZ_SAFETENSORS
  const auto f = nanode::data::load_safetensors(path);
  uint64_t total = 0;
  for (const auto& [name, t] : f.tensors) total += t.nbytes();
  if (total > n) bad("safetensors tensors larger than the file");
#elif NANODE_FUZZ_CIFAR
  // The first byte (a label) also picks CIFAR-10, CIFAR-100 fine or coarse labels.
  const int mode = n > 0 ? data[0] % 3 : 0;
  const auto s = nanode::data::read_cifar({path}, mode > 0, mode == 2);
  if (s.images.size() > n) bad("CIFAR images larger than the file");
#else
#error "define NANODE_FUZZ_FORMAT"
#endif
  (void)data;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
  {
    std::ofstream out(scratch(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
    if (!out.good()) bad("cannot write the scratch file");
  }
  try {
    read_one(scratch(), data, n);
  } catch (const nanode::Error&) {
    // the expected answer to a bad file
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
