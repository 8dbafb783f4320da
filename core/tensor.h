// Tensor: a strided view (shape, strides, offset in elements, dtype) of a Storage on one device, plus
// autograd metadata. Tensors are handles: copying a Tensor shares the same TensorImpl. Views (view,
// reshape of a contiguous tensor, transpose, permute, narrow, expand) share storage and record a
// backward node like any other op. Shapes are int64 vectors; strides are in elements.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/storage.h"

namespace coil {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "(2, 3, 4)"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

class Node;
class AccumulateGrad;
class Generator;

struct TensorImpl {
  Storage storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::F32;
  // autograd
  bool requires_grad = false;          // meaningful for leaves; non-leaves have grad_fn
  std::shared_ptr<Node> grad_fn;       // null for leaves
  int output_nr = 0;                   // which output of grad_fn this is
  std::shared_ptr<struct TensorImpl> grad;          // accumulated gradient of a leaf
  std::weak_ptr<AccumulateGrad> grad_accumulator;   // shared by every use of a leaf
  std::string name;                    // optional, used in error messages
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- factories ---------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  // Values are converted to dtype (rounded for bf16, truncated toward zero for integers).
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor from_ints(const std::vector<int64_t>& values, const Shape& shape,
                          DType dtype = DType::I32, Device device = Device::cpu());
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::F32,
                      Device device = Device::cpu(), double mean = 0.0, double stddev = 1.0);
  static Tensor uniform(const Shape& shape, Generator& gen, double lo, double hi,
                        DType dtype = DType::F32, Device device = Device::cpu());

  // --- metadata ----------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl()->shape; }
  const Shape& strides() const { return impl()->strides; }
  int64_t offset() const { return impl()->offset; }
  int64_t dim() const { return int64_t(impl()->shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(impl()->shape); }
  DType dtype() const { return impl()->dtype; }
  Device device() const { return impl()->storage->device(); }
  bool is_contiguous() const;
  const Storage& storage() const { return impl()->storage; }
  uint64_t version() const { return impl()->storage->version(); }
  void bump_version() const { impl()->storage->bump_version(); }
  std::string describe() const;  // "f32 (2, 3) cpu" for messages
  TensorImpl* impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // Raw pointer to the first element (storage data + offset). T must match dtype's size.
  void* data_ptr() const;
  template <typename T>
  T* data() const { return static_cast<T*>(data_ptr()); }

  // --- views (differentiable; share storage) --------------------------------------------------------
  Tensor view(const Shape& shape) const;     // requires a compatible (contiguous) layout; one -1 allowed
  Tensor reshape(const Shape& shape) const;  // view when possible, else contiguous() then view
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const { return narrow(dim, start, end - start); }
  Tensor expand(const Shape& shape) const;   // size-1 dims (and new leading dims) broadcast, stride 0
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;

  // --- copies and conversions (differentiable) --------------------------------------------------
  Tensor contiguous() const;  // itself when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor detach() const;      // shares storage, no grad_fn, requires_grad false

  // --- in-place (bump the version counter; not recorded by autograd) ------------------------------
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // src broadcast to this shape; dtype/device converted

  // --- autograd -----------------------------------------------------------------------------------
  bool requires_grad() const;  // leaf flag, or has a grad_fn
  Tensor& set_requires_grad(bool r);
  bool is_leaf() const { return impl()->grad_fn == nullptr; }
  Tensor grad() const;         // undefined until backward reaches this leaf
  void set_grad(const Tensor& g) const;
  void zero_grad() const;      // drops the gradient (next backward sets it fresh)
  const std::shared_ptr<Node>& grad_fn() const { return impl()->grad_fn; }
  int output_nr() const { return impl()->output_nr; }
  // Backpropagate from this tensor. grad defaults to 1 for a one-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  Tensor& set_name(const std::string& n);
  const std::string& name() const { return impl()->name; }

  // --- host access (tests, logging) ---------------------------------------------------------------
  double item() const;                       // one-element tensor -> double
  std::vector<double> to_vector() const;     // all elements in row-major order, as double
  std::vector<int64_t> to_ints() const;      // integer tensors
  double at(const std::vector<int64_t>& index) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Broadcast two shapes (numpy rules) or throw naming both.
Shape broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace coil
