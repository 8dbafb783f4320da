// The op harness as GoogleTest suites: one test per case and check (ctest lists each), the coverage
// test over COIL_OP_LIST, and tests that the checkers themselves can fail (a deliberately wrong
// backward, a wrong reference, layouts that really are non-contiguous).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops.h"
#include "tests/core/op_harness.h"

namespace coil::harness {
namespace {

bool any_noncontig(const OpCase& c) {
  for (const InputSpec& in : c.inputs)
    if (in.noncontig && !in.shape.empty()) return true;
  return false;
}

std::vector<std::string> names_where(const std::function<bool(const OpCase&)>& keep) {
  std::vector<std::string> out;
  for (const OpCase& c : op_cases())
    if (keep(c)) out.push_back(c.name);
  return out;
}

std::string param_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

const OpCase& get_case(const std::string& name) {
  const OpCase* c = find_case(name);
  if (!c) throw std::runtime_error("no harness case " + name);
  return *c;
}

// --- per-case checks --------------------------------------------------------------------------------
class OpForward : public ::testing::TestWithParam<std::string> {};
class OpNonContiguous : public ::testing::TestWithParam<std::string> {};
class OpGradient : public ::testing::TestWithParam<std::string> {};

// Every backend present x every dtype its registry supports for the case, against the reference.
TEST_P(OpForward, MatchesReference) {
  const OpCase& c = get_case(GetParam());
  for (Backend b : present_backends()) {
    const std::vector<DType> dts = case_dtypes(c, b);
    if (b == Backend::CPU) {
      EXPECT_FALSE(dts.empty()) << "the CPU backend has no f32 / f64 / bf16 kernel for case " << c.name;
    }
    for (DType t : dts) {
      const CheckResult r = check_forward(c, b, t, Layout::Contiguous);
      EXPECT_TRUE(r.ok) << r.report;
      EXPECT_GT(r.checked, 0) << backend_name(b) << " " << dtype_name(t) << ": nothing compared";
    }
  }
}

// The same values through transposed and stride-2 views: same outputs as the contiguous run.
TEST_P(OpNonContiguous, MatchesContiguousRun) {
  const OpCase& c = get_case(GetParam());
  for (Backend b : present_backends())
    for (DType t : case_dtypes(c, b)) {
      std::vector<std::vector<double>> contiguous;
      const CheckResult base = check_forward(c, b, t, Layout::Contiguous, &contiguous);
      ASSERT_TRUE(base.ok) << base.report;
      for (Layout l : {Layout::Transposed, Layout::Strided}) {
        const CheckResult r = check_forward(c, b, t, l, nullptr, &contiguous);
        EXPECT_TRUE(r.ok) << r.report;
      }
    }
}

// f64 CPU: autograd against central finite differences, on contiguous and non-contiguous inputs.
TEST_P(OpGradient, MatchesFiniteDifferences) {
  const OpCase& c = get_case(GetParam());
  for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Strided}) {
    if (l != Layout::Contiguous && !any_noncontig(c)) continue;
    const CheckResult r = check_gradient(c, l);
    EXPECT_TRUE(r.ok) << r.report;
    EXPECT_GT(r.checked, 0) << layout_name(l) << ": no gradient element compared";
  }
}

INSTANTIATE_TEST_SUITE_P(Harness, OpForward, ::testing::ValuesIn(names_where([](const OpCase&) { return true; })),
                         param_name);
INSTANTIATE_TEST_SUITE_P(Harness, OpNonContiguous, ::testing::ValuesIn(names_where(any_noncontig)), param_name);
INSTANTIATE_TEST_SUITE_P(Harness, OpGradient,
                         ::testing::ValuesIn(names_where([](const OpCase& c) { return c.check_grad; })),
                         param_name);

// --- coverage ---------------------------------------------------------------------------------------
TEST(OpHarnessCoverage, EveryOpOfTheListHasACase) {
  const std::vector<std::string> gaps = coverage_gaps(op_cases());
  std::string list;
  for (const auto& g : gaps) list += " " + g;
  EXPECT_TRUE(gaps.empty()) << gaps.size() << " op(s) of COIL_OP_LIST have no harness case (F and B ops need "
                            << "a gradient-checked case):" << list;
}

// The CPU backend is the oracle: every op has f32 and f64 kernels there (f64 for the gradient checks).
TEST(OpHarnessCoverage, CpuHasEveryOpInF32AndF64) {
  for (int i = 0; i < kNumOps; ++i)
    for (DType t : {DType::F32, DType::F64})
      EXPECT_TRUE(Registry::instance().supports(Backend::CPU, Op(i), t))
          << "no CPU kernel for " << op_name(Op(i)) << " in " << dtype_name(t);
}

// The coverage test is not vacuous: dropping the cases of any one op makes it report that op.
TEST(OpHarnessCoverage, RemovingTheCasesOfAnOpIsReported) {
  for (int i = 0; i < kNumOps; ++i) {
    const Op op = Op(i);
    std::vector<OpCase> rest;
    for (const OpCase& c : op_cases())
      if (std::find(c.covers.begin(), c.covers.end(), op) == c.covers.end()) rest.push_back(c);
    const std::vector<std::string> gaps = coverage_gaps(rest);
    EXPECT_NE(std::find(gaps.begin(), gaps.end(), std::string(op_name(op))), gaps.end()) << op_name(op);
  }
}

TEST(OpHarnessCoverage, CasesAreWellFormed) {
  const auto& cases = op_cases();
  EXPECT_GE(cases.size(), 30u);
  std::set<std::string> seen;
  for (const OpCase& c : cases) {
    EXPECT_TRUE(seen.insert(c.name).second) << "duplicate case name " << c.name;
    for (char ch : c.name) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_') << c.name;
    EXPECT_TRUE(c.run && c.reference) << c.name;
    EXPECT_FALSE(c.inputs.empty()) << c.name;
    bool differentiable = false;
    for (const InputSpec& in : c.inputs) differentiable = differentiable || (in.differentiable && !in.integer);
    if (c.check_grad) {
      EXPECT_TRUE(differentiable) << c.name << " is gradient-checked but has no differentiable input";
    }
    for (Op op : c.covers) {
      if (op_kind(op) == OpKind::B) {
        EXPECT_TRUE(c.check_grad) << c.name << " covers a backward op without a gradient check";
      }
    }
  }
}

// --- the checkers can fail --------------------------------------------------------------------------
// y = 3x recorded with a hand-written backward returning factor * 3 * dy.
OpCase custom_scale_case(double factor) {
  OpCase c;
  c.name = "custom_scale";
  c.covers = {Op::Scale};
  c.inputs = {normal({3, 4})};
  c.run = [factor](const std::vector<Tensor>& x) {
    Tensor y;
    {
      NoGradGuard g;
      y = scale(x[0], 3.0);
    }
    record("custom_scale", {x[0]}, {y},
           [factor](const std::vector<Tensor>& grads, const std::vector<Tensor>&) {
             return std::vector<Tensor>{scale(grads[0], 3.0 * factor)};
           });
    return std::vector<Tensor>{y};
  };
  c.reference = [](const std::vector<HostTensor>& x) {
    HostTensor y = x[0];
    for (auto& v : y.data) v *= 3.0;
    return std::vector<HostTensor>{y};
  };
  return c;
}

// y = x^2 recorded with backward sign * 2x dy.
OpCase custom_square_case(double sign) {
  OpCase c;
  c.name = "custom_square";
  c.covers = {Op::Square};
  c.inputs = {normal({2, 5})};
  c.run = [sign](const std::vector<Tensor>& x) {
    Tensor y;
    {
      NoGradGuard g;
      y = square(x[0]);
    }
    record("custom_square", {x[0]}, {y},
           [sign](const std::vector<Tensor>& grads, const std::vector<Tensor>& saved) {
             return std::vector<Tensor>{scale(mul(grads[0], saved[0]), 2.0 * sign)};
           },
           {x[0]});
    return std::vector<Tensor>{y};
  };
  c.reference = [](const std::vector<HostTensor>& x) {
    HostTensor y = x[0];
    for (auto& v : y.data) v *= v;
    return std::vector<HostTensor>{y};
  };
  return c;
}

TEST(OpHarnessSelfTest, CorrectCustomBackwardPasses) {
  for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Strided}) {
    const CheckResult a = check_gradient(custom_scale_case(1.0), l);
    EXPECT_TRUE(a.ok) << a.report;
    const CheckResult b = check_gradient(custom_square_case(1.0), l);
    EXPECT_TRUE(b.ok) << b.report;
  }
}

TEST(OpHarnessSelfTest, WrongBackwardIsCaught) {
  for (Layout l : {Layout::Contiguous, Layout::Transposed, Layout::Strided}) {
    const CheckResult doubled = check_gradient(custom_scale_case(2.0), l);
    EXPECT_FALSE(doubled.ok) << "a backward returning 2x the gradient passed the " << layout_name(l) << " check";
    EXPECT_NE(doubled.report.find("finite differences"), std::string::npos) << doubled.report;
    EXPECT_EQ(doubled.checked, 12);
    const CheckResult flipped = check_gradient(custom_square_case(-1.0), l);
    EXPECT_FALSE(flipped.ok) << "a backward with the sign flipped passed the " << layout_name(l) << " check";
  }
  // A slightly wrong backward (1% off) is caught too: the tolerance is far tighter than that.
  EXPECT_FALSE(check_gradient(custom_scale_case(1.01), Layout::Contiguous).ok);
}

TEST(OpHarnessSelfTest, WrongReferenceIsCaught) {
  OpCase c = custom_scale_case(1.0);
  c.reference = [](const std::vector<HostTensor>& x) {
    HostTensor y = x[0];
    for (auto& v : y.data) v = 3.0 * v + 1e-6;  // off by far less than f32 precision allows, but not f64
    return std::vector<HostTensor>{y};
  };
  const CheckResult r = check_forward(c, Backend::CPU, DType::F64, Layout::Contiguous);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report.find("worst at ["), std::string::npos) << r.report;
}

TEST(OpHarnessSelfTest, LayoutsAreNonContiguousWithTheSameValues) {
  OpCase c;
  c.name = "layouts";
  c.inputs = {normal({3, 4}), normal({5}), normal({2, 3, 1}), ids({4}, 7)};
  const std::vector<HostTensor> h = make_host_inputs(c);
  for (Layout l : {Layout::Transposed, Layout::Strided}) {
    const std::vector<Tensor> xs = build_inputs(c, h, DType::F64, Device::cpu(), l, false);
    for (size_t i = 0; i < xs.size(); ++i) {
      EXPECT_FALSE(xs[i].is_contiguous()) << layout_name(l) << " input " << i;
      EXPECT_EQ(xs[i].shape(), h[i].shape);
      EXPECT_EQ(xs[i].to_vector(), h[i].data) << layout_name(l) << " input " << i;
    }
    EXPECT_EQ(xs[3].dtype(), DType::I32);
  }
}

}  // namespace
}  // namespace coil::harness
