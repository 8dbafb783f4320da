// Tensor factories, metadata, views and host access. Views record autograd nodes through record();
// copies go through the Copy kernel of the destination's backend.
#include "core/tensor.h"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/registry.h"

namespace coil {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ")";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    COIL_CHECK(da == db || da == 1 || db == 1, "shapes ", shape_str(a), " and ", shape_str(b),
               " cannot be broadcast together (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

int64_t wrap_dim(int64_t d, int64_t ndim, const char* what) {
  int64_t w = d < 0 ? d + ndim : d;
  COIL_CHECK(w >= 0 && w < std::max<int64_t>(ndim, 1), what, ": dim ", d, " out of range for a ",
             ndim, "-d tensor");
  return w;
}

// A new tensor sharing `base`'s storage with the given geometry (no autograd).
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

// Record a one-input view node.
Tensor recorded_view(const Tensor& base, Tensor out, const char* name, FunctionNode::Backward bw) {
  record(name, {base}, {out}, std::move(bw));
  return out;
}

// Read element i (row-major over shape) of a CPU tensor as double.
double read_as_double(const Tensor& t, const std::vector<int64_t>& idx) {
  int64_t off = 0;
  for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.strides()[d];
  const char* base = static_cast<const char*>(t.storage()->data()) +
                     (t.offset() + off) * int64_t(dtype_size(t.dtype()));
  switch (t.dtype()) {
    case DType::F32: return *reinterpret_cast<const float*>(base);
    case DType::F64: return *reinterpret_cast<const double*>(base);
    case DType::BF16: return bf16_to_float(*reinterpret_cast<const bf16*>(base));
    case DType::I32: return *reinterpret_cast<const int32_t*>(base);
    case DType::I64: return double(*reinterpret_cast<const int64_t*>(base));
  }
  return 0;
}

template <typename F>
void for_each_index(const Shape& shape, F&& f) {
  int64_t n = shape_numel(shape);
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    f(idx);
    for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

void write_host(void* dst, DType t, int64_t i, double v) {
  switch (t) {
    case DType::F32: static_cast<float*>(dst)[i] = float(v); break;
    case DType::F64: static_cast<double*>(dst)[i] = v; break;
    case DType::BF16: static_cast<bf16*>(dst)[i] = float_to_bf16(float(v)); break;
    case DType::I32: static_cast<int32_t*>(dst)[i] = int32_t(v); break;
    case DType::I64: static_cast<int64_t*>(dst)[i] = int64_t(v); break;
  }
}

}  // namespace

// --- factories ---------------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) COIL_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<StorageImpl>(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  NoGradGuard g;
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype,
                           Device device) {
  COIL_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
             " values for shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor host = empty(shape, dtype, Device::cpu());
  for (size_t i = 0; i < values.size(); ++i) write_host(host.data_ptr(), dtype, int64_t(i), values[i]);
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::from_ints(const std::vector<int64_t>& values, const Shape& shape, DType dtype,
                         Device device) {
  COIL_CHECK(int64_t(values.size()) == shape_numel(shape), "from_ints: ", values.size(),
             " values for shape ", shape_str(shape));
  Tensor host = empty(shape, dtype, Device::cpu());
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::I64) host.data<int64_t>()[i] = values[i];
    else write_host(host.data_ptr(), dtype, int64_t(i), double(values[i]));
  }
  return device.is_cpu() ? host : host.to(device);
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, Device device, double mean,
                     double stddev) {
  int64_t n = shape_numel(shape);
  uint64_t first = gen.advance(uint64_t(n));
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = mean + stddev * Generator::normal_at(gen.seed(), first + i);
  return from_vector(v, shape, dtype, device);
}

Tensor Tensor::uniform(const Shape& shape, Generator& gen, double lo, double hi, DType dtype,
                       Device device) {
  int64_t n = shape_numel(shape);
  uint64_t first = gen.advance(uint64_t(n));
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = lo + (hi - lo) * Generator::uniform_at(gen.seed(), first + i);
  return from_vector(v, shape, dtype, device);
}

// --- metadata ----------------------------------------------------------------------------------------

TensorImpl* Tensor::impl() const {
  COIL_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return impl_.get();
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined";
  std::string s = std::string(dtype_name(dtype())) + " " + shape_str(shape()) + " " + device_name(device());
  if (!name().empty()) s = "'" + name() + "' " + s;
  return s;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(storage()->data()) + offset() * int64_t(dtype_size(dtype()));
}

Tensor& Tensor::set_name(const std::string& n) {
  impl()->name = n;
  return *this;
}

// --- views -------------------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = shape_in;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      COIL_CHECK(infer < 0, "view: more than one -1 in ", shape_str(shape_in));
      infer = int64_t(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    COIL_CHECK(known > 0 && numel() % known == 0, "view: cannot view ", shape_str(this->shape()),
               " as ", shape_str(shape_in));
    shape[infer] = numel() / known;
  }
  COIL_CHECK(shape_numel(shape) == numel(), "view: cannot view ", shape_str(this->shape()), " (",
             numel(), " elements) as ", shape_str(shape_in), " (", shape_numel(shape), " elements)");
  COIL_CHECK(is_contiguous(), "view: tensor of shape ", shape_str(this->shape()), " with strides ",
             shape_str(strides()), " is not contiguous; use reshape()");
  Shape in_shape = this->shape();
  return recorded_view(*this, make_view(*this, shape, contiguous_strides(shape), offset()), "ViewBackward",
                       [in_shape](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
                         return std::vector<Tensor>{g[0].reshape(in_shape)};
                       });
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  Shape sh = shape(), st = strides();
  std::swap(sh[d0], sh[d1]);
  std::swap(st[d0], st[d1]);
  return recorded_view(*this, make_view(*this, sh, st, offset()), "TransposeBackward",
                       [d0, d1](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
                         return std::vector<Tensor>{g[0].transpose(d0, d1)};
                       });
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  COIL_CHECK(int64_t(dims.size()) == dim(), "permute: ", dims.size(), " dims given for shape ",
             shape_str(shape()));
  Shape sh(dims.size()), st(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    COIL_CHECK(inverse[d] < 0, "permute: dim ", d, " repeated in ", shape_str(dims));
    inverse[d] = int64_t(i);
    sh[i] = shape()[d];
    st[i] = strides()[d];
  }
  return recorded_view(*this, make_view(*this, sh, st, offset()), "PermuteBackward",
                       [inverse](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
                         return std::vector<Tensor>{g[0].permute(inverse)};
                       });
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  COIL_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d], "narrow: range [", start, ", ",
             start + length, ") out of bounds for dim ", d, " of shape ", shape_str(shape()));
  Shape sh = shape();
  sh[d] = length;
  Shape in_shape = shape();
  return recorded_view(*this, make_view(*this, sh, strides(), offset() + start * strides()[d]),
                       "NarrowBackward",
                       [in_shape, d, start, length](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
                         Tensor gx = Tensor::zeros(in_shape, g[0].dtype(), g[0].device());
                         gx.narrow(d, start, length).copy_(g[0]);
                         return std::vector<Tensor>{gx};
                       });
}

Tensor Tensor::expand(const Shape& shape_in) const {
  COIL_CHECK(shape_in.size() >= shape().size(), "expand: cannot expand ", shape_str(shape()), " to ",
             shape_str(shape_in));
  size_t lead = shape_in.size() - shape().size();
  Shape sh(shape_in.size()), st(shape_in.size(), 0);
  for (size_t i = 0; i < shape_in.size(); ++i) {
    if (i < lead) {
      COIL_CHECK(shape_in[i] >= 0, "expand: bad size in ", shape_str(shape_in));
      sh[i] = shape_in[i];
      continue;
    }
    int64_t cur = shape()[i - lead];
    int64_t want = shape_in[i] == -1 ? cur : shape_in[i];
    COIL_CHECK(cur == want || cur == 1, "expand: cannot expand ", shape_str(shape()), " to ",
               shape_str(shape_in));
    sh[i] = want;
    st[i] = cur == want ? strides()[i - lead] : 0;
  }
  Shape in_shape = shape();
  return recorded_view(*this, make_view(*this, sh, st, offset()), "ExpandBackward",
                       [in_shape](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
                         return std::vector<Tensor>{sum_to(g[0], in_shape)};
                       });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape sh = shape(), st = strides();
  int64_t s = d < dim() ? strides()[d] * shape()[d] : 1;
  sh.insert(sh.begin() + d, 1);
  st.insert(st.begin() + d, s);
  return recorded_view(*this, make_view(*this, sh, st, offset()), "UnsqueezeBackward",
                       [d](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
                         return std::vector<Tensor>{g[0].squeeze(d)};
                       });
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  COIL_CHECK(shape()[d] == 1, "squeeze: dim ", d, " of shape ", shape_str(shape()), " is not 1");
  Shape sh = shape(), st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  return recorded_view(*this, make_view(*this, sh, st, offset()), "SqueezeBackward",
                       [d](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
                         return std::vector<Tensor>{g[0].unsqueeze(d)};
                       });
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = wrap_dim(start, dim(), "flatten");
  end = wrap_dim(end, dim(), "flatten");
  Shape sh(shape().begin(), shape().begin() + start);
  int64_t n = 1;
  for (int64_t i = start; i <= end; ++i) n *= shape()[i];
  sh.push_back(n);
  sh.insert(sh.end(), shape().begin() + end + 1, shape().end());
  return reshape(sh);
}

// --- copies ------------------------------------------------------------------------------------------

namespace {
// out <- src (same shape, any strides, dtypes may differ; same device). No autograd.
void copy_kernel(const Tensor& out, const Tensor& src) {
  KernelArgs a{Op::Copy, {src}, {out}, {}};
  dispatch(Op::Copy, out.dtype(), a);
}
}  // namespace

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_kernel(out, *this);
  record("CloneBackward", {*this}, {out},
         [](const std::vector<Tensor>& g, const std::vector<Tensor>&) { return std::vector<Tensor>{g[0]}; });
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = empty(shape(), t, device());
  copy_kernel(out, *this);
  DType src = dtype();
  if (is_floating(t) && is_floating(src))
    record("CastBackward", {*this}, {out},
           [src](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
             return std::vector<Tensor>{g[0].to(src)};
           });
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), d);
  DeviceType hook_type = d.is_cpu() ? device().type : d.type;
  hooks_for(hook_type).copy_bytes(out.data_ptr(), d, src.data_ptr(), src.device(),
                                  size_t(numel()) * dtype_size(dtype()));
  Device from = device();
  record("ToDeviceBackward", {*this}, {out},
         [from](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
           return std::vector<Tensor>{g[0].to(from)};
         });
  return out;
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

// --- in-place ----------------------------------------------------------------------------------------

namespace {
void check_inplace(const Tensor& t, const char* what) {
  COIL_CHECK(!(t.is_leaf() && t.requires_grad() && GradMode::is_enabled()), what,
             ": in-place write to a leaf tensor that requires grad (", t.describe(),
             "); do it under NoGradGuard");
}
}  // namespace

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  KernelArgs a{Op::Fill, {}, {*this}, {}};
  a.attrs.alpha = value;
  dispatch(Op::Fill, dtype(), a);
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src_in) {
  check_inplace(*this, "copy_");
  Tensor src = src_in;
  if (src.device() != device()) src = src.detach().to(device());
  if (src.shape() != shape()) {
    broadcast_shapes(src.shape(), shape());  // throws naming both shapes
    src = src.detach().expand(shape());
  }
  copy_kernel(*this, src);
  bump_version();
  return *this;
}

// --- autograd ----------------------------------------------------------------------------------------

bool Tensor::requires_grad() const { return impl()->requires_grad || impl()->grad_fn != nullptr; }

Tensor& Tensor::set_requires_grad(bool r) {
  COIL_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can change requires_grad (",
             describe(), " was produced by ", grad_fn()->name(), ")");
  COIL_CHECK(!r || is_floating(dtype()), "set_requires_grad: integer tensors (", describe(),
             ") cannot require grad");
  impl()->requires_grad = r;
  return *this;
}

Tensor Tensor::grad() const { return impl()->grad ? Tensor(impl()->grad) : Tensor(); }
void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    COIL_CHECK(g.shape() == shape(), "set_grad: gradient ", shape_str(g.shape()), " for tensor ",
               shape_str(shape()));
  impl()->grad = g.impl_ptr();
}
void Tensor::zero_grad() const { impl()->grad.reset(); }

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  coil::backward({*this}, {grad}, retain_graph);
}

// --- host access -------------------------------------------------------------------------------------

std::vector<double> Tensor::to_vector() const {
  Tensor t = device().is_cpu() ? *this : detach().to(Device::cpu());
  std::vector<double> out;
  out.reserve(size_t(numel()));
  for_each_index(t.shape(), [&](const std::vector<int64_t>& idx) { out.push_back(read_as_double(t, idx)); });
  return out;
}

std::vector<int64_t> Tensor::to_ints() const {
  Tensor t = device().is_cpu() ? *this : detach().to(Device::cpu());
  std::vector<int64_t> out;
  out.reserve(size_t(numel()));
  for_each_index(t.shape(), [&](const std::vector<int64_t>& idx) {
    if (t.dtype() == DType::I64) {
      int64_t off = t.offset();
      for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.strides()[d];
      out.push_back(static_cast<const int64_t*>(t.storage()->data())[off]);
    } else {
      out.push_back(int64_t(read_as_double(t, idx)));
    }
  });
  return out;
}

double Tensor::item() const {
  COIL_CHECK(numel() == 1, "item: tensor ", describe(), " has ", numel(), " elements, not 1");
  return to_vector()[0];
}

double Tensor::at(const std::vector<int64_t>& index) const {
  COIL_CHECK(int64_t(index.size()) == dim(), "at: index of ", index.size(), " dims for shape ",
             shape_str(shape()));
  for (size_t d = 0; d < index.size(); ++d)
    COIL_CHECK(index[d] >= 0 && index[d] < shape()[d], "at: index ", shape_str(index),
               " out of bounds for shape ", shape_str(shape()));
  Tensor t = device().is_cpu() ? *this : detach().to(Device::cpu());
  return read_as_double(t, index);
}

}  // namespace coil
