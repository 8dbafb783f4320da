// CountingCommunicator: forward and count.
#include "parallel/counting_communicator.h"

namespace coil {

int64_t CommCounters::total_bytes() const {
  int64_t n = 0;
  for (const auto& [op, b] : bytes) n += b;
  return n;
}

CountingCommunicator::CountingCommunicator(CommPtr inner, std::shared_ptr<CommCounters> counters)
    : inner_(std::move(inner)), counters_(counters ? std::move(counters) : std::make_shared<CommCounters>()) {
  COIL_CHECK(inner_ != nullptr, "CountingCommunicator: no communicator to wrap");
}

void CountingCommunicator::count(const char* op, const Tensor& t) {
  counters_->bytes[op] += t.numel() * int64_t(dtype_size(t.dtype()));
  counters_->calls[op] += 1;
}

void CountingCommunicator::all_reduce(const Tensor& t, ReduceOp op) {
  count("all_reduce", t);
  inner_->all_reduce(t, op);
}

std::shared_ptr<Work> CountingCommunicator::all_reduce_async(const Tensor& t, ReduceOp op) {
  count("all_reduce", t);
  return inner_->all_reduce_async(t, op);
}

void CountingCommunicator::reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) {
  count("reduce_scatter", input);
  inner_->reduce_scatter(input, output, op);
}

void CountingCommunicator::all_gather(const Tensor& input, const Tensor& output) {
  count("all_gather", output);
  inner_->all_gather(input, output);
}

void CountingCommunicator::broadcast(const Tensor& t, int root) {
  count("broadcast", t);
  inner_->broadcast(t, root);
}

void CountingCommunicator::send(const Tensor& t, int dst, int tag) {
  count("send", t);
  inner_->send(t, dst, tag);
}

void CountingCommunicator::recv(const Tensor& t, int src, int tag) {
  count("recv", t);
  inner_->recv(t, src, tag);
}

CommPtr CountingCommunicator::split(int color, int key, const std::string& label) {
  return std::make_shared<CountingCommunicator>(inner_->split(color, key, label), counters_);
}

}  // namespace coil
