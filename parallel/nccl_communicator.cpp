// NcclCommunicator: unique-id bootstrap, dtype / op mapping, every NCCL and CUDA call checked
// (errors -> coil::Error naming the call, the communicator and NCCL's / CUDA's message).
#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "kernels/cuda/stream.h"

namespace coil {

struct NcclCommState {
  ncclComm_t comm = nullptr;
  int device = 0;
  ~NcclCommState() {
    if (comm) ncclCommDestroy(comm);
  }
};

namespace {

void check_nccl(ncclResult_t r, const char* call, const std::string& who) {
  COIL_CHECK(r == ncclSuccess, who, ": ", call, " failed: ", ncclGetErrorString(r));
}

void check_cuda(cudaError_t r, const char* call, const std::string& who) {
  COIL_CHECK(r == cudaSuccess, who, ": ", call, " failed: ", cudaGetErrorString(r));
}

ncclDataType_t nccl_type(DType t, const std::string& who) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
  }
  COIL_FAIL(who, ": dtype ", dtype_name(t), " has no NCCL type");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}

class EventWork : public Work {
 public:
  EventWork(cudaEvent_t e, std::string who) : event_(e), who_(std::move(who)) {}
  ~EventWork() override {
    if (event_) cudaEventDestroy(event_);
  }
  void wait() override {
    if (!event_) return;
    check_cuda(cudaEventSynchronize(event_), "cudaEventSynchronize", who_);
    cudaEventDestroy(event_);
    event_ = nullptr;
  }

 private:
  cudaEvent_t event_;
  std::string who_;
};

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device, std::string label)
    : state_(std::make_shared<NcclCommState>()), rank_(bootstrap.rank()), size_(bootstrap.size()),
      label_(std::move(label)) {
  state_->device = device;
  check_cuda(cudaSetDevice(device), "cudaSetDevice", name());
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId", name());
  // The id travels as bytes packed into i32 words over the bootstrap communicator.
  constexpr int64_t kWords = (sizeof(ncclUniqueId) + 3) / 4;
  std::vector<int64_t> words(kWords, 0);
  std::vector<int32_t> raw(kWords, 0);
  std::memcpy(raw.data(), &id, sizeof(id));
  for (int64_t i = 0; i < kWords; ++i) words[size_t(i)] = raw[size_t(i)];
  Tensor t = Tensor::from_ints(words, {kWords}, DType::I32);
  bootstrap.broadcast(t, 0);
  const std::vector<int64_t> got = t.to_ints();
  for (int64_t i = 0; i < kWords; ++i) raw[size_t(i)] = int32_t(got[size_t(i)]);
  std::memcpy(&id, raw.data(), sizeof(id));
  check_nccl(ncclCommInitRank(&state_->comm, size_, id, rank_), "ncclCommInitRank", name());
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<NcclCommState> state, std::string label)
    : state_(std::move(state)), label_(std::move(label)) {
  check_nccl(ncclCommUserRank(state_->comm, &rank_), "ncclCommUserRank", name());
  check_nccl(ncclCommCount(state_->comm, &size_), "ncclCommCount", name());
}

NcclCommunicator::~NcclCommunicator() = default;

namespace {
void check_device_buffer(const Communicator& c, const char* op, const Tensor& t, const char* what,
                         int device) {
  detail::check_buffer(c, op, t, what);
  COIL_CHECK(t.device().is_cuda() && t.device().index == device, c.name(), ": ", op, " ", what,
             " must be a CUDA tensor on device ", device, ", got ", t.describe());
}
}  // namespace

void NcclCommunicator::sync() const {
  check_cuda(cudaStreamSynchronize(cuda::current_stream(state_->device)), "cudaStreamSynchronize", name());
}

void NcclCommunicator::enqueue_all_reduce(const Tensor& t, ReduceOp op) {
  check_device_buffer(*this, "all_reduce", t, "tensor", state_->device);
  detail::check_reducible(*this, "all_reduce", t, op);
  check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()),
                           nccl_op(op), state_->comm, cuda::current_stream(state_->device)),
             "ncclAllReduce", name());
}

void NcclCommunicator::all_reduce(const Tensor& t, ReduceOp op) {
  enqueue_all_reduce(t, op);
  sync();
}

std::shared_ptr<Work> NcclCommunicator::all_reduce_async(const Tensor& t, ReduceOp op) {
  enqueue_all_reduce(t, op);
  cudaEvent_t e = nullptr;
  check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate", name());
  check_cuda(cudaEventRecord(e, cuda::current_stream(state_->device)), "cudaEventRecord", name());
  return std::make_shared<EventWork>(e, name());
}

void NcclCommunicator::reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) {
  check_device_buffer(*this, "reduce_scatter", input, "input", state_->device);
  check_device_buffer(*this, "reduce_scatter", output, "output", state_->device);
  detail::check_reducible(*this, "reduce_scatter", input, op);
  COIL_CHECK(input.numel() == int64_t(size_) * output.numel() && input.dtype() == output.dtype(), name(),
             ": reduce_scatter input ", input.describe(), " must hold ", size_, " blocks of output ",
             output.describe());
  check_nccl(ncclReduceScatter(input.data_ptr(), output.data_ptr(), size_t(output.numel()),
                               nccl_type(input.dtype(), name()), nccl_op(op), state_->comm,
                               cuda::current_stream(state_->device)),
             "ncclReduceScatter", name());
  sync();
}

void NcclCommunicator::all_gather(const Tensor& input, const Tensor& output) {
  check_device_buffer(*this, "all_gather", input, "input", state_->device);
  check_device_buffer(*this, "all_gather", output, "output", state_->device);
  COIL_CHECK(output.numel() == int64_t(size_) * input.numel() && input.dtype() == output.dtype(), name(),
             ": all_gather output ", output.describe(), " must hold ", size_, " blocks of input ",
             input.describe());
  check_nccl(ncclAllGather(input.data_ptr(), output.data_ptr(), size_t(input.numel()),
                           nccl_type(input.dtype(), name()), state_->comm, cuda::current_stream(state_->device)),
             "ncclAllGather", name());
  sync();
}

void NcclCommunicator::broadcast(const Tensor& t, int root) {
  check_device_buffer(*this, "broadcast", t, "tensor", state_->device);
  COIL_CHECK(root >= 0 && root < size_, name(), ": broadcast root ", root, " outside 0..", size_ - 1);
  check_nccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()), root,
                           state_->comm, cuda::current_stream(state_->device)),
             "ncclBroadcast", name());
  sync();
}

void NcclCommunicator::send(const Tensor& t, int dst, int /*tag*/) {
  check_device_buffer(*this, "send", t, "tensor", state_->device);
  COIL_CHECK(dst >= 0 && dst < size_ && dst != rank_, name(), ": send to rank ", dst, " from rank ", rank_,
             " of ", size_);
  check_nccl(ncclSend(t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()), dst, state_->comm,
                      cuda::current_stream(state_->device)),
             "ncclSend", name());
  sync();
}

void NcclCommunicator::recv(const Tensor& t, int src, int /*tag*/) {
  check_device_buffer(*this, "recv", t, "tensor", state_->device);
  COIL_CHECK(src >= 0 && src < size_ && src != rank_, name(), ": recv from rank ", src, " on rank ", rank_,
             " of ", size_);
  check_nccl(ncclRecv(t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()), src, state_->comm,
                      cuda::current_stream(state_->device)),
             "ncclRecv", name());
  sync();
}

void NcclCommunicator::barrier() {
  Tensor one = Tensor::ones({1}, DType::F32, Device::cuda(state_->device));
  all_reduce(one, ReduceOp::Sum);
}

CommPtr NcclCommunicator::split(int color, int key, const std::string& label) {
  auto st = std::make_shared<NcclCommState>();
  st->device = state_->device;
  check_nccl(ncclCommSplit(state_->comm, color, key, &st->comm, nullptr), "ncclCommSplit", name());
  return std::shared_ptr<NcclCommunicator>(new NcclCommunicator(st, label));
}

}  // namespace coil
