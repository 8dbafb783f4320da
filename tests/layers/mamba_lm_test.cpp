// Language models with Mamba mixers: mamba2, mamba2-paper and mamba1 LMs train on a fixed batch,
// their closed-form parameter counts match the built models, and the configs validate.
#include <gtest/gtest.h>

#include "layers/mamba2.h"
#include "mamba_test_util.h"

namespace coil {
namespace {
using namespace mamba_test;

TEST(MambaLM, Mamba2Trains) { expect_trains(train_losses(tiny_lm_config("mamba2")), "mamba2 LM"); }

TEST(MambaLM, Mamba2PaperTrains) {
  ModelConfig c = tiny_lm_config("mamba2");
  const Mamba2Options tiny = c.mamba2;
  c.mamba2 = mamba2_preset("mamba2-paper");
  c.mamba2.d_state = tiny.d_state;
  c.mamba2.head_dim = tiny.head_dim;  // one SSM head of 8 channels + an 8-wide gated branch
  c.mamba2.chunk_size = tiny.chunk_size;
  expect_trains(train_losses(c), "mamba2-paper LM");
}

TEST(MambaLM, Mamba1Trains) { expect_trains(train_losses(tiny_lm_config("mamba1")), "mamba1 LM"); }

TEST(MambaLM, CountsAndValidation) {
  for (const char* mixer : {"mamba2", "mamba1"}) {
    ModelConfig c = tiny_lm_config(mixer);
    c.n_layers = 3;
    LanguageModel m(c, kF64);
    EXPECT_EQ(LanguageModel::count_parameters(c), m.num_parameters()) << mixer;
    EXPECT_TRUE(m.state_dict().count("layers.2.mixer.in_proj.weight")) << mixer;
    EXPECT_TRUE(m.state_dict().count("layers.2.mixer.A_log")) << mixer;
  }
  ModelConfig c = tiny_lm_config("mamba2");
  c.mamba2.head_dim = 5;  // 16 % 5 != 0
  EXPECT_THROW(c.validate(), Error);
  c = tiny_lm_config("mamba1");
  c.mamba1.d_state = 0;
  EXPECT_THROW(c.validate(), Error);
  c = tiny_lm_config("mamba3");
  EXPECT_THROW(c.validate(), Error);
}

}  // namespace
}  // namespace coil
