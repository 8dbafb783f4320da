// The MPI communicator. Collectives map one to one onto MPI calls on a duplicated communicator; avg is a
// sum followed by a division (MPI has no average). bf16 is moved as 16-bit words and reduced as f64.
// f32 sums travel as f64 and are rounded once at the end: the ranks' partial sums then add up exactly
// (whatever order MPI picks), so an all-reduce and a reduce-scatter give the same values (plain data
// parallel = ZeRO-1) and a sharded gradient is as close to the single-rank one as its shards allow.
// bf16 (the activations and their gradients of a bf16 autocast run under tp or sp, on ranks that
// share a GPU) is reduced the same way, every op, and rounded once, as the NCCL communicator does.
#include "parallel/mpi_communicator.h"

#include <mpi.h>

#include <cstdlib>

namespace coil {
namespace {

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(buf, size_t(len));
}

#define COIL_MPI_CHECK(call, ...)                                                               \
  do {                                                                                          \
    const int coil_mpi_rc_ = (call);                                                            \
    if (coil_mpi_rc_ != MPI_SUCCESS) [[unlikely]]                                              \
      COIL_FAIL(#call, " failed: ", mpi_error_string(coil_mpi_rc_), " ", ##__VA_ARGS__);        \
  } while (0)

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    case DType::BF16: return MPI_UINT16_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::Max ? MPI_MAX : MPI_SUM; }

int count_of(const Tensor& t, const char* op) {
  COIL_CHECK(t.numel() <= int64_t(INT32_MAX), op, ": ", t.describe(),
             " has more elements than one MPI call can move (2^31 - 1); split the buffer");
  return int(t.numel());
}

// CUDA tensors go through a host copy: in() gives the host buffer, finish() writes it back.
struct Staged {
  Tensor dev, host;
  explicit Staged(const Tensor& t) : dev(t) {
    host = t.device().is_cpu() ? t : t.to(Device::cpu()).contiguous();
  }
  void finish() const {
    if (!dev.device().is_cpu()) Tensor(dev).copy_(host);
  }
};

// f32 sum / avg: reduced in f64 (see the top of the file).
bool widened(const Tensor& t, ReduceOp op) {
  return (t.dtype() == DType::F32 && op != ReduceOp::Max) || t.dtype() == DType::BF16;
}

void divide_by(const Tensor& t, int n) {
  if (n == 1) return;
  if (t.dtype() == DType::F32) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] /= float(n);
  } else {
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] /= double(n);
  }
}

class MpiWork : public Work {
 public:
  MpiWork(MPI_Request req, Tensor t, bool average, int size, Tensor wide = Tensor())
      : req_(req), t_(std::move(t)), wide_(std::move(wide)), average_(average), size_(size) {}
  ~MpiWork() override {
    // A work dropped without wait() must still complete before its buffer can go away.
    if (req_ != MPI_REQUEST_NULL) {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Wait(&req_, MPI_STATUS_IGNORE);
    }
  }
  void wait() override {
    if (done_) return;
    COIL_MPI_CHECK(MPI_Wait(&req_, MPI_STATUS_IGNORE), "(async all_reduce of ", t_.describe(), ")");
    done_ = true;
    if (average_) divide_by(wide_.defined() ? wide_ : t_, size_);
    if (wide_.defined()) t_.copy_(wide_);
  }

 private:
  MPI_Request req_;
  Tensor t_, wide_;  // wide_: the f64 buffer MPI reduces when t_ is f32
  bool average_;
  int size_;
  bool done_ = false;
};

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of comm (freed on destruction).
  MpiCommunicator(MPI_Comm comm, std::string label) : comm_(comm), label_(std::move(label)) {
    COIL_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    COIL_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    COIL_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override {
    return "mpi:" + label_ + "(rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ")";
  }

  void all_reduce(const Tensor& t, ReduceOp op) override {
    detail::check_buffer(*this, "all_reduce", t, "input");
    detail::check_reducible(*this, "all_reduce", t, op);
    Staged s(t);
    Tensor buf = widened(t, op) ? s.host.to(DType::F64) : s.host;
    COIL_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf.data_ptr(), count_of(t, "all_reduce"),
                                 mpi_type(buf.dtype()), mpi_op(op), comm_),
                   "on ", name(), " with ", t.describe());
    if (op == ReduceOp::Avg) divide_by(buf, size_);
    if (buf.dtype() != s.host.dtype()) s.host.copy_(buf);
    s.finish();
  }

  std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    if (!t.device().is_cpu()) return Communicator::all_reduce_async(t, op);
    detail::check_buffer(*this, "all_reduce_async", t, "input");
    detail::check_reducible(*this, "all_reduce_async", t, op);
    MPI_Request req;
    Tensor wide = widened(t, op) ? t.to(DType::F64) : Tensor();
    const Tensor& buf = wide.defined() ? wide : t;
    COIL_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf.data_ptr(), count_of(t, "all_reduce_async"),
                                  mpi_type(buf.dtype()), mpi_op(op), comm_, &req),
                   "on ", name(), " with ", t.describe());
    return std::make_shared<MpiWork>(req, t, op == ReduceOp::Avg, size_, wide);
  }

  void reduce_scatter(const Tensor& input, const Tensor& output, ReduceOp op) override {
    detail::check_buffer(*this, "reduce_scatter", input, "input");
    detail::check_buffer(*this, "reduce_scatter", output, "output");
    detail::check_reducible(*this, "reduce_scatter", input, op);
    COIL_CHECK(input.dtype() == output.dtype() && input.numel() == output.numel() * size_,
               "reduce_scatter on ", name(), ": input ", input.describe(), " must hold ", size_,
               " blocks of output ", output.describe());
    Staged si(input), so(output);
    const bool wide = widened(input, op);
    Tensor in = wide ? si.host.to(DType::F64) : si.host;
    Tensor out = wide ? Tensor::empty(so.host.shape(), DType::F64, so.host.device()) : so.host;
    COIL_MPI_CHECK(MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(),
                                            count_of(output, "reduce_scatter"),
                                            mpi_type(in.dtype()), mpi_op(op), comm_),
                   "on ", name(), " with ", input.describe());
    if (op == ReduceOp::Avg) divide_by(out, size_);
    if (wide) so.host.copy_(out);
    so.finish();
  }

  void all_gather(const Tensor& input, const Tensor& output) override {
    detail::check_buffer(*this, "all_gather", input, "input");
    detail::check_buffer(*this, "all_gather", output, "output");
    COIL_CHECK(input.dtype() == output.dtype() && output.numel() == input.numel() * size_,
               "all_gather on ", name(), ": output ", output.describe(), " must hold ", size_,
               " blocks of input ", input.describe());
    Staged si(input), so(output);
    const int n = count_of(input, "all_gather");
    COIL_MPI_CHECK(MPI_Allgather(si.host.data_ptr(), n, mpi_type(input.dtype()), so.host.data_ptr(),
                                 n, mpi_type(input.dtype()), comm_),
                   "on ", name(), " with ", input.describe());
    so.finish();
  }

  void broadcast(const Tensor& t, int root) override {
    detail::check_buffer(*this, "broadcast", t, "input");
    check_peer("broadcast", root);
    Staged s(t);
    COIL_MPI_CHECK(MPI_Bcast(s.host.data_ptr(), count_of(t, "broadcast"), mpi_type(t.dtype()), root,
                             comm_),
                   "on ", name(), " from root ", root);
    s.finish();
  }

  void send(const Tensor& t, int dst, int tag) override {
    detail::check_buffer(*this, "send", t, "input");
    check_peer("send", dst);
    Staged s(t);
    COIL_MPI_CHECK(MPI_Send(s.host.data_ptr(), count_of(t, "send"), mpi_type(t.dtype()), dst, tag,
                            comm_),
                   "on ", name(), " to ", dst);
  }

  void recv(const Tensor& t, int src, int tag) override {
    detail::check_buffer(*this, "recv", t, "output");
    check_peer("recv", src);
    Staged s(t);
    MPI_Status st;
    COIL_MPI_CHECK(MPI_Recv(s.host.data_ptr(), count_of(t, "recv"), mpi_type(t.dtype()), src, tag,
                            comm_, &st),
                   "on ", name(), " from ", src);
    int got = 0;
    COIL_MPI_CHECK(MPI_Get_count(&st, mpi_type(t.dtype()), &got));
    COIL_CHECK(got == int(t.numel()), "recv on ", name(), ": expected ", t.numel(),
               " elements from rank ", src, ", got ", got);
    s.finish();
  }

  void barrier() override { COIL_MPI_CHECK(MPI_Barrier(comm_), "on ", name()); }

  CommPtr split(int color, int key, const std::string& label) override {
    MPI_Comm nc = MPI_COMM_NULL;
    COIL_MPI_CHECK(MPI_Comm_split(comm_, color, key, &nc), "on ", name(), " (color ", color,
                   ", key ", key, ")");
    return std::make_shared<MpiCommunicator>(nc, label);
  }

 private:
  void check_peer(const char* op, int r) const {
    COIL_CHECK(r >= 0 && r < size_ && (r != rank_ || std::string(op) == "broadcast"), op, " on ",
               name(), ": peer rank ", r, " is not another rank of this group");
  }
  MPI_Comm comm_;
  std::string label_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int inited = 0;
  COIL_MPI_CHECK(MPI_Initialized(&inited));
  if (!inited) {
    int provided = 0;
    COIL_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_ = true;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

CommPtr MpiRuntime::world() const {
  MPI_Comm c = MPI_COMM_NULL;
  COIL_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &c));
  return std::make_shared<MpiCommunicator>(c, "world");
}

int MpiRuntime::world_rank() const {
  int r = 0;
  COIL_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &r));
  return r;
}

int MpiRuntime::world_size() const {
  int s = 1;
  COIL_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &s));
  return s;
}

int MpiRuntime::local_rank() const {
  if (const char* e = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) return std::atoi(e);
  MPI_Comm node = MPI_COMM_NULL;
  COIL_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank(),
                                     MPI_INFO_NULL, &node));
  int r = 0;
  MPI_Comm_rank(node, &r);
  MPI_Comm_free(&node);
  return r;
}

}  // namespace coil
