// The loader: packed and document samples, determinism for a seed, exact resume from a saved
// position, dp slices that partition the global batch, sp slices that concatenate to the sequence,
// epochs as permutations, and position serialisation.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "data_test_util.h"

namespace coil {
namespace {

using datatest::TempDir;

std::vector<int64_t> ints(const Tensor& t) { return t.to_ints(); }

// Document lengths with variety: empty, short, longer than T.
const std::vector<int> kLengths = {5, 0, 17, 3, 40, 9, 1, 12, 25, 7, 30, 2, 8, 19, 4, 11};

LoaderOptions packed(int64_t T, int64_t B, uint64_t seed = 7) {
  LoaderOptions o;
  o.seq_len = T;
  o.global_batch = B;
  o.seed = seed;
  return o;
}

TEST(Loader, PackedUnshuffledIsTheDocumentStream) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  std::vector<int32_t> stream;  // documents + EOS, in order
  for (uint64_t d = 0; d < ds.num_docs(); ++d) {
    const auto doc = ds.document(d);
    stream.insert(stream.end(), doc.begin(), doc.end());
    stream.push_back(ds.eos_id());
  }
  LoaderOptions o = packed(8, 2);
  o.shuffle = false;
  DataLoader dl(ds, o);
  EXPECT_EQ(dl.samples_per_epoch(), (stream.size() - 1) / 8);
  for (uint64_t step = 0; step < dl.steps_per_epoch(); ++step) {
    const TokenBatch b = dl.next_batch();
    ASSERT_EQ(b.ids.shape(), (Shape{2, 8}));
    EXPECT_EQ(b.ids.dtype(), DType::I32);
    EXPECT_TRUE(b.ids.device().is_cpu());
    const auto ids = ints(b.ids), tgt = ints(b.targets);
    for (int r = 0; r < 2; ++r) {
      const uint64_t w = step * 2 + uint64_t(r);
      for (int c = 0; c < 8; ++c) {
        EXPECT_EQ(ids[size_t(r * 8 + c)], stream[w * 8 + uint64_t(c)]);
        EXPECT_EQ(tgt[size_t(r * 8 + c)], stream[w * 8 + uint64_t(c) + 1]);
      }
    }
  }
}

TEST(Loader, DeterministicForASeedAndDifferentAcrossSeedsAndEpochs) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  DataLoader a(ds, packed(6, 4, 1)), b(ds, packed(6, 4, 1)), c(ds, packed(6, 4, 2));
  bool differs_by_seed = false;
  std::vector<std::vector<int64_t>> epoch0, epoch1;
  for (uint64_t s = 0; s < 2 * a.steps_per_epoch(); ++s) {
    const TokenBatch x = a.next_batch(), y = b.next_batch(), z = c.next_batch();
    EXPECT_EQ(ints(x.ids), ints(y.ids));
    EXPECT_EQ(ints(x.targets), ints(y.targets));
    differs_by_seed |= ints(x.ids) != ints(z.ids);
    (x.epoch == 0 ? epoch0 : epoch1).push_back(ints(x.ids));
  }
  EXPECT_TRUE(differs_by_seed);
  EXPECT_NE(epoch0, epoch1);  // each epoch has its own order
}

TEST(Loader, EveryEpochVisitsEachWindowOrDocumentOnce) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  // Document mode: an epoch's samples are the documents, each once.
  LoaderOptions o = packed(5, 1);
  o.mode = LoaderMode::Document;
  LoaderOptions in_order = o;
  in_order.shuffle = false;
  DataLoader docs(ds, o), ref(ds, in_order);
  std::multiset<std::vector<int32_t>> want;
  for (uint64_t i = 0; i < ref.samples_per_epoch(); ++i) want.insert(ref.sample_tokens(0, i));
  for (uint64_t e = 0; e < 3; ++e) {
    std::multiset<std::vector<int32_t>> got;
    for (uint64_t i = 0; i < docs.samples_per_epoch(); ++i) got.insert(docs.sample_tokens(e, i));
    EXPECT_EQ(got, want) << "epoch " << e;
  }
  // Packed with T = 1: window w is stream[w], stream[w + 1], so the first tokens of an epoch's
  // windows are the whole stream but its final EOS, whatever the document and window order.
  std::multiset<int32_t> stream;
  for (uint64_t d = 0; d < ds.num_docs(); ++d) {
    const auto doc = ds.document(d);
    stream.insert(doc.begin(), doc.end());
    if (d > 0) stream.insert(ds.eos_id());
  }
  DataLoader windows(ds, packed(1, 1));
  std::vector<int32_t> first_epoch;
  for (uint64_t e = 0; e < 2; ++e) {
    std::multiset<int32_t> got;
    std::vector<int32_t> order;
    for (uint64_t i = 0; i < windows.samples_per_epoch(); ++i) {
      order.push_back(windows.sample_tokens(e, i)[0]);
      got.insert(order.back());
    }
    EXPECT_EQ(got, stream) << "epoch " << e;
    if (e == 0) first_epoch = order;
    else EXPECT_NE(order, first_epoch);
  }
}

TEST(Loader, ResumeFromSavedPositionGivesIdenticalBatches) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  for (LoaderMode mode : {LoaderMode::Packed, LoaderMode::Document}) {
    LoaderOptions o = packed(6, 3, 11);
    o.mode = mode;
    DataLoader straight(ds, o);
    const uint64_t total = 3 * straight.steps_per_epoch() + 2;  // crosses two epoch boundaries
    std::vector<TokenBatch> want;
    for (uint64_t s = 0; s < total; ++s) want.push_back(straight.next_batch());
    for (uint64_t cut : {uint64_t(0), uint64_t(1), straight.steps_per_epoch(), total - 3}) {
      DataLoader first(ds, o);
      for (uint64_t s = 0; s < cut; ++s) first.next_batch();
      const std::string saved = first.position().to_string();
      DataLoader resumed(ds, o);
      resumed.set_position(LoaderPosition::from_string(saved));
      for (uint64_t s = cut; s < total; ++s) {
        const TokenBatch b = resumed.next_batch();
        EXPECT_EQ(ints(b.ids), ints(want[s].ids)) << loader_mode_name(mode) << " cut " << cut << " step " << s;
        EXPECT_EQ(ints(b.targets), ints(want[s].targets));
        EXPECT_EQ(b.epoch, want[s].epoch);
      }
    }
  }
}

TEST(Loader, DataParallelRanksPartitionTheGlobalBatch) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  for (LoaderMode mode : {LoaderMode::Packed, LoaderMode::Document}) {
    LoaderOptions o = packed(4, 4, 3);
    o.mode = mode;
    DataLoader global(ds, o);
    std::vector<DataLoader> ranks;
    for (int r = 0; r < 2; ++r) {
      LoaderOptions rr = o;
      rr.dp_rank = r;
      rr.dp_size = 2;
      ranks.emplace_back(ds, rr);
    }
    for (int step = 0; step < 5; ++step) {
      const TokenBatch g = global.next_batch();
      const TokenBatch r0 = ranks[0].next_batch(), r1 = ranks[1].next_batch();
      ASSERT_EQ(r0.ids.shape(), (Shape{2, 4}));
      // Rank 0 holds rows 0-1 of the global batch and rank 1 rows 2-3.
      for (auto [field, whole] : {std::pair{0, ints(g.ids)}, std::pair{1, ints(g.targets)}}) {
        std::vector<int64_t> cat = ints(field ? r0.targets : r0.ids);
        const auto b1 = ints(field ? r1.targets : r1.ids);
        cat.insert(cat.end(), b1.begin(), b1.end());
        EXPECT_EQ(cat, whole) << loader_mode_name(mode) << " step " << step;
      }
      EXPECT_EQ(r0.first_sample, g.first_sample);
    }
  }
}

TEST(Loader, DataParallelSlicesAreDisjointSamples) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  LoaderOptions o = packed(5, 6, 5);
  o.mode = LoaderMode::Document;
  o.dp_size = 3;
  std::set<std::vector<int32_t>> seen;
  size_t rows = 0;
  for (int r = 0; r < 3; ++r) {
    o.dp_rank = r;
    DataLoader dl(ds, o);
    const TokenBatch b = dl.next_batch();
    ASSERT_EQ(b.ids.shape(), (Shape{2, 5}));
    for (int64_t i = 0; i < 2; ++i) {
      // Documents are distinct (numbered_dataset), so rows of different samples differ.
      const auto row = ints(b.ids.narrow(0, i, 1).contiguous());
      seen.insert(std::vector<int32_t>(row.begin(), row.end()));
      ++rows;
    }
  }
  EXPECT_EQ(seen.size(), rows);
}

TEST(Loader, SequenceParallelSlicesConcatenateToTheSequence) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  for (LoaderMode mode : {LoaderMode::Packed, LoaderMode::Document}) {
    LoaderOptions o = packed(12, 2, 9);
    o.mode = mode;
    DataLoader full(ds, o);
    std::vector<DataLoader> parts;
    for (int q = 0; q < 3; ++q) {
      LoaderOptions oq = o;
      oq.sp_rank = q;
      oq.sp_size = 3;
      parts.emplace_back(ds, oq);
    }
    for (int step = 0; step < 4; ++step) {
      const TokenBatch f = full.next_batch();
      std::vector<TokenBatch> p;
      for (auto& l : parts) p.push_back(l.next_batch());
      ASSERT_EQ(p[0].ids.shape(), (Shape{2, 4}));
      const auto fi = ints(f.ids), ft = ints(f.targets);
      for (int r = 0; r < 2; ++r)
        for (int q = 0; q < 3; ++q) {
          const auto pi = ints(p[size_t(q)].ids), pt = ints(p[size_t(q)].targets);
          for (int c = 0; c < 4; ++c) {
            EXPECT_EQ(pi[size_t(r * 4 + c)], fi[size_t(r * 12 + q * 4 + c)]);
            EXPECT_EQ(pt[size_t(r * 4 + c)], ft[size_t(r * 12 + q * 4 + c)]);
          }
        }
    }
  }
}

TEST(Loader, DocumentModePadsAndMasks) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), {3, 0, 10});
  LoaderOptions o = packed(6, 1);
  o.mode = LoaderMode::Document;
  o.shuffle = false;
  DataLoader dl(ds, o);
  const int32_t BOS = 1, EOS = 2, PAD = 3, IGN = -100;
  const auto d0 = ds.document(0), d2 = ds.document(2);
  // Document 0 (3 tokens): BOS a b c EOS PAD | targets a b c EOS IGN IGN.
  TokenBatch b = dl.next_batch();
  EXPECT_EQ(ints(b.ids), (std::vector<int64_t>{BOS, d0[0], d0[1], d0[2], EOS, PAD}));
  EXPECT_EQ(ints(b.targets), (std::vector<int64_t>{d0[0], d0[1], d0[2], EOS, IGN, IGN}));
  // Empty document: BOS EOS PAD... | EOS IGN...
  b = dl.next_batch();
  EXPECT_EQ(ints(b.ids), (std::vector<int64_t>{BOS, EOS, PAD, PAD, PAD, PAD}));
  EXPECT_EQ(ints(b.targets), (std::vector<int64_t>{EOS, IGN, IGN, IGN, IGN, IGN}));
  // Long document: truncated to T + 1 = 7 tokens, no EOS, no padding.
  b = dl.next_batch();
  EXPECT_EQ(ints(b.ids), (std::vector<int64_t>{BOS, d2[0], d2[1], d2[2], d2[3], d2[4]}));
  EXPECT_EQ(ints(b.targets), (std::vector<int64_t>{d2[0], d2[1], d2[2], d2[3], d2[4], d2[5]}));
  // Without append_eos the short document ends at its last token.
  o.append_eos = false;
  DataLoader no_eos(ds, o);
  b = no_eos.next_batch();
  EXPECT_EQ(ints(b.ids), (std::vector<int64_t>{BOS, d0[0], d0[1], d0[2], PAD, PAD}));
  EXPECT_EQ(ints(b.targets), (std::vector<int64_t>{d0[0], d0[1], d0[2], IGN, IGN, IGN}));
}

TEST(Loader, PositionIsLayoutAndBatchIndependent) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  // Two steps of B=4 then B=2 steps continue where four steps of B=2 would be.
  DataLoader big(ds, packed(5, 4)), small(ds, packed(5, 2));
  big.next_batch();
  big.next_batch();
  for (int i = 0; i < 4; ++i) small.next_batch();
  EXPECT_EQ(big.position(), small.position());
  LoaderOptions dp = packed(5, 2);
  dp.dp_rank = 1;
  dp.dp_size = 2;
  DataLoader r1(ds, dp);
  r1.set_position(big.position());
  const auto want = ints(small.next_batch().ids);
  EXPECT_EQ(ints(r1.next_batch().ids), std::vector<int64_t>(want.begin() + 5, want.end()));
}

TEST(LoaderPosition, SerialisesAndRejectsMismatches) {
  LoaderPosition p{3, 128, 42, 0x0123456789abcdefull};
  EXPECT_EQ(p.to_string(), "coil-loader-v1 epoch=3 sample=128 seed=42 data=0123456789abcdef");
  EXPECT_EQ(LoaderPosition::from_string(p.to_string()), p);
  EXPECT_EQ(LoaderPosition::from_map(p.to_map()), p);
  EXPECT_THROW(LoaderPosition::from_string("epoch=3"), Error);
  EXPECT_THROW(LoaderPosition::from_string("coil-loader-v1 epoch=x sample=0 seed=0 data=0"), Error);
  EXPECT_THROW(LoaderPosition::from_string("coil-loader-v1 epoch=1 sample=0 seed=0"), Error);
  EXPECT_THROW(LoaderPosition::from_string("coil-loader-v1 epoch=1 sample=0 seed=0 data=0 bogus=1"), Error);

  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  DataLoader a(ds, packed(5, 2, 1));
  a.next_batch();
  DataLoader other_seed(ds, packed(5, 2, 2)), other_len(ds, packed(6, 2, 1));
  EXPECT_THROW(other_seed.set_position(a.position()), Error);
  EXPECT_THROW(other_len.set_position(a.position()), Error);
}

TEST(Loader, RejectsBadOptions) {
  TempDir dir;
  const TokenDataset ds = datatest::numbered_dataset(dir.path(), kLengths);
  LoaderOptions o = packed(6, 3);
  o.dp_size = 2;
  EXPECT_THROW(DataLoader(ds, o), Error);  // 3 rows over 2 dp ranks
  o = packed(6, 2);
  o.sp_size = 4;
  EXPECT_THROW(DataLoader(ds, o), Error);  // 6 columns over 4 sp ranks
  o = packed(1000, 2);
  EXPECT_THROW(DataLoader(ds, o), Error);  // fewer windows than one batch
  o = packed(4, 17);
  o.mode = LoaderMode::Document;
  EXPECT_THROW(DataLoader(ds, o), Error);  // 16 documents < 17
  EXPECT_THROW(parse_loader_mode("pack"), Error);
}

TEST(SeededPermutation, IsAPermutationAndStable) {
  const auto p = seeded_permutation(1000, 5);
  std::vector<uint64_t> s = p;
  std::sort(s.begin(), s.end());
  for (uint64_t i = 0; i < 1000; ++i) ASSERT_EQ(s[i], i);
  EXPECT_EQ(p, seeded_permutation(1000, 5));
  EXPECT_NE(p, seeded_permutation(1000, 6));
  EXPECT_TRUE(seeded_permutation(0, 1).empty());
}

}  // namespace
}  // namespace coil
