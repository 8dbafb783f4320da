// The cuDNN 9 backend (graph) API, thinly wrapped for the fused-attention graphs (cudnn_sdpa.cpp).
// COIL_CUDNN_CHECK turns a failed call into coil::Error with cudnnGetErrorString and cuDNN's last error
// message; Descriptor owns one cudnnBackendDescriptor_t; Graph builds tensors and operations, keeps
// every descriptor alive, and finalises the first execution plan the heuristics offer that finalises;
// with_handle() runs work on the device's one handle, bound to the current stream, under its mutex.
// Only compiled with COIL_HAVE_CUDNN (the CUDA backend links cuDNN when CMake finds it).
#pragma once

#if COIL_HAVE_CUDNN

#include <cudnn_graph.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace coil::cuda::cudnn {

// Throws coil::Error naming the call, the status string and cuDNN's own last error message.
[[noreturn]] void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line);

// "9.14.0": the version of the cuDNN library loaded at run time (not the headers).
std::string runtime_version_string();
size_t runtime_version();  // cudnnGetVersion(): 91400 for 9.14.0

// Runs fn(handle) with the handle of `device` (created on first use) bound to the current stream of that
// device. One mutex per device serialises the users of a handle.
void with_handle(int device, const std::function<void(cudnnHandle_t)>& fn);

// Owns one backend descriptor (destroyed with the object).
class Descriptor {
 public:
  explicit Descriptor(cudnnBackendDescriptorType_t type);
  ~Descriptor();
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  cudnnBackendDescriptor_t get() const { return d_; }
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
           const void* values);
  void set_desc(cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value) {
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
  }
  void finalize();

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// A tensor of the graph: logical dims with explicit strides (in elements).
struct TensorSpec {
  std::vector<int64_t> dims, strides;
  cudnnDataType_t dtype = CUDNN_DATA_FLOAT;
  int64_t uid = 0;          // 0: a fresh virtual uid is assigned
  bool is_virtual = true;   // virtual tensors live only inside the fused kernel
  bool by_value = false;    // a host scalar passed in the variant pack
  cudnnBackendTensorReordering_t reorder = CUDNN_TENSOR_REORDERING_NONE;
};

// A finalised execution plan and everything it refers to.
struct Plan {
  std::vector<std::unique_ptr<Descriptor>> keep;  // tensors, ops, graph, engine config: alive with the plan
  std::unique_ptr<Descriptor> plan;
  int64_t workspace_bytes = 0;
  std::string engine;  // "engine <global index>", for logs
};

// Builds one operation graph. Tensor and operation methods return raw handles owned by the Graph.
class Graph {
 public:
  using T = cudnnBackendDescriptor_t;
  T tensor(const TensorSpec& spec);
  // y = mode(x[, b[, t]]) elementwise with broadcasting; axis is GEN_INDEX's axis.
  void pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t math, T x, T b, T t, T y, int64_t axis = -1);
  void reduction(cudnnReduceTensorOp_t op, T x, T y);  // over the dims where y has size 1
  void matmul(T a, T b, T c);                          // batched (.., M, K) x (.., K, N) -> (.., M, N)
  void reshape(T x, T y);                              // same data, new dims / strides
  // Finalises the graph and the first plan (heuristics mode A, then the fallback list) that finalises.
  // Returns nullptr, with the reasons in *why, when no engine takes the graph.
  std::unique_ptr<Plan> build_plan(cudnnHandle_t handle, std::string* why);

 private:
  std::vector<std::unique_ptr<Descriptor>> tensors_, ops_;
  int64_t next_virtual_uid_ = 1 << 20;  // above every uid a caller names
};

// Executes `plan` with the variant pack (uids[i] -> pointers[i]) and the workspace (may be null when
// the plan needs none).
void execute(cudnnHandle_t handle, const Plan& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace);

}  // namespace coil::cuda::cudnn

#define COIL_CUDNN_CHECK(call)                                                                \
  do {                                                                                        \
    const cudnnStatus_t coil_cudnn_status_ = (call);                                          \
    if (coil_cudnn_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]]                              \
      ::coil::cuda::cudnn::throw_cudnn_error(coil_cudnn_status_, #call, __FILE__, __LINE__);  \
  } while (0)

#endif  // COIL_HAVE_CUDNN
