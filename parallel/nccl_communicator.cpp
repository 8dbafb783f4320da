// NcclCommunicator: unique-id bootstrap, the one-GPU-per-rank check, dtype / op mapping, host
// routing of CPU tensors, every NCCL and CUDA call checked (errors -> coil::Error naming the call,
// the communicator and NCCL's / CUDA's message).
#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"

namespace coil {

struct NcclCommState {
  ncclComm_t comm = nullptr;
  int device = 0;
  // The stream of all_reduce_async (made on first use; local, not collective).
  cudaStream_t side = nullptr;
  ~NcclCommState() {
    if (comm) ncclCommDestroy(comm);
    if (side) cudaStreamDestroy(side);
  }
};

namespace {

void check_nccl(ncclResult_t r, const char* call, const std::string& who) {
  if (r == ncclSuccess) [[likely]]
    return;
  // ncclGetLastError carries the detail (which peer, which transport) the result code does not.
  const char* last = ncclGetLastError(nullptr);
  COIL_FAIL(who, ": ", call, " failed: ", ncclGetErrorString(r),
            last && *last ? std::string(" (") + last + ")" : std::string());
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

// An all-reduce on the side stream: wait() makes the current stream wait for it (no host block);
// dropped without wait(), it still orders the current stream behind it, so the buffer (kept alive
// here) cannot be reused before the reduction read it.
class SideWork : public Work {
 public:
  SideWork(cudaEvent_t done, Tensor t, int device, std::string who)
      : done_(done), t_(std::move(t)), device_(device), who_(std::move(who)) {}
  // The current stream may be the legacy default stream (nullptr), which names the current
  // device's: hence the device guards.
  ~SideWork() override {
    if (!done_) return;
    cuda::DeviceGuard guard(device_);
    cudaStreamWaitEvent(cuda::current_stream(device_), done_, 0);
    cudaEventDestroy(done_);
  }
  void wait() override {
    if (!done_) return;
    cuda::DeviceGuard guard(device_);
    check_cuda(cudaStreamWaitEvent(cuda::current_stream(device_), done_, 0), "cudaStreamWaitEvent", who_);
    cudaEventDestroy(done_);
    done_ = nullptr;
    t_ = Tensor();
  }

 private:
  cudaEvent_t done_;
  Tensor t_;
  int device_;
  std::string who_;
};

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

std::string uuid_text(const int64_t w[2]) {
  unsigned char b[16];
  std::memcpy(b, w, 16);
  char out[48];
  std::snprintf(out, sizeof out, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return out;
}

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device, std::string label)
    : state_(std::make_shared<NcclCommState>()), label_(std::move(label)) {
  init(bootstrap, device);
}

NcclCommunicator::NcclCommunicator(CommPtr host, int device, std::string label)
    : state_(std::make_shared<NcclCommState>()), host_(std::move(host)), label_(std::move(label)) {
  COIL_CHECK(host_, "NcclCommunicator ", label_, ": no host communicator");
  init(*host_, device);
}

void NcclCommunicator::init(Communicator& bootstrap, int device) {
  rank_ = bootstrap.rank();
  size_ = bootstrap.size();
  state_->device = device;
  // Every step that can fail on one rank alone is followed by an exchange over the bootstrap that
  // tells every rank, so that no rank is left waiting in a collective the failed one never joins.
  auto fail_together = [&](const std::string& my_error, const std::vector<int64_t>& failed) {
    for (int q = 0; q < size_; ++q) {
      if (!failed[size_t(q)]) continue;
      if (q == rank_) COIL_FAIL(my_error);
      COIL_FAIL(name(), ": rank ", q, " could not set up NCCL (its error is printed there)");
    }
  };

  // The GPU: its UUID (two words) and whether this rank could bind it (third word).
  std::string bind_error;
  int64_t mine[2] = {0, 0};
  int count = 0;
  try {
    check_cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount", name());
    COIL_CHECK(device >= 0 && device < count, name(), ": rank ", rank_, " asks for CUDA device ", device,
               " but this process sees ", count, " (CUDA_VISIBLE_DEVICES='",
               std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "", "')");
    check_cuda(cudaSetDevice(device), "cudaSetDevice", name());
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", name());
    static_assert(sizeof(prop.uuid.bytes) == sizeof(mine));
    std::memcpy(mine, prop.uuid.bytes, sizeof(mine));
  } catch (const Error& e) {
    bind_error = e.message();
  }
  Tensor my_gpu = Tensor::from_ints({mine[0], mine[1], bind_error.empty() ? 0 : 1}, {3}, DType::I64);
  Tensor gpus = Tensor::zeros({3 * int64_t(size_)}, DType::I64);
  bootstrap.all_gather(my_gpu, gpus);
  const std::vector<int64_t> all = gpus.to_ints();
  std::vector<int64_t> failed(static_cast<size_t>(size_), 0);
  for (int q = 0; q < size_; ++q) failed[size_t(q)] = all[size_t(3 * q + 2)];
  fail_together(bind_error, failed);

  // One GPU per rank: NCCL refuses two ranks on one GPU with a bare "duplicate GPU" error, and only
  // from ncclCommInitRank, after every rank has started; the UUIDs of every rank's GPU say it first
  // and say what to do. Every rank sees the same table, so all of them fail together.
  for (int a = 0; a < size_; ++a)
    for (int b = a + 1; b < size_; ++b)
      COIL_CHECK(!(all[size_t(3 * a)] == all[size_t(3 * b)] && all[size_t(3 * a + 1)] == all[size_t(3 * b + 1)]),
                 name(), ": ranks ", a, " and ", b, " would both use GPU ", uuid_text(&all[size_t(3 * a)]),
                 " (this is rank ", rank_, " on host ", host_name(), ", CUDA device ", device, " of ", count,
                 "). NCCL needs one GPU per rank: start at most as many ranks per node as it has GPUs, "
                 "or set parallel.backend: mpi to let ranks share a GPU (slower: tensors go through host "
                 "memory)");

  // The unique id, from rank 0: bytes packed into i32 words, and one more word saying whether rank 0
  // could make it.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  std::string id_error;
  if (rank_ == 0) {
    try {
      check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId", name());
    } catch (const Error& e) {
      id_error = e.message();
    }
  }
  constexpr int64_t kWords = (sizeof(ncclUniqueId) + 3) / 4;
  std::vector<int64_t> words(kWords + 1, 0);
  std::vector<int32_t> raw(kWords, 0);
  std::memcpy(raw.data(), &id, sizeof(id));
  for (int64_t i = 0; i < kWords; ++i) words[size_t(i)] = raw[size_t(i)];
  words[size_t(kWords)] = id_error.empty() ? 0 : 1;
  Tensor t = Tensor::from_ints(words, {kWords + 1}, DType::I32);
  bootstrap.broadcast(t, 0);
  const std::vector<int64_t> got = t.to_ints();
  std::vector<int64_t> id_failed(static_cast<size_t>(size_), 0);
  id_failed[0] = got[size_t(kWords)];
  fail_together(id_error, id_failed);
  for (int64_t i = 0; i < kWords; ++i) raw[size_t(i)] = int32_t(got[size_t(i)]);
  std::memcpy(&id, raw.data(), sizeof(id));
  check_nccl(ncclCommInitRank(&state_->comm, size_, id, rank_), "ncclCommInitRank", name());
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<NcclCommState> state, CommPtr host, std::string label)
    : state_(std::move(state)), host_(std::move(host)), label_(std::move(label)) {
  check_nccl(ncclCommUserRank(state_->comm, &rank_), "ncclCommUserRank", name());
  check_nccl(ncclCommCount(state_->comm, &size_), "ncclCommCount", name());
}

NcclCommunicator::~NcclCommunicator() = default;

std::string NcclCommunicator::name() const {
  return "nccl:" + label_ + "(rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ", cuda:" +
         std::to_string(state_->device) + ")";
}

int NcclCommunicator::device() const { return state_->device; }

Communicator* NcclCommunicator::route(const char* op, const Tensor& t, const char* what) const {
  detail::check_buffer(*this, op, t, what);
  if (t.device().is_cpu()) {
    COIL_CHECK(host_ != nullptr, name(), ": ", op, " of the CPU ", what, " tensor ", t.describe(),
               ": this NCCL communicator has no host communicator (construct it over a CommPtr)");
    return host_.get();
  }
  COIL_CHECK(t.device().is_cuda() && t.device().index == state_->device, name(), ": ", op, " ", what,
             " must be a CUDA tensor on device ", state_->device, " (or a CPU tensor), got ", t.describe());
  return nullptr;
}

namespace {
// bf16 reductions (autocast activations and their gradients under tensor and sequence parallel):
// NCCL would add in bf16 at every hop of its ring; coil reduces an f32 copy and rounds once, as a
// single rank's f32-accumulating kernels would. The copies are stream ordered like the collective.
// Two exceptions reduce the bf16 tensor itself, with the same result: max (exact in any width), and
// a group of two, where every element is one f32 sum (or average: the halving is exact) of the two
// ranks' values rounded once, which is what NCCL computes for bf16; that halves the bytes of the
// tp2 / sp2 all-reduces and drops the two conversions.
bool bf16_exact_in_nccl(int size, ReduceOp op) { return size == 2 || op == ReduceOp::Max; }

void check_nccl_reducible(const Communicator& c, const char* op, const Tensor& t, ReduceOp rop) {
  if (t.dtype() == DType::BF16) return;
  detail::check_reducible(c, op, t, rop);
}
}  // namespace

void NcclCommunicator::all_reduce(const Tensor& t, ReduceOp op) {
  if (Communicator* h = route("all_reduce", t, "tensor")) return h->all_reduce(t, op);
  check_nccl_reducible(*this, "all_reduce", t, op);
  if (t.numel() == 0) return;
  if (t.dtype() == DType::BF16 && !bf16_exact_in_nccl(size_, op)) {
    Tensor f = t.to(DType::F32);
    all_reduce(f, op);
    Tensor(t).copy_(f.to(DType::BF16));
    return;
  }
  cuda::DeviceGuard guard(state_->device);  // NCCL launches on the current device
  check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()),
                           nccl_op(op), state_->comm, cuda::current_stream(state_->device)),
             "ncclAllReduce", name());
}

std::shared_ptr<Work> NcclCommunicator::all_reduce_async(const Tensor& t, ReduceOp op) {
  if (Communicator* h = route("all_reduce_async", t, "tensor")) return h->all_reduce_async(t, op);
  check_nccl_reducible(*this, "all_reduce_async", t, op);
  if (t.numel() == 0 || (t.dtype() == DType::BF16 && !bf16_exact_in_nccl(size_, op))) {
    // bf16: through f32 on the current stream
    all_reduce(t, op);
    return std::make_shared<CompletedWork>();
  }
  // On the side stream, behind everything the current stream has enqueued so far (the kernels that
  // wrote t): see the header for why not on the current stream.
  const int dev = state_->device;
  cuda::DeviceGuard guard(dev);
  if (!state_->side)
    check_cuda(cudaStreamCreateWithFlags(&state_->side, cudaStreamNonBlocking), "cudaStreamCreate", name());
  const cudaStream_t cur = cuda::current_stream(dev);
  cudaEvent_t ready = nullptr, done = nullptr;
  check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate", name());
  check_cuda(cudaEventRecord(ready, cur), "cudaEventRecord", name());
  check_cuda(cudaStreamWaitEvent(state_->side, ready, 0), "cudaStreamWaitEvent", name());
  cudaEventDestroy(ready);  // released once recorded work completes
  check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()),
                           nccl_op(op), state_->comm, state_->side),
             "ncclAllReduce", name());
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate", name());
  check_cuda(cudaEventRecord(done, state_->side), "cudaEventRecord", name());
  return std::make_shared<SideWork>(done, t, dev, name());
}

void NcclCommunicator::reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) {
  Communicator* hi = route("reduce_scatter", input, "input");
  Communicator* ho = route("reduce_scatter", output, "output");
  COIL_CHECK((hi == nullptr) == (ho == nullptr), name(), ": reduce_scatter input ", input.describe(),
             " and output ", output.describe(), " must both be CPU or both be CUDA tensors");
  if (hi) return hi->reduce_scatter(input, output, op);
  check_nccl_reducible(*this, "reduce_scatter", input, op);
  COIL_CHECK(input.numel() == int64_t(size_) * output.numel() && input.dtype() == output.dtype(), name(),
             ": reduce_scatter input ", input.describe(), " must hold ", size_, " blocks of output ",
             output.describe());
  if (output.numel() == 0) return;
  if (input.dtype() == DType::BF16 && !bf16_exact_in_nccl(size_, op)) {
    Tensor f = Tensor::empty(output.shape(), DType::F32, output.device());
    reduce_scatter(input.to(DType::F32), f, op);
    Tensor(output).copy_(f.to(DType::BF16));
    return;
  }
  cuda::DeviceGuard guard(state_->device);  // NCCL launches on the current device
  check_nccl(ncclReduceScatter(input.data_ptr(), output.data_ptr(), size_t(output.numel()),
                               nccl_type(input.dtype(), name()), nccl_op(op), state_->comm,
                               cuda::current_stream(state_->device)),
             "ncclReduceScatter", name());
}

void NcclCommunicator::all_gather(const Tensor& input, const Tensor& output) {
  Communicator* hi = route("all_gather", input, "input");
  Communicator* ho = route("all_gather", output, "output");
  COIL_CHECK((hi == nullptr) == (ho == nullptr), name(), ": all_gather input ", input.describe(),
             " and output ", output.describe(), " must both be CPU or both be CUDA tensors");
  if (hi) return hi->all_gather(input, output);
  COIL_CHECK(output.numel() == int64_t(size_) * input.numel() && input.dtype() == output.dtype(), name(),
             ": all_gather output ", output.describe(), " must hold ", size_, " blocks of input ",
             input.describe());
  if (input.numel() == 0) return;
  cuda::DeviceGuard guard(state_->device);  // NCCL launches on the current device
  check_nccl(ncclAllGather(input.data_ptr(), output.data_ptr(), size_t(input.numel()),
                           nccl_type(input.dtype(), name()), state_->comm, cuda::current_stream(state_->device)),
             "ncclAllGather", name());
}

void NcclCommunicator::broadcast(const Tensor& t, int root) {
  if (Communicator* h = route("broadcast", t, "tensor")) return h->broadcast(t, root);
  COIL_CHECK(root >= 0 && root < size_, name(), ": broadcast root ", root, " outside 0..", size_ - 1);
  if (t.numel() == 0) return;
  cuda::DeviceGuard guard(state_->device);  // NCCL launches on the current device
  check_nccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()), root,
                           state_->comm, cuda::current_stream(state_->device)),
             "ncclBroadcast", name());
}

void NcclCommunicator::send(const Tensor& t, int dst, int tag) {
  if (Communicator* h = route("send", t, "tensor")) return h->send(t, dst, tag);
  COIL_CHECK(dst >= 0 && dst < size_ && dst != rank_, name(), ": send to rank ", dst, " from rank ", rank_,
             " of ", size_);
  if (t.numel() == 0) return;
  cuda::DeviceGuard guard(state_->device);  // NCCL launches on the current device
  check_nccl(ncclSend(t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()), dst, state_->comm,
                      cuda::current_stream(state_->device)),
             "ncclSend", name());
}

void NcclCommunicator::recv(const Tensor& t, int src, int tag) {
  if (Communicator* h = route("recv", t, "tensor")) return h->recv(t, src, tag);
  COIL_CHECK(src >= 0 && src < size_ && src != rank_, name(), ": recv from rank ", src, " on rank ", rank_,
             " of ", size_);
  if (t.numel() == 0) return;
  cuda::DeviceGuard guard(state_->device);  // NCCL launches on the current device
  check_nccl(ncclRecv(t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype(), name()), src, state_->comm,
                      cuda::current_stream(state_->device)),
             "ncclRecv", name());
}

void NcclCommunicator::barrier() {
  // Work already enqueued finishes first, so a barrier also means "my collectives are done".
  cuda::DeviceGuard guard(state_->device);
  check_cuda(cudaStreamSynchronize(cuda::current_stream(state_->device)), "cudaStreamSynchronize", name());
  if (host_) return host_->barrier();
  Tensor one = Tensor::ones({1}, DType::F32, Device::cuda(state_->device));
  all_reduce(one, ReduceOp::Sum);
  check_cuda(cudaStreamSynchronize(cuda::current_stream(state_->device)), "cudaStreamSynchronize", name());
}

CommPtr NcclCommunicator::split(int color, int key, const std::string& label) {
  // Both sides split with the same color and key, so the host group's ranks are the NCCL group's.
  CommPtr host = host_ ? host_->split(color, key, label) : nullptr;
  auto st = std::make_shared<NcclCommState>();
  st->device = state_->device;
  cuda::DeviceGuard guard(state_->device);
  check_nccl(ncclCommSplit(state_->comm, color, key, &st->comm, nullptr), "ncclCommSplit", name());
  auto out = std::shared_ptr<NcclCommunicator>(new NcclCommunicator(st, host, label));
  if (host)
    COIL_CHECK(host->rank() == out->rank() && host->size() == out->size(), name(), ": split '", label,
               "' gave NCCL rank ", out->rank(), " of ", out->size(), " but host rank ", host->rank(), " of ",
               host->size());
  return out;
}

}  // namespace coil
