// coil_comm_volume: what a dp / tp / sp layout communicates, measured in the communicator wrappers
// (parallel/counting_communicator.h), and the peak activation memory per rank of sequence parallel.
//   mpirun -np 2 coil_comm_volume             bytes per layer per step, each tiny mixer, tp / sp
//                                             chain / sp gather, three sequence lengths
//   mpirun -np N coil_comm_volume --memory    peak activation bytes per rank with sp = N (T = 512;
//                                             softmax-ring: softmax with the K, V ring)
// Per layer = the count of a 2-layer model minus that of a 1-layer model (embedding, loss and
// metric reductions cancel). Numbers are rank 0's: the bytes it passes to sends / receives and
// collectives (all_gather: the gathered output), forward and backward separately.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/random.h"
#include "layers/linear_mixer.h"
#include "layers/mamba2.h"
#include "parallel/counting_communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/sharded_model.h"

namespace coil {
namespace {

ModelConfig tiny(const std::string& name) {
  ModelConfig c;
  c.vocab = 256;
  c.d_model = 64;
  c.n_heads = 4;
  c.head_dim = 16;
  c.mlp_hidden = 128;
  c.n_layers = 2;
  if (name == "softmax") {
    c.mixer = "softmax";
  } else if (name == "mamba2") {
    c.mixer = "mamba2";
    c.mamba2 = mamba2_preset("mamba2");
    c.mamba2.head_dim = 16;
    c.mamba2.d_state = 16;
  } else {
    c.mixer = "linear";
    c.linear = linear_preset(name);
  }
  c.linear.chunk_size = 16;
  c.mamba2.chunk_size = 16;
  return c;
}

Tensor ids_of(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(size_t(B * T));
  for (auto& x : v) x = int64_t(g.next_uniform() * double(V)) % V;
  return Tensor::from_ints(v, {B, T});
}

struct Volume {
  int64_t fwd = 0, bwd = 0;
};

Volume measure(const CommPtr& world, ModelConfig c, const GridShape& s, bool chain, int64_t B, int64_t T) {
  auto counting = std::make_shared<CountingCommunicator>(world);
  ProcessGrid grid(counting, s);
  ParallelOptions po;
  po.sequence_chain = chain;
  ParallelLanguageModel model(c, ParallelGroups::of(grid), po);
  Tensor ids = ids_of(B, T, c.vocab, 1), tgt = ids_of(B, T, c.vocab, 2);
  counting->reset();
  Tensor loss = model.loss(model.local_batch(ids), model.local_batch(tgt));
  Volume v;
  v.fwd = counting->counters().total_bytes();
  loss.backward();
  v.bwd = counting->counters().total_bytes() - v.fwd;
  return v;
}

// Values of inter-shard state per sequence per layer the spec's table names (linear mixers).
int64_t state_values(const ModelConfig& c) {
  Generator g(0);
  if (c.mixer == "linear" && c.linear.power != "exp")
    return LinearAttentionMixer(c, g).decode_state_values(0);
  if (c.mixer == "mamba2") return Mamba2(c.d_model, c.mamba2, g).decode_state_values(0);
  return -1;
}

void volumes(const CommPtr& world) {
  const int n = world->size();
  const int64_t B = 1;
  if (world->rank() == 0)
    std::printf("# bytes per layer per step on rank 0 of %d ranks (fp32, batch %ld, tiny mixers: d 64, 4 heads of 16)\n"
                "%-9s %-10s %6s %12s %12s %14s\n",
                n, long(B), "mixer", "layout", "T", "fwd_bytes", "bwd_bytes", "state_bytes");
  for (const std::string name : {"softmax", "2mamba", "2mamba-e", "mamba2s", "mamba2"}) {
    for (int mode = 0; mode < 3; ++mode) {
      GridShape s;
      (mode == 0 ? s.tp : s.sp) = n;
      const char* label = mode == 0 ? "tp" : mode == 1 ? "sp-chain" : "sp-gather";
      for (int64_t T : {64, 128, 256}) {
        ModelConfig c2 = tiny(name), c1 = c2;
        c1.n_layers = 1;
        const Volume v2 = measure(world, c2, s, mode == 1, B, T), v1 = measure(world, c1, s, mode == 1, B, T);
        const int64_t sv = state_values(c2);
        if (world->rank() == 0)
          std::printf("%-9s %-10s %6ld %12ld %12ld %14s\n", name.c_str(),
                      (std::string(label) + std::to_string(n)).c_str(), long(T), long(v2.fwd - v1.fwd),
                      long(v2.bwd - v1.bwd), sv > 0 ? std::to_string(sv * 4 * B).c_str() : "-");
      }
    }
  }
}

void memory(const CommPtr& world) {
  const int n = world->size();
  for (const std::string name : {"softmax", "softmax-ring", "2mamba-e", "2mamba", "mamba2"}) {
    const bool ring = name == "softmax-ring";  // the K, V ring instead of the all-gather
    ModelConfig c = tiny(ring ? "softmax" : name);
    GridShape s;
    s.sp = n;
    ProcessGrid grid(world, s);
    ParallelOptions po;
    po.sequence_ring = ring;
    ParallelLanguageModel model(c, ParallelGroups::of(grid), po);
    const int64_t T = 512;
    Tensor ids = ids_of(1, T, c.vocab, 1), tgt = ids_of(1, T, c.vocab, 2);
    Tensor li = model.local_batch(ids), lt = model.local_batch(tgt);
    Allocator& a = allocator_for(DeviceType::CPU);
    const int64_t before = a.stats(0).current_bytes;
    a.reset_peak(0);
    model.loss(li, lt).backward();
    const double peak = double(a.stats(0).peak_bytes - before);
    std::vector<double> all(size_t(n), 0.0);
    Tensor mine = Tensor::from_vector({peak}, {1}, DType::F64);
    Tensor gathered = Tensor::zeros({n}, DType::F64);
    world->all_gather(mine, gathered);
    if (world->rank() == 0) {
      double mx = 0;
      for (double x : gathered.to_vector()) mx = std::max(mx, x);
      std::printf("%-12s sp=%d T=%ld: peak activation bytes per rank (max over ranks) %.0f\n", name.c_str(), n,
                  long(T), mx);
    }
  }
}

}  // namespace
}  // namespace coil

int main(int argc, char** argv) {
  coil::MpiRuntime mpi(&argc, &argv);
  try {
    const bool mem = argc > 1 && std::strcmp(argv[1], "--memory") == 0;
    if (mem) coil::memory(mpi.world());
    else coil::volumes(mpi.world());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coil_comm_volume: %s\n", e.what());
    return 1;
  }
  return 0;
}
