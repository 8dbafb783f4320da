// A Communicator that forwards every call to another one and counts the bytes this rank hands to
// each kind of operation (the buffer it passes: all_reduce / broadcast the tensor, reduce_scatter
// its input, all_gather its OUTPUT (every rank's block), send / recv the message). Used to measure
// the communication volume of a layout (parallel/comm_volume.cpp); groups split from it count too.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace coil {

struct CommCounters {
  std::map<std::string, int64_t> bytes, calls;  // by operation name
  int64_t total_bytes() const;
};

class CountingCommunicator : public Communicator {
 public:
  explicit CountingCommunicator(CommPtr inner, std::shared_ptr<CommCounters> counters = nullptr);
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string name() const override { return "counting:" + inner_->name(); }
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  void reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(const Tensor& input, const Tensor& output) override;
  void broadcast(const Tensor& t, int root) override;
  void send(const Tensor& t, int dst, int tag = 0) override;
  void recv(const Tensor& t, int src, int tag = 0) override;
  void barrier() override { inner_->barrier(); }
  CommPtr split(int color, int key, const std::string& label) override;

  const CommCounters& counters() const { return *counters_; }
  void reset() { *counters_ = CommCounters{}; }

 private:
  void count(const char* op, const Tensor& t);
  CommPtr inner_;
  std::shared_ptr<CommCounters> counters_;
};

}  // namespace coil
