// validate_parallel_layout: a layout that does not fit the model, the sequence, the batch or the
// number of ranks fails at start with a message naming the numbers that disagree; shard specs split
// and re-join every tensor of every mixer (single process: the join is checked with a size-1 group
// against concatenating the slices by hand).
#include <gtest/gtest.h>

#include <string>

#include "core/ops.h"
#include "layers/linear_mixer.h"
#include "layers/lm.h"
#include "layers/mamba2.h"
#include "parallel/sharded_model.h"

namespace coil {
namespace {

ModelConfig tiny(const std::string& mixer) {
  ModelConfig c;
  c.vocab = 256;
  c.d_model = 64;
  c.n_heads = 4;
  c.head_dim = 16;
  c.mlp_hidden = 128;
  c.n_layers = 1;
  if (mixer == "mamba2" || mixer == "hybrid") {
    c.mixer = mixer;
    c.mamba2.head_dim = 16;
    c.mamba2.d_state = 16;
    if (mixer == "hybrid") c.layer_pattern = "M-*-";
  } else if (mixer == "mamba1") {
    c.mixer = "mamba1";
  } else if (mixer != "softmax") {
    c.mixer = "linear";
    c.linear = linear_preset(mixer);
  }
  return c;
}

GridShape grid(int dp, int tp, int sp) {
  GridShape g;
  g.dp = dp;
  g.tp = tp;
  g.sp = sp;
  return g;
}

// The error message of f(), or "" when it does not throw.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(ParallelLayout, AcceptsFittingLayouts) {
  for (const char* m : {"softmax", "2mamba", "2mamba-e", "mamba2s", "mamba2", "mamba1", "hybrid"}) {
    EXPECT_NO_THROW(validate_parallel_layout(tiny(m), grid(2, 2, 2), 8, 64, 4)) << m;
    EXPECT_NO_THROW(validate_parallel_layout(tiny(m), grid(1, 4, 1), 4, 64, 1)) << m;
  }
}

TEST(ParallelLayout, GridMustMatchRanks) {
  const std::string e = error_of([] { validate_parallel_layout(tiny("softmax"), grid(2, 2, 1), 8); });
  EXPECT_NE(e.find("dp * tp * sp = 2 * 2 * 1 = 4"), std::string::npos) << e;
  EXPECT_NE(e.find("8 ranks"), std::string::npos) << e;
}

TEST(ParallelLayout, HeadsMustDivide) {
  const std::string v = error_of([] { validate_parallel_layout(tiny("2mamba"), grid(1, 3, 1), 3); });
  EXPECT_NE(v.find("vocab 256 does not divide by tp 3"), std::string::npos) << v;
  ModelConfig d = tiny("softmax");
  d.vocab = 258;
  d.mlp_hidden = 129;
  d.n_heads = 4;
  const std::string n = error_of([&] { validate_parallel_layout(d, grid(1, 3, 1), 3); });
  EXPECT_NE(n.find("n_heads 4 does not divide by tp 3"), std::string::npos) << n;
  ModelConfig m = tiny("mamba2");
  m.vocab = 258;
  m.mlp_hidden = 129;
  const std::string mm = error_of([&] { validate_parallel_layout(m, grid(1, 3, 1), 3); });
  EXPECT_NE(mm.find("4 SSM heads"), std::string::npos) << mm;
}

TEST(ParallelLayout, SequenceAndBatchMustDivide) {
  const std::string s = error_of([] { validate_parallel_layout(tiny("mamba2s"), grid(1, 1, 4), 4, 30); });
  EXPECT_NE(s.find("sequence length 30 does not divide by sp 4"), std::string::npos) << s;
  const std::string b = error_of([] { validate_parallel_layout(tiny("softmax"), grid(4, 1, 1), 4, 16, 6); });
  EXPECT_NE(b.find("batch 6 does not divide by dp 4"), std::string::npos) << b;
  // Mamba-2's conv halo (d_conv - 1 = 3) must fit in a shard.
  const std::string h = error_of([] { validate_parallel_layout(tiny("mamba2"), grid(1, 1, 8), 8, 16); });
  EXPECT_NE(h.find("shorter than the conv halo of 3"), std::string::npos) << h;
}

// Recompute works in every layout now (the chain's messages stay outside the recompute region).
TEST(ParallelLayout, RecomputeIsAcceptedWithSp) {
  ModelConfig c = tiny("hybrid");
  c.recompute = true;
  EXPECT_EQ(error_of([&] { validate_parallel_layout(c, grid(1, 1, 2), 2); }), "");
  EXPECT_EQ(error_of([&] { validate_parallel_layout(c, grid(1, 2, 2), 4, 16); }), "");
}

// Mamba-1 splits d_inner over tp; the hybrid stack needs its attention heads and Mamba-2 heads to
// divide.
TEST(ParallelLayout, Mamba1AndHybridWidthsMustDivide) {
  ModelConfig m = tiny("mamba1");
  m.vocab = 258;
  m.mlp_hidden = 129;
  const std::string e = error_of([&] { validate_parallel_layout(m, grid(1, 3, 1), 3); });
  EXPECT_NE(e.find("Mamba-1's d_inner = expand 2 * d_model 64 does not divide by tp 3"), std::string::npos)
      << e;
  ModelConfig h = tiny("hybrid");
  h.vocab = 258;
  h.mlp_hidden = 129;
  const std::string eh = error_of([&] { validate_parallel_layout(h, grid(1, 3, 1), 3); });
  EXPECT_NE(eh.find("4 SSM heads"), std::string::npos) << eh;
  h.layer_pattern = "*-";
  const std::string ea = error_of([&] { validate_parallel_layout(h, grid(1, 3, 1), 3); });
  EXPECT_NE(ea.find("n_heads 4 does not divide by tp 3"), std::string::npos) << ea;
  // The hybrid's Mamba-2 conv halo (3) must fit in a shard.
  const std::string hh = error_of([] { validate_parallel_layout(tiny("hybrid"), grid(1, 1, 8), 8, 16); });
  EXPECT_NE(hh.find("shorter than the conv halo of 3"), std::string::npos) << hh;
}

// Slicing with take_param_shard and joining the slices gives the full tensor back, for every
// parameter of every mixer (the join of gather_param_shards, done here by hand per segment).
TEST(ParallelLayout, ShardSpecsCoverEveryParameter) {
  for (const char* m :
       {"softmax", "2mamba", "2mamba-e", "mamba2s", "mamba2", "linear", "mamba1", "hybrid"}) {
    const ModelConfig c = tiny(m);
    LanguageModel lm(c);
    for (const auto& [name, p] : lm.named_parameters()) {
      const ShardSpec s = shard_spec(name, c);
      if (s.replicated()) continue;
      int64_t sum = 0;
      for (int64_t w : s.widths) sum += w;
      EXPECT_EQ(sum, p.size(s.dim)) << m << " " << name;
      std::vector<Tensor> slices;
      for (int r = 0; r < 2; ++r) slices.push_back(take_param_shard(p, s, r, 2));
      // Rebuild: per segment, the split ones concatenated over ranks, the replicated ones once.
      std::vector<Tensor> segs;
      int64_t off = 0;
      for (size_t i = 0; i < s.widths.size(); ++i) {
        if (s.widths[i] == 0) continue;
        const int64_t lw = s.split[i] ? s.widths[i] / 2 : s.widths[i];
        if (s.split[i])
          segs.push_back(concat({slices[0].narrow(s.dim, off, lw), slices[1].narrow(s.dim, off, lw)}, s.dim));
        else
          segs.push_back(slices[0].narrow(s.dim, off, lw));
        off += lw;
      }
      Tensor back = segs.size() == 1 ? segs[0] : concat(segs, s.dim);
      EXPECT_EQ(back.to_vector(), p.detach().to_vector()) << m << " " << name;
    }
  }
}

}  // namespace
}  // namespace coil
