// The cuDNN backend API wrappers of cudnn_backend.h: error reporting, the per-device handles, graph
// building and plan selection, execution.
#if COIL_HAVE_CUDNN

#include "kernels/cuda/cudnn_backend.h"

#include <array>
#include <mutex>

#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"

namespace coil::cuda::cudnn {

void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  char msg[1024] = {};
  cudnnGetLastErrorString(msg, sizeof(msg));
  throw Error(detail::str_cat("cuDNN call ", call, " failed: ", cudnnGetErrorString(status),
                              msg[0] ? std::string(" (") + msg + ")" : std::string()),
              file, line);
}

size_t runtime_version() { return cudnnGetVersion(); }

std::string runtime_version_string() {
  const size_t v = cudnnGetVersion();  // major * 10000 + minor * 100 + patch since 9.0
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

namespace {
struct HandleSlot {
  std::mutex mu;
  cudnnHandle_t handle = nullptr;
};
// Never destroyed: handles live until the process exits, like the caching allocator.
std::array<HandleSlot, kMaxDevices>& handle_slots() {
  static auto* slots = new std::array<HandleSlot, kMaxDevices>();
  return *slots;
}
}  // namespace

void with_handle(int device, const std::function<void(cudnnHandle_t)>& fn) {
  COIL_INTERNAL_ASSERT(device >= 0 && device < kMaxDevices, "device ", device);
  HandleSlot& slot = handle_slots()[size_t(device)];
  std::lock_guard<std::mutex> lock(slot.mu);
  DeviceGuard guard(device);
  if (!slot.handle) COIL_CUDNN_CHECK(cudnnCreate(&slot.handle));
  COIL_CUDNN_CHECK(cudnnSetStream(slot.handle, current_stream(device)));
  fn(slot.handle);
}

// --- Descriptor ---------------------------------------------------------------------------------------
Descriptor::Descriptor(cudnnBackendDescriptorType_t type) {
  COIL_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_));
}

Descriptor::~Descriptor() {
  if (d_) cudnnBackendDestroyDescriptor(d_);
}

void Descriptor::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                     const void* values) {
  COIL_CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, type, count, values));
}

void Descriptor::finalize() { COIL_CUDNN_CHECK(cudnnBackendFinalize(d_)); }

// --- Graph --------------------------------------------------------------------------------------------
// Every tensor is 16-byte aligned: the allocator gives 256-byte blocks and (B, T, H, D) rows of a
// multiple-of-8 head dim in bf16 keep that alignment; the tensor-core engines require it.
inline constexpr int64_t kTensorAlignment = 16;

Graph::T Graph::tensor(const TensorSpec& s) {
  COIL_INTERNAL_ASSERT(s.dims.size() == s.strides.size() && !s.dims.empty(), "tensor spec rank");
  auto d = std::make_unique<Descriptor>(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t uid = s.uid ? s.uid : next_virtual_uid_++;
  const bool is_virtual = s.is_virtual, by_value = s.by_value;
  d->set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &s.dtype);
  d->set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, int64_t(s.dims.size()), s.dims.data());
  d->set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, int64_t(s.strides.size()), s.strides.data());
  d->set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  d->set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &kTensorAlignment);
  d->set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
  if (by_value) d->set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
  if (s.reorder != CUDNN_TENSOR_REORDERING_NONE)
    d->set(CUDNN_ATTR_TENSOR_REORDERING_MODE, CUDNN_TYPE_TENSOR_REORDERING_MODE, 1, &s.reorder);
  d->finalize();
  tensors_.push_back(std::move(d));
  return tensors_.back()->get();
}

void Graph::pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t math, T x, T b, T t, T y, int64_t axis) {
  auto pw = std::make_unique<Descriptor>(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  pw->set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  pw->set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &math);
  if (axis >= 0) pw->set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
  pw->finalize();
  auto op = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw->get());
  op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
  if (b) op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
  if (t) op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t);
  op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
  op->finalize();
  tensors_.push_back(std::move(pw));  // kept alive with the tensors; not an operation of the graph
  ops_.push_back(std::move(op));
}

void Graph::reduction(cudnnReduceTensorOp_t reduce_op, T x, T y) {
  auto rd = std::make_unique<Descriptor>(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
  const cudnnDataType_t math = CUDNN_DATA_FLOAT;
  rd->set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce_op);
  rd->set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &math);
  rd->finalize();
  auto op = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  op->set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x);
  op->set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
  op->set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd->get());
  op->finalize();
  tensors_.push_back(std::move(rd));
  ops_.push_back(std::move(op));
}

void Graph::matmul(T a, T b, T c) {
  auto mm = std::make_unique<Descriptor>(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  const cudnnDataType_t math = CUDNN_DATA_FLOAT;  // fp32 accumulation
  mm->set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &math);
  mm->finalize();
  auto op = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a);
  op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b);
  op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c);
  op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm->get());
  op->finalize();
  tensors_.push_back(std::move(mm));
  ops_.push_back(std::move(op));
}

void Graph::reshape(T x, T y) {
  auto op = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  op->set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x);
  op->set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
  op->finalize();
  ops_.push_back(std::move(op));
}

namespace {
std::string last_error(cudnnStatus_t status) {
  char msg[512] = {};
  cudnnGetLastErrorString(msg, sizeof(msg));
  return std::string(cudnnGetErrorString(status)) + (msg[0] ? std::string(": ") + msg : "");
}
}  // namespace

std::unique_ptr<Plan> Graph::build_plan(cudnnHandle_t handle, std::string* why) {
  auto plan = std::make_unique<Plan>();
  auto graph = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  std::vector<cudnnBackendDescriptor_t> ops;
  for (const auto& op : ops_) ops.push_back(op->get());
  graph->set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  graph->set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(ops.size()), ops.data());
  if (cudnnStatus_t st = cudnnBackendFinalize(graph->get()); st != CUDNN_STATUS_SUCCESS) {
    *why = "operation graph: " + last_error(st);
    return nullptr;
  }
  std::string reasons;
  // Heuristics mode A ranks the engines that take this graph; the fallback list adds any other.
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    Descriptor heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph->get());
    heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    if (cudnnStatus_t st = cudnnBackendFinalize(heur.get()); st != CUDNN_STATUS_SUCCESS) {
      reasons += " [heuristics " + std::to_string(int(mode)) + ": " + last_error(st) + "]";
      continue;
    }
    int64_t count = 0;
    COIL_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
    std::vector<std::unique_ptr<Descriptor>> cfgs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      cfgs.push_back(std::make_unique<Descriptor>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
      raw.push_back(cfgs.back()->get());
    }
    int64_t got = 0;
    if (count > 0)
      COIL_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, raw.data()));
    if (got == 0) reasons += " [heuristics " + std::to_string(int(mode)) + ": no engine config]";
    for (int64_t i = 0; i < got; ++i) {
      auto p = std::make_unique<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      p->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
      p->set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, raw[size_t(i)]);
      if (cudnnStatus_t st = cudnnBackendFinalize(p->get()); st != CUDNN_STATUS_SUCCESS) {
        reasons += " [config " + std::to_string(i) + ": " + last_error(st) + "]";
        continue;
      }
      COIL_CUDNN_CHECK(cudnnBackendGetAttribute(p->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                CUDNN_TYPE_INT64, 1, nullptr, &plan->workspace_bytes));
      // The engine behind the config, for logs: its global index.
      Descriptor engine_desc(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
      cudnnBackendDescriptor_t engine = engine_desc.get();
      int64_t n = 0, index = -1;
      if (cudnnBackendGetAttribute(raw[size_t(i)], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                   1, &n, &engine) == CUDNN_STATUS_SUCCESS &&
          cudnnBackendGetAttribute(engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n,
                                   &index) == CUDNN_STATUS_SUCCESS)
        plan->engine = "engine " + std::to_string(index);
      plan->engine += " (heuristics mode " + std::to_string(int(mode)) + ", choice " + std::to_string(i) + ")";
      plan->plan = std::move(p);
      plan->keep = std::move(tensors_);
      for (auto& op : ops_) plan->keep.push_back(std::move(op));
      plan->keep.push_back(std::move(graph));
      for (auto& c : cfgs) plan->keep.push_back(std::move(c));
      return plan;
    }
  }
  *why = "no engine finalised:" + reasons;
  return nullptr;
}

void execute(cudnnHandle_t handle, const Plan& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace) {
  COIL_INTERNAL_ASSERT(uids.size() == pointers.size(), "variant pack: ", uids.size(), " uids, ",
                       pointers.size(), " pointers");
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(uids.size()), uids.data());
  pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, int64_t(pointers.size()),
           pointers.data());
  pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  pack.finalize();
  COIL_CUDNN_CHECK(cudnnBackendExecute(handle, plan.plan->get(), pack.get()));
}

}  // namespace coil::cuda::cudnn

#endif  // COIL_HAVE_CUDNN
