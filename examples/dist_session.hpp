#pragma once
// What the example trainers share under mpirun (nanode::dist): the process group
// for the program's lifetime, output from rank 0 only, and an error on one rank
// ending the whole job (the other ranks would wait in their next collective).
#include <cstdio>
#include <exception>

#include "nanode/dist/dist.hpp"

namespace nanode::cli {

class DistSession {
 public:
  /// dist::init: under mpirun one rank of a data-parallel run, else a world of
  /// one. ok() is false (and the reason printed) when it cannot start.
  DistSession(int* argc, char*** argv, const char* program) : program_(program) {
    try {
      dist::init(argc, argv);
      ok_ = true;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", program_, e.what());
    }
  }
  DistSession(const DistSession&) = delete;
  DistSession& operator=(const DistSession&) = delete;
  ~DistSession() { dist::finalize(); }

  bool ok() const { return ok_; }
  bool main_rank() const { return dist::is_main(); }

  /// printf on rank 0 only, flushed.
  template <class... Args>
  void say(const char* fmt, Args... args) const {
    if (!dist::is_main()) return;
    std::printf(fmt, args...);
    std::fflush(stdout);
  }

  /// Prints the error (with the rank in a data-parallel run, whose other ranks
  /// are then ended: dist::abort); returns the exit status.
  int fail(const std::exception& e) const {
    if (dist::world_size() > 1) {
      std::fprintf(stderr, "%s: rank %d of %d: %s\n", program_, dist::rank(), dist::world_size(), e.what());
      std::fflush(stderr);
      dist::abort(1);
    }
    std::fprintf(stderr, "%s: %s\n", program_, e.what());
    return 1;
  }

 private:
  const char* program_;
  bool ok_ = false;
};

}  // namespace nanode::cli
