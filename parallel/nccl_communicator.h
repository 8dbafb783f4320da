// The NCCL communicator: CUDA tensors, collectives enqueued on the tensor's device's current stream
// (kernels/cuda/stream.h). Bootstrapped through another communicator (the MPI world or a group of it):
// rank 0 creates the NCCL unique id and broadcasts it, every rank joins with its bootstrap rank, so
// the NCCL ranks are the bootstrap ranks. One CUDA device per communicator (the one given; one
// process per GPU). Built only with COIL_HAVE_NCCL (CUDA + NCCL found at configure time).
//
// Semantics follow Communicator. Blocking calls synchronise the stream before returning (host code
// may read the result); all_reduce_async returns a Work that waits on an event recorded after the
// collective. send / recv match by peer in call order (NCCL has no tags; `tag` is ignored). split
// uses ncclCommSplit.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace coil {

struct NcclCommState;  // the ncclComm_t and device, freed with the last communicator sharing it

class NcclCommunicator : public Communicator {
 public:
  // Collective over bootstrap.
  NcclCommunicator(Communicator& bootstrap, int device, std::string label = "world");
  ~NcclCommunicator() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl:" + label_; }
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  void reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(const Tensor& input, const Tensor& output) override;
  void broadcast(const Tensor& t, int root) override;
  void send(const Tensor& t, int dst, int tag = 0) override;
  void recv(const Tensor& t, int src, int tag = 0) override;
  void barrier() override;
  CommPtr split(int color, int key, const std::string& label) override;

 private:
  NcclCommunicator(std::shared_ptr<NcclCommState> state, std::string label);
  void enqueue_all_reduce(const Tensor& t, ReduceOp op);
  void sync() const;
  std::shared_ptr<NcclCommState> state_;
  int rank_ = 0, size_ = 1;
  std::string label_;
};

}  // namespace coil
