// nanode::dist in a program built without MPI (no NANODE_HAVE_MPI): a world of one,
// and a clear refusal when a launcher says there are more processes. ctest runs it
// plainly and with OMPI_COMM_WORLD_SIZE=2, as mpirun would set it.
#include <cstdio>
#include <vector>

#include "nanode/dist/dist.hpp"

int main(int argc, char** argv) {
  using namespace nanode;
  if (dist::built_with_mpi()) {
    std::fprintf(stderr, "dist_without_mpi: built with MPI, which this test must not be\n");
    return 1;
  }
  try {
    dist::init(&argc, &argv);
  } catch (const std::exception& e) {
    std::printf("refused: %s\n", e.what());
    return 0;
  }
  std::vector<double> v{1.5};
  dist::all_reduce_sum(v);
  dist::barrier();
  std::printf("world %d, rank %d, backend %s, sum %g\n", dist::world_size(), dist::rank(), dist::backend().name().c_str(),
              v[0]);
  dist::finalize();
  return dist::world_size() == 1 && v[0] == 1.5 ? 0 : 1;
}
