// Communicator: the collectives every parallel piece of coil uses, behind one interface with a
// single-rank implementation (no communication), an MPI one (parallel/mpi_communicator.h) and later
// NCCL. Groups are values: a Communicator is created once (by splitting the world, see grid.h) and
// passed to whoever communicates. Buffers are contiguous tensors; the flat primitives work on whole
// buffers, the *_dim helpers below split or join along any dimension.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace coil {

enum class ReduceOp { Sum, Avg, Max };
const char* reduce_op_name(ReduceOp op);

// A collective in flight. wait() blocks until it finished and its result is in the output buffer
// (and runs the completion step, e.g. the division of an average). Completed works are cheap.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

// A Work that is already complete (blocking implementations return it).
class CompletedWork : public Work {
 public:
  void wait() override {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "mpi", "single", ... plus an optional label given at creation ("dp", "tp", ...).
  virtual std::string name() const = 0;

  // --- flat primitives: contiguous tensors, f32 / f64 / bf16 / i32 / i64 (bf16 reduced in a wider --
  // type and rounded once)
  // In place: every rank's t becomes the reduction over the group (Avg: floating types only).
  virtual void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  // Starts an in-place all-reduce; the result is valid after wait(). The default blocks.
  virtual std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum);
  // input holds size() equal blocks (numel = size() * output.numel()); rank r gets the reduction of
  // block r.
  virtual void reduce_scatter(const Tensor& input, const Tensor& output,
                              ReduceOp op = ReduceOp::Sum) = 0;
  // output (numel = size() * input.numel()) holds every rank's input, rank r's at block r.
  virtual void all_gather(const Tensor& input, const Tensor& output) = 0;
  // In place: every rank gets root's t.
  virtual void broadcast(const Tensor& t, int root) = 0;
  virtual void send(const Tensor& t, int dst, int tag = 0) = 0;
  virtual void recv(const Tensor& t, int src, int tag = 0) = 0;
  virtual void barrier() = 0;
  // A new communicator over the ranks that pass the same color, ordered by key (MPI_Comm_split).
  // Collective over this communicator.
  virtual std::shared_ptr<Communicator> split(int color, int key, const std::string& label) = 0;
};

using CommPtr = std::shared_ptr<Communicator>;

// Size 1: every collective is the identity (all_gather / reduce_scatter copy), send / recv to
// oneself is an error, split returns another single communicator.
class SingleCommunicator : public Communicator {
 public:
  explicit SingleCommunicator(std::string label = "world") : label_(std::move(label)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single:" + label_; }
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  void reduce_scatter(const Tensor& input, const Tensor& output,
                      ReduceOp op = ReduceOp::Sum) override;
  void all_gather(const Tensor& input, const Tensor& output) override;
  void broadcast(const Tensor& t, int root) override;
  void send(const Tensor& t, int dst, int tag = 0) override;
  void recv(const Tensor& t, int src, int tag = 0) override;
  void barrier() override {}
  CommPtr split(int color, int key, const std::string& label) override;

 private:
  std::string label_;
};

// --- checks shared by the implementations ---------------------------------------------------------
namespace detail {
// Throws unless t is defined and contiguous, naming the collective and the communicator.
void check_buffer(const Communicator& c, const char* op, const Tensor& t, const char* what);
void check_reducible(const Communicator& c, const char* op, const Tensor& t, ReduceOp rop);
}  // namespace detail

// --- along a dimension (not differentiable; collectives.h has the autograd versions) -----------------
// x (..., n, ...) on each rank -> (..., size*n, ...) with rank r's x at [r*n, (r+1)*n) of dim.
Tensor all_gather_dim(Communicator& c, const Tensor& x, int64_t dim);
// x (..., size*n, ...) -> (..., n, ...): the reduction over ranks of block `rank` of dim.
Tensor reduce_scatter_dim(Communicator& c, const Tensor& x, int64_t dim, ReduceOp op = ReduceOp::Sum);
// This rank's block of dim (a contiguous copy); dim must divide by size.
Tensor take_shard(const Communicator& c, const Tensor& x, int64_t dim);
// An all-reduced copy of x (x itself is left untouched).
Tensor all_reduced(Communicator& c, const Tensor& x, ReduceOp op = ReduceOp::Sum);

}  // namespace coil
