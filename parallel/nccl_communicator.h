// The NCCL communicator: CUDA tensors, collectives enqueued on the tensor's device's current stream
// (kernels/cuda/stream.h). Bootstrapped through another communicator (the MPI world or a group of it):
// rank 0 creates the NCCL unique id and broadcasts it, every rank joins with its bootstrap rank, so
// the NCCL ranks are the bootstrap ranks. One CUDA device per rank (the one given; one process per
// GPU): two ranks on one GPU are refused before NCCL is asked (it would fail with "duplicate GPU").
// Built only with COIL_HAVE_NCCL (CUDA + NCCL found at configure time).
//
// Host tensors: built over a shared host communicator (the bootstrap, kept), every collective on
// CPU tensors goes through it (CUDA and CPU buffers of one call must not mix) (the trainer's metric and setup reductions are host doubles, the
// sequence-parallel chain sends its metadata as CPU ints); split splits both. Without one, a CPU
// tensor is an error naming the collective.
//
// Ordering: no collective blocks the host on the GPU (construction, split and barrier do, and CPU
// tensors follow the host communicator). Every consumer of a result is stream ordered behind it (kernels
// on the same current stream), and host reads of CUDA tensors synchronise the stream (the CUDA
// backend's device-to-host copy), so a host sync per collective would only cost time (one per
// tensor-parallel layer). all_reduce_async runs on a side stream of this communicator, behind an
// event recorded on the current stream (the kernels that wrote the buffer), and its Work's wait()
// makes the current stream wait for it (no host block). Two reasons: gradient buckets reduce while
// backward goes on, and a bucket started between a sequence-parallel recv and the matching send
// (ranks of a chain reach their buckets at different points of backward) cannot block the chain,
// which on one stream would wait for each other (rank a: recv, then the bucket; rank b: the
// bucket, then the send). send / recv match by peer in call order (NCCL has no tags; `tag` is
// ignored); each is enqueued alone, which is deadlock free for the acyclic chains of
// parallel/sequence.cpp and for rings whose even ranks send first. split uses ncclCommSplit.
//
// Types: f32, f64, bf16, i32, i64. Unlike the MPI communicator, bf16 reduces (sum, avg, max): an
// f32 copy is reduced and rounded once (tensor- and sequence-parallel activations and gradients of
// bf16 autocast are bf16), or the bf16 tensor itself where that gives the same (max, and groups of
// two); i32 / i64 reduce exactly, avg only for floating types.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace coil {

struct NcclCommState;  // the ncclComm_t and device, freed with the last communicator sharing it

class NcclCommunicator : public Communicator {
 public:
  // Collective over bootstrap; CPU tensors are refused.
  NcclCommunicator(Communicator& bootstrap, int device, std::string label = "world");
  // Collective over host; host is kept for CPU tensors (see above).
  NcclCommunicator(CommPtr host, int device, std::string label = "world");
  ~NcclCommunicator() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override;
  int device() const;
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  void reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(const Tensor& input, const Tensor& output) override;
  void broadcast(const Tensor& t, int root) override;
  void send(const Tensor& t, int dst, int tag = 0) override;
  void recv(const Tensor& t, int src, int tag = 0) override;
  // Blocks the host until every rank reached it (the host communicator's barrier when there is one,
  // else an all-reduce of one float and a stream synchronisation).
  void barrier() override;
  CommPtr split(int color, int key, const std::string& label) override;

 private:
  NcclCommunicator(std::shared_ptr<NcclCommState> state, CommPtr host, std::string label);
  void init(Communicator& bootstrap, int device);
  // The host communicator for a CPU tensor (nullptr for a CUDA tensor); throws when t is on the
  // CPU and there is none, or is on another CUDA device than this communicator's.
  Communicator* route(const char* op, const Tensor& t, const char* what) const;
  std::shared_ptr<NcclCommState> state_;
  CommPtr host_;
  int rank_ = 0, size_ = 1;
  std::string label_;
};

}  // namespace coil
