// MPI: MpiRuntime (the RAII init/finalize a program creates once, in main) and the MPI_Comm-backed
// Communicator. CPU tensors are used in place; CUDA tensors are staged through host memory (slow, but
// lets several ranks share one GPU in tests). Every MPI call is checked: communicators use
// MPI_ERRORS_RETURN and a failing call throws coil::Error with MPI's error string.
// This header does not include <mpi.h>; it exists only when coil is built with MPI (COIL_HAVE_MPI).
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace coil {

class MpiRuntime {
 public:
  // Initializes MPI (thread level FUNNELED) unless it already is; finalizes on destruction only when
  // this object initialized it.
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  // A fresh communicator over all processes (a duplicate of MPI_COMM_WORLD).
  CommPtr world() const;
  int world_rank() const;
  int world_size() const;
  // The node-local rank (OMPI_COMM_WORLD_LOCAL_RANK / MPI_COMM_TYPE_SHARED split), for picking a GPU.
  int local_rank() const;

 private:
  bool owns_ = false;
};

}  // namespace coil
