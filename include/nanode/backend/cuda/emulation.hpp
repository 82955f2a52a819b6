#pragma once
// Controls of the emulated CUDA backend (nanode::cuda_emulated, kernels/emulation.cuh):
// the order in which the threads of a block are resumed, a cap on grid sizes, and
// the log of launched kernels. Plain C++; meaningful only in a program that links
// nanode::cuda_emulated.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nanode::emu {

enum class Schedule { Ascending, Descending };
inline Schedule& schedule() {
  static Schedule s = Schedule::Ascending;
  return s;
}
/// Resume the runnable threads of a block in ascending or descending thread order,
/// so that a missing barrier shows up whichever thread writes first.
inline void set_schedule(Schedule s) { schedule() = s; }

/// The largest grid (in blocks) the launchers' grid-size helpers return: tests
/// lower it so that n > grid x block happens at small n and the grid-stride loops
/// really stride. 0: no emulation limit.
inline unsigned& max_grid() {
  static unsigned g = 0;
  return g;
}

/// Kernels launched so far, by name (template arguments included), with counts.
inline std::vector<std::pair<std::string, int64_t>>& launch_log() {
  static std::vector<std::pair<std::string, int64_t>> log;
  return log;
}

}  // namespace nanode::emu
