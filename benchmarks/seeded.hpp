#pragma once
// nanode's side of the benchmarks: a base that seeds the default generator before
// the members of the class deriving from it are built, so that every measurement
// builds the same model and input.
#include "nanode/core/rng.hpp"

namespace nanode::bench {
struct Seeded {
  Seeded() { manual_seed(0); }
};
}  // namespace nanode::bench
