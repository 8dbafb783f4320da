// Caller errors in the op front-ends: every op family rejects mismatched shapes and dtypes with a
// coil::Error whose message names both shapes (as shape_str prints them) or both dtypes, and
// out-of-range ids / targets with a coil::Error naming the value.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"

namespace coil {
namespace {

// Each entry of `needles` is a list of alternatives; the message must contain one of each.
using Needles = std::vector<std::vector<std::string>>;

void expect_error(const std::function<void()>& f, const Needles& needles, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << what << ": no coil::Error thrown";
  } catch (const Error& e) {
    const std::string msg = e.message();
    for (const auto& alts : needles) {
      bool found = false;
      for (const auto& n : alts) found = found || msg.find(n) != std::string::npos;
      std::string want;
      for (const auto& n : alts) want += (want.empty() ? "'" : " or '") + n + "'";
      EXPECT_TRUE(found) << what << ": the message does not name " << want << ":\n  " << e.what();
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw something other than coil::Error: " << e.what();
  }
}

// Both shapes, as shape_str formats them.
Needles shapes(const Shape& a, const Shape& b) { return {{shape_str(a)}, {shape_str(b)}}; }
Needles dtypes() { return {{"f32"}, {"f64"}}; }

Tensor f32(const Shape& s) { return Tensor::zeros(s, DType::F32); }
Tensor f64(const Shape& s) { return Tensor::zeros(s, DType::F64); }
Tensor i32(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_ints(v, s, DType::I32); }

// --- shape mismatches -------------------------------------------------------------------------------
TEST(OpErrors, ElementwiseShapes) {
  const Shape a = {2, 3}, b = {4, 5};
  expect_error([&] { add(f32(a), f32(b)); }, shapes(a, b), "add");
  expect_error([&] { sub(f32(a), f32(b)); }, shapes(a, b), "sub");
  expect_error([&] { mul(f32(a), f32(b)); }, shapes(a, b), "mul");
  expect_error([&] { div(f32(a), f32(b)); }, shapes(a, b), "div");
  expect_error([&] { add(f32({2, 3, 4}), f32({3, 5})); }, shapes({2, 3, 4}, {3, 5}), "add, broadcast");
  expect_error([&] { broadcast_shapes(a, b); }, shapes(a, b), "broadcast_shapes");
  expect_error([&] { swiglu(f32({2, 3}), f32({3, 2})); }, shapes({2, 3}, {3, 2}), "swiglu");
}

TEST(OpErrors, ReductionShapes) {
  expect_error([&] { sum_to(f32({2, 3}), {4}); }, shapes({2, 3}, {4}), "sum_to");
  // A dim out of range names the dim and the tensor (its shape or its rank).
  expect_error([&] { sum(f32({2, 3}), 2); }, {{"2"}, {shape_str({2, 3}), "2-d"}}, "sum over a dim out of range");
  expect_error([&] { max(f32({2, 3}), -3); }, {{"-3"}, {shape_str({2, 3}), "2-d"}}, "max over a dim out of range");
  expect_error([&] { cumsum(f32({2, 3}), 5); }, {{"5"}, {shape_str({2, 3}), "2-d"}}, "cumsum over a dim out of range");
}

TEST(OpErrors, LinearAlgebraShapes) {
  expect_error([&] { matmul(f32({2, 3}), f32({4, 5})); }, shapes({2, 3}, {4, 5}), "matmul");
  expect_error([&] { matmul(f32({2, 3, 4}), f32({3, 4, 5})); }, shapes({2, 3, 4}, {3, 4, 5}), "matmul batch");
  expect_error([&] { matmul(f32({3}), f32({3, 4})); }, shapes({3}, {3, 4}), "matmul of a 1-D operand");
  expect_error([&] { linear(f32({2, 3}), f32({4, 5})); }, shapes({2, 3}, {4, 5}), "linear, K");
  expect_error([&] { linear(f32({2, 3}), f32({4, 3}), f32({5})); }, shapes({4, 3}, {5}), "linear, bias");
}

TEST(OpErrors, ModelOpShapes) {
  expect_error([&] { rms_norm(f32({2, 3}), f32({4}), 1e-5); }, shapes({2, 3}, {4}), "rms_norm");
  expect_error([&] { embedding(f32({5}), i32({0, 1}, {2})); }, {{shape_str({5})}}, "embedding, 1-D table");
  expect_error([&] { rope(f32({1, 2, 1, 3})); }, {{shape_str({1, 2, 1, 3})}}, "rope, odd D");
  expect_error([&] { rope(f32({2, 3, 4})); }, {{shape_str({2, 3, 4})}}, "rope, 3-D input");
  expect_error([&] { causal_attention(f32({1, 4, 2, 8}), f32({1, 4, 2, 4}), f32({1, 4, 2, 8})); },
               shapes({1, 4, 2, 8}, {1, 4, 2, 4}), "attention, q vs k");
  expect_error([&] { causal_attention(f32({1, 4, 2, 8}), f32({1, 4, 2, 8}), f32({1, 3, 2, 8})); },
               shapes({1, 4, 2, 8}, {1, 3, 2, 8}), "attention, v");
  // attention() over a prefix of keys: causal needs Tk >= Tq; k must match q's B, H, D; v matches k.
  expect_error([&] { attention(f32({1, 5, 2, 8}), f32({1, 4, 2, 8}), f32({1, 4, 2, 8}), 0.5, true); },
               {{shape_str({1, 5, 2, 8})}, {shape_str({1, 4, 2, 8})}, {"at least as many keys"}},
               "attention, causal with Tk < Tq");
  expect_error([&] { attention(f32({1, 2, 2, 8}), f32({1, 0, 2, 8}), f32({1, 0, 2, 8}), 0.5, false); },
               shapes({1, 2, 2, 8}, {1, 0, 2, 8}), "attention, non-causal without keys");
  expect_error([&] { attention(f32({1, 2, 2, 8}), f32({1, 6, 3, 8}), f32({1, 6, 3, 8}), 0.5, true); },
               shapes({1, 2, 2, 8}, {1, 6, 3, 8}), "attention, k's heads");
  expect_error([&] { attention(f32({1, 2, 2, 8}), f32({1, 6, 2, 4}), f32({1, 6, 2, 4}), 0.5, false); },
               shapes({1, 2, 2, 8}, {1, 6, 2, 4}), "attention, k's head dim");
  expect_error([&] { attention(f32({1, 2, 2, 8}), f32({1, 6, 2, 8}), f32({1, 5, 2, 8}), 0.5, true); },
               shapes({1, 6, 2, 8}, {1, 5, 2, 8}), "attention, v vs k");
  expect_error([&] { attention(f32({2, 2, 2, 8}), f32({1, 6, 2, 8}), f32({1, 6, 2, 8}), 0.5, true); },
               shapes({2, 2, 2, 8}, {1, 6, 2, 8}), "attention, k's batch");
  expect_error([&] { cross_entropy(f32({4, 5}), i32({0, 1, 2}, {3})); }, shapes({4, 5}, {3}), "cross_entropy");
  expect_error([&] { conv1d_causal(f32({1, 5, 3}), f32({4, 2}), f32({4})); }, shapes({1, 5, 3}, {4, 2}),
               "conv1d, weight channels");
  expect_error([&] { conv1d_causal(f32({1, 5, 3}), f32({3, 2}), f32({4})); },
               {{shape_str({4})}, {shape_str({3, 2}), shape_str({1, 5, 3})}}, "conv1d, bias");
}

TEST(OpErrors, MemoryShapes) {
  expect_error([&] { concat({f32({2, 3}), f32({2, 4})}, 0); }, shapes({2, 3}, {2, 4}), "concat");
  expect_error([&] { concat({f32({2, 3}), f32({2, 3, 1})}, 0); }, shapes({2, 3}, {2, 3, 1}), "concat, rank");
  expect_error([&] { split(f32({5, 4}), {2, 2}, 0); }, {{shape_str({5, 4})}}, "split, sizes do not sum");
  expect_error([&] { f32({2, 3}).view({4, 2}); }, shapes({2, 3}, {4, 2}), "view, numel");
  expect_error([&] { f32({2, 3}).reshape({5}); }, shapes({2, 3}, {5}), "reshape, numel");
  expect_error([&] { f32({3, 2}).expand({3, 4}); }, shapes({3, 2}, {3, 4}), "expand");
  expect_error([&] { f32({2, 3}).copy_(f32({4, 5})); }, shapes({2, 3}, {4, 5}), "copy_");
  expect_error([&] { adamw_step(f32({3, 4}), f32({4, 3}), f32({3, 4}), f32({3, 4}), AdamWParams{}); },
               shapes({3, 4}, {4, 3}), "adamw, grad");
}

// --- dtype mismatches -------------------------------------------------------------------------------
TEST(OpErrors, DtypeMismatches) {
  const Shape s = {2, 3};
  expect_error([&] { add(f32(s), f64(s)); }, dtypes(), "add");
  expect_error([&] { sub(f64(s), f32(s)); }, dtypes(), "sub");
  expect_error([&] { mul(f32(s), f64(s)); }, dtypes(), "mul");
  expect_error([&] { div(f32(s), f64(s)); }, dtypes(), "div");
  expect_error([&] { swiglu(f32(s), f64(s)); }, dtypes(), "swiglu");
  expect_error([&] { matmul(f32({2, 3}), f64({3, 4})); }, dtypes(), "matmul");
  expect_error([&] { linear(f32({2, 3}), f64({4, 3})); }, dtypes(), "linear, weight");
  expect_error([&] { linear(f32({2, 3}), f32({4, 3}), f64({4})); }, dtypes(), "linear, bias");
  expect_error([&] { rms_norm(f32({2, 3}), f64({3}), 1e-5); }, dtypes(), "rms_norm");
  expect_error([&] { causal_attention(f32({1, 2, 1, 4}), f64({1, 2, 1, 4}), f32({1, 2, 1, 4})); }, dtypes(),
               "attention");
  expect_error([&] { attention(f32({1, 2, 1, 4}), f32({1, 3, 1, 4}), f64({1, 3, 1, 4}), 0.5, true); }, dtypes(),
               "attention, prefix");
  expect_error([&] { conv1d_causal(f32({1, 5, 3}), f64({3, 2}), f32({3})); }, dtypes(), "conv1d");
  expect_error([&] { concat({f32(s), f64(s)}, 0); }, dtypes(), "concat");
  expect_error([&] { adamw_step(f32(s), f64(s), f32(s), f32(s), AdamWParams{}); }, dtypes(), "adamw");
  // Ids and targets must be integers.
  expect_error([&] { embedding(f32({5, 4}), f32({3})); }, {{"f32"}}, "embedding, float ids");
  expect_error([&] { cross_entropy(f32({3, 5}), f32({3})); }, {{"f32"}}, "cross_entropy, float targets");
}

// --- values out of range ----------------------------------------------------------------------------
TEST(OpErrors, OutOfRangeIdsAndTargets) {
  expect_error([&] { embedding(f32({4, 3}), i32({0, 57, 1}, {3})); }, {{"57"}}, "embedding id 57 of 4 rows");
  expect_error([&] { embedding(f32({4, 3}), i32({-2, 1}, {2})); }, {{"-2"}}, "embedding id -2");
  expect_error([&] { cross_entropy(f32({3, 5}), i32({1, 37, 0}, {3})); }, {{"37"}}, "cross_entropy target 37 of 5");
  expect_error([&] { cross_entropy(f32({3, 5}), i32({1, -3, 0}, {3})); }, {{"-3"}}, "cross_entropy target -3");
}

}  // namespace
}  // namespace coil
