// The harness machinery: input generation, layouts, the forward comparison and the finite-difference
// gradient check. The cases themselves live in harness_cases_*.cpp, one file per op family.
#include "tests/core/op_harness.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <sstream>

#include "core/allocator.h"
#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/random.h"

namespace coil::harness {

// --- input specs --------------------------------------------------------------------------------------
InputSpec normal(const Shape& s, double stddev, double mean) {
  InputSpec in;
  in.shape = s;
  in.kind = InputKind::Normal;
  in.stddev = stddev;
  in.mean = mean;
  return in;
}
InputSpec uniform(const Shape& s, double lo, double hi) {
  InputSpec in;
  in.shape = s;
  in.kind = InputKind::Uniform;
  in.lo = lo;
  in.hi = hi;
  return in;
}
InputSpec positive(const Shape& s) {
  InputSpec in;
  in.shape = s;
  in.kind = InputKind::Positive;
  return in;
}
InputSpec away_from_kinks(const Shape& s) {
  InputSpec in;
  in.shape = s;
  in.kind = InputKind::AwayFromKinks;
  return in;
}
InputSpec separated(const Shape& s) {
  InputSpec in;
  in.shape = s;
  in.kind = InputKind::Separated;
  return in;
}
InputSpec ids(const Shape& s, int64_t n) {
  InputSpec in;
  in.shape = s;
  in.kind = InputKind::Ids;
  in.hi = double(n);
  in.integer = true;
  in.differentiable = false;
  return in;
}
InputSpec int_values(const Shape& s, const std::vector<int64_t>& v) {
  InputSpec in;
  in.shape = s;
  in.kind = InputKind::Values;
  in.values.assign(v.begin(), v.end());
  in.integer = true;
  in.differentiable = false;
  return in;
}
InputSpec float_values(const Shape& s, const std::vector<double>& v) {
  InputSpec in;
  in.shape = s;
  in.kind = InputKind::Values;
  in.values = v;
  return in;
}

Tol default_tol(DType t) {
  switch (t) {
    case DType::F64: return {1e-10, 1e-10};
    case DType::F32: return {1e-5, 1e-4};
    case DType::BF16: return {1e-2, 2e-2};
    default: return {0.0, 0.0};  // integers compare exactly
  }
}

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous: return "contiguous";
    case Layout::Transposed: return "transposed";
    case Layout::Strided: return "strided";
  }
  return "?";
}

// --- the registry of cases ----------------------------------------------------------------------------
const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = [] {
    std::vector<OpCase> v;
    add_memory_cases(v);
    add_elementwise_cases(v);
    add_reduction_cases(v);
    add_linalg_cases(v);
    add_model_cases(v);
    add_linattn_cases(v);
    add_linattn_chunked_cases(v);
    add_scan_cases(v);
    add_ssd_cases(v);
    add_optimizer_cases(v);
    add_decode_cases(v);
    add_multi_tensor_cases(v);
    return v;
  }();
  return cases;
}

const OpCase* find_case(const std::string& name) {
  for (const OpCase& c : op_cases())
    if (c.name == name) return &c;
  return nullptr;
}

std::vector<std::string> coverage_gaps(const std::vector<OpCase>& cases) {
  std::vector<bool> covered(kNumOps, false);
  for (const OpCase& c : cases)
    for (Op op : c.covers)
      if (op_kind(op) == OpKind::N || c.check_grad) covered[int(op)] = true;
  std::vector<std::string> gaps;
  for (int i = 0; i < kNumOps; ++i)
    if (!covered[i]) gaps.push_back(op_name(Op(i)));
  return gaps;
}

// --- helpers ------------------------------------------------------------------------------------------
Shape row_major_strides(const Shape& s) {
  Shape st(s.size(), 1);
  for (int64_t d = int64_t(s.size()) - 2; d >= 0; --d) st[size_t(d)] = st[size_t(d + 1)] * s[size_t(d + 1)];
  return st;
}

Shape host_broadcast_shape(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n, 1);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    COIL_CHECK(da == db || da == 1 || db == 1, "reference: cannot broadcast ", shape_str(a), " and ", shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t broadcast_source(const Shape& out, int64_t flat, const Shape& in) {
  const Shape ost = row_major_strides(out), ist = row_major_strides(in);
  const size_t lead = out.size() - in.size();
  int64_t src = 0;
  for (size_t d = 0; d < in.size(); ++d) {
    const int64_t idx = (flat / ost[d + lead]) % out[d + lead];
    if (in[d] != 1) src += idx * ist[d];
  }
  return src;
}

DimSplit split_at(const Shape& s, int64_t dim) {
  DimSplit r;
  const int64_t nd = int64_t(s.size());
  r.dim = dim < 0 ? dim + nd : dim;
  for (int64_t d = 0; d < nd; ++d) {
    if (d < r.dim) r.outer *= s[size_t(d)];
    else if (d == r.dim) r.n = s[size_t(d)];
    else r.inner *= s[size_t(d)];
  }
  return r;
}

std::string index_str(const Shape& shape, int64_t flat) {
  Shape st = row_major_strides(shape);
  std::string out = "[";
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d) out += ", ";
    out += std::to_string(shape[d] ? (flat / st[d]) % shape[d] : 0);
  }
  return out + "]";
}

double round_to(DType t, double v) {
  switch (t) {
    case DType::F32: return double(float(v));
    case DType::BF16: return double(bf16_to_float(float_to_bf16(float(v))));
    default: return v;
  }
}

static uint64_t name_seed(const std::string& s) {  // FNV-1a: stable across platforms
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

static std::string num(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

std::vector<HostTensor> make_host_inputs(const OpCase& c) {
  Generator gen(c.seed ? c.seed : name_seed(c.name));
  std::vector<HostTensor> out;
  for (const InputSpec& in : c.inputs) {
    const int64_t n = shape_numel(in.shape);
    std::vector<double> v(static_cast<size_t>(n));
    switch (in.kind) {
      case InputKind::Normal:
        for (auto& x : v) x = in.mean + in.stddev * gen.next_normal();
        break;
      case InputKind::Uniform:
        for (auto& x : v) x = in.lo + (in.hi - in.lo) * gen.next_uniform();
        break;
      case InputKind::Positive:
        for (auto& x : v) x = 0.5 + 1.5 * gen.next_uniform();
        break;
      case InputKind::AwayFromKinks:
        for (auto& x : v) {
          const double mag = 0.1 + 1.9 * gen.next_uniform();
          x = gen.next_uniform() < 0.5 ? -mag : mag;
        }
        break;
      case InputKind::Separated: {
        // A random permutation of an evenly spaced grid (spacing 0.05) plus a little jitter.
        std::vector<double> key(static_cast<size_t>(n));
        for (auto& k : key) k = gen.next_uniform();
        std::vector<int64_t> order(static_cast<size_t>(n));
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[size_t(a)] < key[size_t(b)]; });
        for (int64_t r = 0; r < n; ++r)
          v[size_t(order[size_t(r)])] = 0.05 * double(r - n / 2) + 0.01 * gen.next_uniform();
        break;
      }
      case InputKind::Ids:
        for (auto& x : v) x = std::floor(in.hi * gen.next_uniform());
        break;
      case InputKind::Values:
        COIL_CHECK(int64_t(in.values.size()) == n, "case ", c.name, ": ", in.values.size(),
                   " values for an input of shape ", shape_str(in.shape));
        v = in.values;
        break;
    }
    out.emplace_back(std::move(v), in.shape);
  }
  return out;
}

std::vector<HostTensor> round_inputs(const OpCase& c, const std::vector<HostTensor>& h, DType t) {
  std::vector<HostTensor> out = h;
  for (size_t i = 0; i < out.size(); ++i)
    if (!c.inputs[i].integer)
      for (auto& x : out[i].data) x = round_to(t, x);
  return out;
}

// One input in a layout. The returned tensor's logical values are h's, whatever its strides.
static Tensor build_one(const HostTensor& h, DType t, Device d, Layout layout) {
  const Shape& s = h.shape;
  const size_t nd = s.size();
  if (layout == Layout::Transposed && !(nd >= 2 && s[nd - 1] > 1 && s[nd - 2] > 1)) layout = Layout::Strided;
  if (layout == Layout::Contiguous) return Tensor::from_vector(h.data, s, t, d);
  if (layout == Layout::Transposed) {
    const int64_t rows = s[nd - 2], cols = s[nd - 1], mats = h.numel() / (rows * cols);
    Shape bs = s;
    std::swap(bs[nd - 1], bs[nd - 2]);
    std::vector<double> bv(h.data.size());
    for (int64_t m = 0; m < mats; ++m)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j)
          bv[size_t(m * rows * cols + j * rows + i)] = h.data[size_t(m * rows * cols + i * cols + j)];
    return Tensor::from_vector(bv, bs, t, d).transpose(-2, -1);
  }
  // Strided: (..., 2) with the value at [..., 1] and a pad a stride-blind kernel would read.
  const double pad = is_floating(t) ? std::numeric_limits<double>::quiet_NaN() : 1000003.0;
  std::vector<double> bv(h.data.size() * 2);
  for (size_t i = 0; i < h.data.size(); ++i) {
    bv[2 * i] = pad;
    bv[2 * i + 1] = h.data[i];
  }
  Shape bs = s;
  bs.push_back(2);
  return Tensor::from_vector(bv, bs, t, d).narrow(-1, 1, 1).squeeze(-1);
}

std::vector<Tensor> build_inputs(const OpCase& c, const std::vector<HostTensor>& h, DType t, Device d,
                                 Layout layout, bool requires_grad) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < h.size(); ++i) {
    const InputSpec& in = c.inputs[i];
    Tensor x = build_one(h[i], in.integer ? DType::I32 : t, d, in.noncontig ? layout : Layout::Contiguous);
    if (requires_grad && in.differentiable && !in.integer) {
      x = x.detach();  // a non-contiguous leaf: its .grad has its logical shape
      x.set_requires_grad(true);
    }
    out.push_back(x);
  }
  return out;
}

std::vector<DType> case_dtypes(const OpCase& c, Backend b) {
  std::vector<Op> ops = c.dtype_ops;
  if (ops.empty())
    for (Op op : c.covers)
      if (op_kind(op) != OpKind::B) ops.push_back(op);
  std::vector<DType> out;
  for (DType t : {DType::F64, DType::F32, DType::BF16}) {
    bool all = true;
    for (Op op : ops) all = all && Registry::instance().supports(b, op, t);
    if (all) out.push_back(t);
  }
  return out;
}

std::vector<Backend> present_backends() {
  std::vector<Backend> out{Backend::CPU};
  if (device_type_available(DeviceType::CUDA)) out.push_back(Backend::CUDA);
  return out;
}

static int coarseness(DType t) { return t == DType::F64 ? 0 : t == DType::F32 ? 1 : t == DType::BF16 ? 2 : -1; }

// --- forward ------------------------------------------------------------------------------------------
static void compare_values(const std::string& what, const std::vector<double>& got, const HostTensor& want,
                           Tol tol, CheckResult& r) {
  if (int64_t(got.size()) != want.numel()) {
    r.fail(what + ": " + std::to_string(got.size()) + " elements, want " + std::to_string(want.numel()));
    return;
  }
  double maxabs = 0.0;
  for (double w : want.data) maxabs = std::max(maxabs, std::fabs(w));
  const double atol = tol.atol * std::max(1.0, maxabs);
  int64_t bad = 0, worst_i = -1;
  double worst = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = got[size_t(i)], w = want[i];
    const double err = std::fabs(g - w), lim = atol + tol.rtol * std::fabs(w);
    double ratio = lim > 0 ? err / lim : (err > 0 ? INFINITY : 0.0);
    if (std::isnan(ratio)) ratio = INFINITY;  // a NaN anywhere fails
    if (ratio > 1.0) ++bad;
    if (worst_i < 0 || ratio > worst) {
      worst = ratio;
      worst_i = i;
    }
  }
  r.checked += want.numel();
  if (std::isfinite(worst)) r.worst = std::max(r.worst, worst);
  else r.worst = INFINITY;
  if (bad) {
    const double g = got[size_t(worst_i)], w = want[worst_i];
    r.fail(what + ": " + std::to_string(bad) + " of " + std::to_string(want.numel()) +
           " elements out of tolerance; worst at " + index_str(want.shape, worst_i) + ": got " + num(g) +
           ", want " + num(w) + " (|err| " + num(std::fabs(g - w)) + ", tolerance " +
           num(atol + tol.rtol * std::fabs(w)) + ")");
  }
}

CheckResult check_forward(const OpCase& c, Backend b, DType t, Layout layout,
                          std::vector<std::vector<double>>* outputs,
                          const std::vector<std::vector<double>>* against) {
  CheckResult r;
  const std::string where = std::string(backend_name(b)) + " " + dtype_name(t) + " " + layout_name(layout);
  try {
    const std::vector<HostTensor> host = round_inputs(c, make_host_inputs(c), t);
    const std::vector<HostTensor> want = c.reference(host);
    const Device dev = b == Backend::CPU ? Device::cpu() : Device::cuda(0);
    const std::vector<Tensor> outs = c.run(build_inputs(c, host, t, dev, layout, false));
    if (outs.size() != want.size()) {
      r.fail(where + ": " + std::to_string(outs.size()) + " outputs, the reference has " +
             std::to_string(want.size()));
      return r;
    }
    for (size_t k = 0; k < outs.size(); ++k) {
      const std::string what = where + " output " + std::to_string(k);
      if (!outs[k].defined()) {
        r.fail(what + ": undefined");
        continue;
      }
      if (!(outs[k].device() == dev)) {
        r.fail(what + ": on " + device_name(outs[k].device()) + ", want " + device_name(dev));
        continue;
      }
      const DType tol_t = coarseness(outs[k].dtype()) > coarseness(t) ? outs[k].dtype() : t;
      Tol tol = default_tol(tol_t);
      const double s = c.tol_scale * (tol_t == DType::BF16 ? c.bf16_tol_scale : 1.0);
      tol.atol *= s;
      tol.rtol *= s;
      if (outs[k].shape() != want[k].shape) {
        r.fail(what + ": shape " + shape_str(outs[k].shape()) + ", want " + shape_str(want[k].shape));
        continue;
      }
      const std::vector<double> got = outs[k].to_vector();
      compare_values(what + " vs reference", got, want[k], tol, r);
      if (against && k < against->size())
        compare_values(what + " vs the contiguous run", got, HostTensor((*against)[k], want[k].shape), tol, r);
      if (outputs) outputs->push_back(got);
    }
  } catch (const std::exception& e) {
    r.fail(where + ": threw: " + e.what());
  }
  return r;
}

// --- gradient -----------------------------------------------------------------------------------------
CheckResult check_gradient(const OpCase& c, Layout layout) {
  CheckResult r;
  const std::string where = std::string("f64 cpu ") + layout_name(layout);
  try {
    const std::vector<HostTensor> host = make_host_inputs(c);
    const Device cpu = Device::cpu();

    // Analytic: backward from every gradient-checked output with grad R_k.
    std::vector<Tensor> xs = build_inputs(c, host, DType::F64, cpu, layout, true);
    std::vector<Tensor> outs;
    {
      EnableGradGuard g;
      outs = c.run(xs);
    }
    Generator gen((c.seed ? c.seed : name_seed(c.name)) ^ 0x9e3779b97f4a7c15ull);
    std::vector<bool> use(outs.size(), true);
    for (size_t k = 0; k < outs.size() && k < c.grad_outputs.size(); ++k) use[k] = c.grad_outputs[k];
    std::vector<HostTensor> R(outs.size());
    std::vector<Tensor> roots, grads;
    for (size_t k = 0; k < outs.size(); ++k) {
      if (!use[k]) continue;
      R[k] = HostTensor::zeros(outs[k].shape());
      for (auto& x : R[k].data) x = round_to(outs[k].dtype(), gen.next_normal());  // exact in the output dtype
      if (outs[k].requires_grad()) {
        roots.push_back(outs[k]);
        grads.push_back(Tensor::from_vector(R[k].data, R[k].shape, outs[k].dtype(), cpu));
      }
    }
    if (!roots.empty()) backward(roots, grads);
    outs.clear();
    roots.clear();

    // Numerical: central differences of L = sum_k <out_k, R_k>, evaluated without autograd.
    auto loss = [&](const std::vector<HostTensor>& h) {
      NoGradGuard ng;
      const std::vector<Tensor> o = c.run(build_inputs(c, h, DType::F64, cpu, layout, false));
      double L = 0.0;
      for (size_t k = 0; k < o.size(); ++k) {
        if (!use[k]) continue;
        COIL_CHECK(o[k].shape() == R[k].shape, "output ", k, " changed shape between runs");
        const std::vector<double> v = o[k].to_vector();
        for (size_t j = 0; j < v.size(); ++j) L += v[j] * R[k].data[j];
      }
      return L;
    };
    for (size_t i = 0; i < xs.size(); ++i) {
      const InputSpec& in = c.inputs[i];
      if (!in.differentiable || in.integer) continue;
      const std::string what = where + " d/d input " + std::to_string(i) + " " + shape_str(in.shape);
      HostTensor analytic = HostTensor::zeros(in.shape);
      const Tensor g = xs[i].grad();
      if (g.defined()) {
        if (g.shape() != in.shape) {
          r.fail(what + ": gradient has shape " + shape_str(g.shape()));
          continue;
        }
        analytic.data = g.to_vector();
      }
      HostTensor fd = HostTensor::zeros(in.shape);
      std::vector<HostTensor> h = host;
      for (int64_t j = 0; j < fd.numel(); ++j) {
        const double x0 = h[i][j];
        h[i][j] = x0 + c.fd_eps;
        const double lp = loss(h);
        h[i][j] = x0 - c.fd_eps;
        const double lm = loss(h);
        h[i][j] = x0;
        fd[j] = (lp - lm) / (2 * c.fd_eps);
      }
      CheckResult one;
      compare_values(what + (g.defined() ? "" : " (no gradient reached it)") + ": autograd vs finite differences",
                     analytic.data, fd, Tol{c.grad_atol, c.grad_rtol}, one);
      r.checked += one.checked;
      r.worst = std::max(r.worst, one.worst);
      if (!one.ok) r.fail(one.report.substr(0, one.report.size() - 1));
    }
  } catch (const std::exception& e) {
    r.fail(where + ": threw: " + e.what());
  }
  return r;
}

}  // namespace coil::harness
