// The sharded language model (parallel/sharded_model.h) against the single-rank LanguageModel for the
// tiny configs of configs/models/: for each layout (dp2, tp2, sp2 on 2 ranks; sp4, dp2xtp2, tp2xsp2,
// dp2xsp2 on 4) the forward logits, the loss and every parameter gradient match (fp32, max relative
// error < 1e-5), and five AdamW steps give the same losses. Every rank also runs the single-rank
// reference on the whole batch. The sequence-parallel chain and gather styles must agree too.
// Mamba-1 (chain only under sp) and the Mamba-2-Hybrid stack have the same cells below. With
// model.recompute the same comparisons hold in every layout, and recompute lowers the peak memory.
#include <gtest/gtest.h>

#include <iostream>

#include "core/allocator.h"
#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "mpi_test_util.h"
#include "parallel/data_parallel.h"
#include "parallel/sequence.h"
#include "parallel/sharded_model.h"
#include "trainer/adamw.h"
#include "trainer/model_yaml.h"

namespace coil {
namespace {

using coil::testing::max_rel_err;
using coil::testing::world;

// Logits, loss, every parameter gradient and the losses of AdamW steps 1-4: the 1e-5 in fp32
// (each tensor's error relative to its largest entry). The fp32 runs reach it because the CPU rounds
// every reduction once (GEMMs, broadcast-product sums and the MPI sums of f32 gradients accumulate in
// f64): test MpiShardedReference puts the single-rank fp32 gradients ~4e-6 from fp64, and a layout's
// other summation order lands within 8e-6 of them (the worst: Mamba-2 under tp2). Before, with f32
// accumulation, Mamba-2's D and 2Mamba reached 1.6e-5 and the AdamW losses 5e-5 (an update turns a
// rounding-level gradient entry into lr * sign(g)). The fp64 runs show the sharded algebra itself is
// exact (errors ~1e-14 against 1e-10 here).
constexpr double kTol = 1e-5;
constexpr double kTolAfterUpdate = kTol;
double grad_tol(DType dt) { return dt == DType::F64 ? 1e-10 : kTol; }
constexpr int64_t kBatch = 2, kSeq = 16;

using coil::testing::random_ids;
using coil::testing::tiny_chunked_config;

struct Result {
  double logits = 0, loss0 = 0, grads = 0, losses = 0;
  std::string grad_note;  // the parameter with the largest gradient error
};

Result run_layout(const std::string& name, int dp, int tp, int sp, bool chain = false,
                  std::vector<double>* losses_out = nullptr, DType dt = DType::F32,
                  bool balanced = false, bool ring = false, bool recompute = false) {
  GridShape shape;
  shape.dp = dp;
  shape.tp = tp;
  shape.sp = sp;
  // With recompute the sharded model recomputes its layers; the reference is the plain single-rank
  // model (no recompute), so the comparison also covers recompute itself.
  const ModelConfig cfg = tiny_chunked_config(name);
  ModelConfig pcfg = cfg;
  pcfg.recompute = recompute;
  validate_parallel_layout(pcfg, shape, world()->size(), kSeq, kBatch);
  ProcessGrid grid(world(), shape);
  ParallelOptions po;
  po.sequence_chain = chain;
  po.balanced_causal = balanced;
  po.sequence_ring = ring;
  const ParamOptions popt{dt, Device::cpu()};
  LanguageModel ref(cfg, popt);
  ParallelLanguageModel par(pcfg, ParallelGroups::of(grid), po, popt);
  const double tol = dt == DType::F64 ? 1e-10 : kTol;
  DataParallelOptions dopt;
  dopt.average = false;
  DataParallel ddp(par.grad_group(), par.parameters(), dopt);
  AdamWOptions aopt;
  aopt.lr = 1e-2;
  aopt.weight_decay = 0.1;
  AdamW opt_ref(ref.parameters(), aopt), opt_par(par.parameters(), aopt);
  const auto ref_named = ref.named_parameters();
  const auto par_named = par.named_parameters();
  EXPECT_EQ(ref_named.size(), par_named.size());
  Result res;
  for (int step = 0; step < 5; ++step) {
    Tensor ids = random_ids(kBatch, kSeq, cfg.vocab, 100 + step);
    Tensor tgt = random_ids(kBatch, kSeq, cfg.vocab, 200 + step);
    Tensor lref = ref.forward(ids);
    Tensor loss_ref = cross_entropy(lref, tgt);
    loss_ref.backward();
    if (step == 0) {
      NoGradGuard ng;
      Tensor lpar = par.forward(par.local_batch(ids));
      res.logits = max_rel_err(lpar.to_vector(), par.local_logits(lref.detach()).to_vector());
    }
    Tensor loss = par.loss(par.local_batch(ids), par.local_batch(tgt));
    loss.backward();
    ddp.finish();
    par.finish_tp_grads();
    const double le = max_rel_err({loss.item()}, {loss_ref.item()});
    if (losses_out) losses_out->push_back(loss.item());
    if (step == 0) {
      res.loss0 = le;
      double ss = 0;
      for (const auto& [n, p] : ref_named) ss += sum_squares(p.grad()).item();
      const double ne = max_rel_err({par.global_grad_norm()}, {std::sqrt(ss)});
      EXPECT_LT(ne, 1e-5) << name << " global gradient norm";
      for (size_t i = 0; i < par_named.size(); ++i) {
        EXPECT_EQ(par_named[i].first, ref_named[i].first);
        Tensor full = gather_param_shards(par_named[i].second.grad(), par.spec(par_named[i].first),
                                          *grid.tp());
        const double e = max_rel_err(full.to_vector(), ref_named[i].second.grad().to_vector());
        EXPECT_LT(e, grad_tol(dt)) << name << " " << par_named[i].first;
        if (e >= res.grads) res.grads = e, res.grad_note = par_named[i].first;
      }
    } else {
      res.losses = std::max(res.losses, le);
    }
    opt_ref.step();
    opt_par.step();
    opt_ref.zero_grad();
    opt_par.zero_grad();
  }
  EXPECT_LT(res.logits, tol) << name;
  EXPECT_LT(res.loss0, tol) << name;
  EXPECT_LT(res.losses, dt == DType::F64 ? tol : kTolAfterUpdate) << name << " (AdamW steps 1-4)";
  if (world()->rank() == 0)
    std::cout << "[layout] " << name << " " << dtype_name(dt) << " dp" << dp << " tp" << tp << " sp" << sp
              << (chain ? " chain" : "") << (balanced ? " balanced" : "") << (ring ? " ring" : "")
              << (recompute ? " recompute" : "") << ": logits " << res.logits << " loss " << res.loss0
              << " grads " << res.grads << (res.grad_note.empty() ? "" : " (" + res.grad_note + ")")
              << " losses(steps 1-4) " << res.losses << "\n";
  return res;
}

const std::vector<std::string> kMixers = {"softmax", "2mamba", "2mamba-e", "mamba2s", "mamba2"};

class Mpi2RanksLayouts : public ::testing::TestWithParam<std::string> {};
TEST_P(Mpi2RanksLayouts, Dp2) { run_layout(GetParam(), 2, 1, 1); }
TEST_P(Mpi2RanksLayouts, Tp2) { run_layout(GetParam(), 1, 2, 1); }
TEST_P(Mpi2RanksLayouts, Sp2) { run_layout(GetParam(), 1, 1, 2); }
// The chain (LASP) and the all-gather (LASP-2 / K, V gather) styles give the same losses.
TEST_P(Mpi2RanksLayouts, Sp2ChainEqualsGather) {
  std::vector<double> a, b;
  run_layout(GetParam(), 1, 1, 2, true, &a);
  run_layout(GetParam(), 1, 1, 2, false, &b);
  EXPECT_LT(max_rel_err(a, b), kTol);
}
// fp64: the sharded algebra is exact (every error at rounding level of fp64).
TEST_P(Mpi2RanksLayouts, Sp2F64) { run_layout(GetParam(), 1, 1, 2, false, nullptr, DType::F64); }
TEST_P(Mpi2RanksLayouts, Tp2F64) { run_layout(GetParam(), 1, 2, 1, false, nullptr, DType::F64); }
INSTANTIATE_TEST_SUITE_P(Mixers, Mpi2RanksLayouts, ::testing::ValuesIn(kMixers),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n) if (ch == '-') ch = '_';
                           return n;
                         });

class Mpi4RanksLayouts : public ::testing::TestWithParam<std::string> {};
TEST_P(Mpi4RanksLayouts, Sp4) { run_layout(GetParam(), 1, 1, 4); }
TEST_P(Mpi4RanksLayouts, Dp2Tp2) { run_layout(GetParam(), 2, 2, 1); }
TEST_P(Mpi4RanksLayouts, Tp2Sp2) { run_layout(GetParam(), 1, 2, 2); }
TEST_P(Mpi4RanksLayouts, Dp2Sp2) { run_layout(GetParam(), 2, 1, 2); }
TEST_P(Mpi4RanksLayouts, Sp4Chain) { run_layout(GetParam(), 1, 1, 4, true); }
TEST_P(Mpi4RanksLayouts, Tp2Sp2F64) { run_layout(GetParam(), 1, 2, 2, false, nullptr, DType::F64); }
INSTANTIATE_TEST_SUITE_P(Mixers, Mpi4RanksLayouts, ::testing::ValuesIn(kMixers),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n) if (ch == '-') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace coil

namespace coil {
namespace {
// How far the fp32 single-rank reference itself is from fp64 (same batch, same init): the scale of
// rounding the fp32 layout comparisons above cannot beat.
TEST(MpiShardedReference, Fp32RoundingOfTheReference) {
  for (const std::string name : {"2mamba", "mamba2"}) {
    const ModelConfig cfg = tiny_chunked_config(name);
    LanguageModel m32(cfg, ParamOptions{DType::F32, Device::cpu()});
    LanguageModel m64(cfg, ParamOptions{DType::F64, Device::cpu()});
    Tensor ids = random_ids(kBatch, kSeq, cfg.vocab, 100), tgt = random_ids(kBatch, kSeq, cfg.vocab, 200);
    cross_entropy(m32.forward(ids), tgt).backward();
    cross_entropy(m64.forward(ids), tgt).backward();
    const auto a = m32.named_parameters(), b = m64.named_parameters();
    double worst = 0;
    std::string which;
    for (size_t i = 0; i < a.size(); ++i) {
      const double e = max_rel_err(a[i].second.grad().to_vector(), b[i].second.grad().to_vector());
      if (e > worst) worst = e, which = a[i].first;
    }
    if (world()->rank() == 0)
      std::cout << "[reference] " << name << " fp32 vs fp64 single-rank gradients: worst " << worst
                << " (" << which << ")\n";
    EXPECT_LT(worst, kTol);  // ~4e-6 (1e-5 before the f64 accumulation of GEMMs and product sums)
  }
}
}  // namespace
}  // namespace coil

namespace coil {
namespace {
// Beyond the acceptance list: the linear SM-norm baseline (no decay, no conv) and 2Mamba + dt in
// every 2-rank layout; Mamba-1 under sp (it always takes the chain) and dp.
TEST(Mpi2RanksExtraMixers, LinearAnd2MambaDt) {
  for (const std::string m : {"linear", "2mamba-dt"}) {
    run_layout(m, 1, 2, 1);
    run_layout(m, 1, 1, 2);
    run_layout(m, 1, 1, 2, true);
  }
}
// The load-balanced causal split of softmax (chunks r and 2 sp - 1 - r), with tp and dp too.
TEST(Mpi2RanksExtraMixers, SoftmaxBalancedSp2) {
  run_layout("softmax", 1, 1, 2, false, nullptr, DType::F32, true);
  run_layout("softmax", 1, 1, 2, false, nullptr, DType::F64, true);
}
TEST(Mpi4Ranks, SoftmaxBalancedSp4AndTp2Sp2) {
  run_layout("softmax", 1, 1, 4, false, nullptr, DType::F32, true);
  run_layout("softmax", 1, 2, 2, false, nullptr, DType::F32, true);
  run_layout("softmax", 2, 1, 2, false, nullptr, DType::F32, true);
}
// The K, V ring of softmax (shards passed rank to rank, partial outputs merged by log-sum-exp): equals
// the single-rank model like the gather (fp32 and fp64) and gives the gather's losses.
TEST(Mpi2RanksExtraMixers, SoftmaxRingSp2) {
  std::vector<double> ring, gather;
  run_layout("softmax", 1, 1, 2, false, &ring, DType::F32, false, true);
  run_layout("softmax", 1, 1, 2, false, &gather);
  EXPECT_LT(max_rel_err(ring, gather), kTol);
  run_layout("softmax", 1, 1, 2, false, nullptr, DType::F64, false, true);
}
TEST(Mpi4Ranks, SoftmaxRingSp4Tp2Sp2Dp2Sp2) {
  std::vector<double> ring, gather;
  run_layout("softmax", 1, 1, 4, false, &ring, DType::F32, false, true);
  run_layout("softmax", 1, 1, 4, false, &gather);
  EXPECT_LT(max_rel_err(ring, gather), kTol);
  run_layout("softmax", 1, 1, 4, false, nullptr, DType::F64, false, true);
  run_layout("softmax", 1, 2, 2, false, nullptr, DType::F32, false, true);
  run_layout("softmax", 2, 1, 2, false, nullptr, DType::F32, false, true);
}
TEST(Mpi2RanksExtraMixers, Mamba1) {
  run_layout("mamba1", 1, 1, 2);
  run_layout("mamba1", 2, 1, 1);
}
// Mamba-1 tensor parallel: d_inner split, x_proj's partial [dt_low | B | C] summed over tp.
TEST(Mpi2RanksExtraMixers, Mamba1Tp2) {
  run_layout("mamba1", 1, 2, 1);
  run_layout("mamba1", 1, 2, 1, false, nullptr, DType::F64);
}
TEST(Mpi4Ranks, Mamba1Dp2Tp2Tp2Sp2Sp4Dp2Sp2) {
  run_layout("mamba1", 2, 2, 1);
  run_layout("mamba1", 1, 2, 2);
  run_layout("mamba1", 1, 1, 4);
  run_layout("mamba1", 2, 1, 2);
}
// The Mamba-2-Hybrid stack (M, *, - layers): sequence parallel (gather and chain) and tensor parallel.
TEST(Mpi2RanksExtraMixers, HybridSp2Tp2Dp2) {
  std::vector<double> chain, gather;
  run_layout("hybrid", 1, 1, 2, false, &gather);
  run_layout("hybrid", 1, 1, 2, true, &chain);
  EXPECT_LT(max_rel_err(chain, gather), kTol);
  run_layout("hybrid", 1, 1, 2, false, nullptr, DType::F64);
  run_layout("hybrid", 1, 2, 1);
  run_layout("hybrid", 2, 1, 1);
}
TEST(Mpi4Ranks, HybridSp4Dp2Sp2Dp2Tp2Tp2Sp2) {
  run_layout("hybrid", 1, 1, 4);
  run_layout("hybrid", 2, 1, 2);
  run_layout("hybrid", 2, 2, 1);
  run_layout("hybrid", 1, 2, 2);
}
// Activation recompute (model.recompute) in the sharded model: every layer runs inside
// coil::recompute, the chain's messages outside it (its states are the region's inputs and outputs).
// Each layout's logits, loss, gradients and AdamW losses equal the plain single-rank model's (run_layout
// gives the reference no recompute).
const std::vector<std::string> kRecomputeMixers = {"softmax", "2mamba", "2mamba-e"};
std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  for (auto& ch : n) if (ch == '-') ch = '_';
  return n;
}
constexpr bool kRecompute = true;

class Mpi2RanksRecompute : public ::testing::TestWithParam<std::string> {};
TEST_P(Mpi2RanksRecompute, Sp2Chain) {
  // And the same losses as the chain without recompute.
  std::vector<double> on, off;
  run_layout(GetParam(), 1, 1, 2, true, &on, DType::F32, false, false, kRecompute);
  run_layout(GetParam(), 1, 1, 2, true, &off);
  EXPECT_LT(max_rel_err(on, off), kTol);
}
TEST_P(Mpi2RanksRecompute, Sp2Gather) {
  run_layout(GetParam(), 1, 1, 2, false, nullptr, DType::F32, false, false, kRecompute);
}
TEST_P(Mpi2RanksRecompute, Tp2) {
  run_layout(GetParam(), 1, 2, 1, false, nullptr, DType::F32, false, false, kRecompute);
}
TEST_P(Mpi2RanksRecompute, Dp2) {
  run_layout(GetParam(), 2, 1, 1, false, nullptr, DType::F32, false, false, kRecompute);
}
INSTANTIATE_TEST_SUITE_P(Mixers, Mpi2RanksRecompute, ::testing::ValuesIn(kRecomputeMixers), test_name);

// fp64: recompute leaves the sharded algebra exact (chain and gather).
TEST(Mpi2RanksRecomputeExtra, F64ChainAndGather) {
  for (const std::string m : {"2mamba", "softmax"}) {
    run_layout(m, 1, 1, 2, true, nullptr, DType::F64, false, false, kRecompute);
    run_layout(m, 1, 1, 2, false, nullptr, DType::F64, false, false, kRecompute);
  }
}
// The softmax ring and load-balanced split (point-to-point K, V passes replayed inside the region),
// Mamba-1 (always the chain) and the hybrid stack (its MLP layers have no chain state).
TEST(Mpi2RanksRecomputeExtra, SoftmaxRingBalancedMamba1Hybrid) {
  run_layout("softmax", 1, 1, 2, false, nullptr, DType::F32, false, true, kRecompute);
  run_layout("softmax", 1, 1, 2, false, nullptr, DType::F32, true, false, kRecompute);
  run_layout("mamba1", 1, 1, 2, false, nullptr, DType::F32, false, false, kRecompute);
  run_layout("mamba1", 1, 2, 1, false, nullptr, DType::F32, false, false, kRecompute);
  run_layout("hybrid", 1, 1, 2, false, nullptr, DType::F32, false, false, kRecompute);
  run_layout("hybrid", 1, 1, 2, true, nullptr, DType::F32, false, false, kRecompute);
  run_layout("hybrid", 1, 2, 1, false, nullptr, DType::F32, false, false, kRecompute);
}

// The point of recompute: an sp2 run of 2Mamba keeps only each layer's input (and, in the chain, the
// received states) between forward and backward, not every layer's chunk states and activations. The
// CPU allocator's peak over one forward + backward (above what was live before) must drop well below
// the run without recompute, in the chain and in the gather style; a recompute switch that silently
// did nothing would give the same peak. Also what stays live between forward and backward.
TEST(Mpi2RanksRecomputeExtra, Sp2LowersPeakMemory) {
  struct Mem {
    int64_t peak = 0, held = 0;  // peak over forward + backward; live after forward
  };
  auto measure = [](bool recompute, bool chain) {
    ModelConfig cfg = tiny_chunked_config("2mamba");
    cfg.n_layers = 4;
    cfg.recompute = recompute;
    GridShape shape;
    shape.sp = 2;
    ProcessGrid grid(world(), shape);
    ParallelOptions po;
    po.sequence_chain = chain;
    ParallelLanguageModel par(cfg, ParallelGroups::of(grid), po, ParamOptions{DType::F32, Device::cpu()});
    const int64_t B = 2, T = 256;
    Tensor ids = par.local_batch(random_ids(B, T, cfg.vocab, 300));
    Tensor tgt = par.local_batch(random_ids(B, T, cfg.vocab, 301));
    Allocator& a = allocator_for(DeviceType::CPU);
    const int64_t before = a.stats(0).current_bytes;
    a.reset_peak(0);
    Tensor loss = par.loss(ids, tgt);
    const int64_t held = a.stats(0).current_bytes - before;
    loss.backward();
    const int64_t peak = a.stats(0).peak_bytes - before;
    // The largest over the ranks (each is its own process with its own allocator).
    const std::vector<double> m = reduce_values(*world(), {double(peak), double(held)}, ReduceOp::Max);
    return Mem{int64_t(m[0]), int64_t(m[1])};
  };
  for (const bool chain : {true, false}) {
    const Mem off = measure(false, chain), on = measure(true, chain);
    if (world()->rank() == 0)
      std::cout << "[recompute] 2mamba tiny, 4 layers, B 2, T 256, sp2 " << (chain ? "chain" : "gather")
                << ", f32, bytes per rank: peak recompute off " << off.peak << ", on " << on.peak << " (ratio "
                << double(on.peak) / double(off.peak) << "); live after forward off " << off.held << ", on "
                << on.held << " (ratio " << double(on.held) / double(off.held) << ")\n";
    EXPECT_LT(double(on.peak), 0.6 * double(off.peak)) << (chain ? "chain" : "gather");
    EXPECT_LT(double(on.held), 0.15 * double(off.held)) << (chain ? "chain" : "gather");
  }
}

class Mpi4RanksRecompute : public ::testing::TestWithParam<std::string> {};
TEST_P(Mpi4RanksRecompute, Tp2Sp2) {
  run_layout(GetParam(), 1, 2, 2, false, nullptr, DType::F32, false, false, kRecompute);
}
TEST_P(Mpi4RanksRecompute, Tp2Sp2Chain) {
  run_layout(GetParam(), 1, 2, 2, true, nullptr, DType::F32, false, false, kRecompute);
}
TEST_P(Mpi4RanksRecompute, Sp4Chain) {
  run_layout(GetParam(), 1, 1, 4, true, nullptr, DType::F32, false, false, kRecompute);
}
TEST_P(Mpi4RanksRecompute, Sp4) {
  run_layout(GetParam(), 1, 1, 4, false, nullptr, DType::F32, false, false, kRecompute);
}
INSTANTIATE_TEST_SUITE_P(Mixers, Mpi4RanksRecompute, ::testing::Values("softmax", "2mamba"), test_name);
TEST(Mpi4RanksRecomputeExtra, HybridTp2Sp2AndSoftmaxRingDp2Sp2) {
  run_layout("hybrid", 1, 2, 2, false, nullptr, DType::F32, false, false, kRecompute);
  run_layout("hybrid", 1, 1, 4, true, nullptr, DType::F32, false, false, kRecompute);
  run_layout("softmax", 1, 2, 2, false, nullptr, DType::F32, false, true, kRecompute);
  run_layout("2mamba", 2, 1, 2, true, nullptr, DType::F32, false, false, kRecompute);
}

// The chain's messages carry each state entry's own dtype: under bf16 autocast the scan state S stays
// f32 next to bf16 activations, and a receive buffer sized by the activations' dtype would not match
// the send (NCCL waits forever on such a pair). Here x is f64, the state one f32 and one f64 entry;
// rank 1 gets both in their dtypes and values, and the backward hands rank 0 the gradients of each
// entry in its dtype.
TEST(Mpi2RanksChain, StateEntriesKeepTheirDtypes) {
  CommPtr sp = world();
  const int r = sp->rank();
  Tensor x = Tensor::from_vector({1.0, 2.0}, {1, 2}, DType::F64);
  x.set_requires_grad(true);
  Tensor s32 = Tensor::from_vector({0.5, -1.5, 2.5}, {3}, DType::F32);
  s32.set_requires_grad(true);
  Tensor s64 = Tensor::from_vector({4.0, 8.0}, {2}, DType::F64);
  s64.set_requires_grad(true);
  if (r == 0) {
    MixerState st;
    st.set("S", s32 * 2.0);
    st.set("conv", s64 * 3.0);
    Tensor y = chain_send(x * 1.0, st, sp);
    sum(y).backward();
    // d(sum y)/dx = 1; the state's gradients come from rank 1: d/dS of sum(S * 5) = 5, times 2.
    ASSERT_TRUE(s32.grad().defined() && s64.grad().defined());
    EXPECT_EQ(s32.grad().dtype(), DType::F32);
    EXPECT_EQ(s64.grad().dtype(), DType::F64);
    EXPECT_EQ(s32.grad().to_vector(), (std::vector<double>{10.0, 10.0, 10.0}));
    EXPECT_EQ(s64.grad().to_vector(), (std::vector<double>{21.0, 21.0}));  // 7 x 3
  } else {
    MixerState in;
    Tensor xin = chain_receive(x, sp, &in);
    ASSERT_TRUE(in.has("S") && in.has("conv"));
    EXPECT_EQ(in.get("S").dtype(), DType::F32);
    EXPECT_EQ(in.get("conv").dtype(), DType::F64);
    EXPECT_EQ(in.get("S").to_vector(), (std::vector<double>{1.0, -3.0, 5.0}));
    EXPECT_EQ(in.get("conv").to_vector(), (std::vector<double>{12.0, 24.0}));
    backward({sum(xin), sum(in.get("S") * 5.0), sum(in.get("conv") * 7.0)}, {Tensor(), Tensor(), Tensor()});
  }
}
}  // namespace
}  // namespace coil
