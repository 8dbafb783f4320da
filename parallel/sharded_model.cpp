// ParallelLanguageModel: shard specs by parameter name, init by slicing the full model, the
// tensor-parallel block wiring (copy_to_group before each split half, reduce_from_group after), the
// vocab-parallel embedding and cross-entropy, and the layout validation.
#include "parallel/sharded_model.h"

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/autograd/recompute.h"
#include "core/ops.h"
#include "layers/attention.h"
#include "layers/linear_mixer.h"
#include "layers/mamba1.h"
#include "layers/mamba2.h"
#include "parallel/collectives.h"
#include "parallel/data_parallel.h"
#include "parallel/sequence.h"

namespace coil {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ShardSpec split_along(int64_t dim, std::vector<int64_t> widths, std::vector<bool> split = {}) {
  ShardSpec s;
  s.dim = dim;
  s.widths = std::move(widths);
  s.split = split.empty() ? std::vector<bool>(s.widths.size(), true) : std::move(split);
  return s;
}

}  // namespace

ParallelGroups ParallelGroups::of(const ProcessGrid& grid) {
  return ParallelGroups{grid.dp(), grid.tp(), grid.sp(), grid.dp_sp()};
}

bool ShardSpec::has_replicated_segment() const {
  for (size_t i = 0; i < split.size(); ++i)
    if (!split[i] && widths[i] > 0) return true;
  return false;
}

ShardSpec shard_spec(const std::string& name, const ModelConfig& c) {
  const int64_t I = c.n_heads * c.head_dim, V = c.vocab, F = c.mlp_hidden;
  if (name == "embedding.weight" || name == "lm_head.weight") return split_along(0, {V});
  if (ends_with(name, "mlp.gate.weight") || ends_with(name, "mlp.up.weight")) return split_along(0, {F});
  if (ends_with(name, "mlp.down.weight")) return split_along(1, {F});
  const auto pos = name.find(".mixer.");
  if (pos == std::string::npos) return ShardSpec{};  // norms: replicated
  const std::string p = name.substr(pos + 7);
  std::string kind = c.mixer;
  if (c.mixer == "hybrid") {
    // layers.<i>.mixer.*: the pattern's letter i says which mixer ('M' Mamba-2, '*' softmax).
    const size_t dot = name.find('.');
    const int64_t i = dot == std::string::npos ? -1 : std::stoll(name.substr(dot + 1, pos - dot - 1));
    COIL_CHECK(i >= 0 && i < int64_t(c.layer_pattern.size()), "tensor parallel: parameter '", name,
               "' names no layer of pattern '", c.layer_pattern, "'");
    kind = c.layer_pattern[size_t(i)] == 'M' ? "mamba2" : "softmax";
  }
  if (kind == "softmax" || kind == "linear") {
    const int64_t H = c.n_heads;
    if (p == "qkv.weight" || p == "conv.weight" || p == "conv.bias") return split_along(0, {I, I, I});
    if (p == "o.weight") return split_along(1, {I});
    if (p == "W_dt.weight" || p == "W_A.weight" || p == "A_log" || p == "D") return split_along(0, {H});
    if (p == "W_z.weight" || p == "W_z.bias" || p == "norm.weight") return split_along(0, {I});
  }
  if (kind == "mamba2") {
    const Mamba2Options& o = c.mamba2;
    const int64_t d_inner = o.expand * c.d_model;
    const int64_t d_ssm = o.n_ssm_heads > 0 ? o.n_ssm_heads * o.head_dim : d_inner;
    const int64_t d_mlp = d_inner - d_ssm, N = o.d_state, H = d_ssm / o.head_dim;
    if (p == "in_proj.weight")
      return split_along(0, {d_mlp, d_mlp, d_ssm, d_ssm, N, N, H},
                         {true, true, true, true, false, false, true});
    if (p == "conv_weight" || p == "conv_bias") return split_along(0, {d_ssm, N, N}, {true, false, false});
    if (p == "dt_bias" || p == "A_log" || p == "D") return split_along(0, {H});
    if (p == "norm_weight") return split_along(0, {d_ssm});
    if (p == "out_proj.weight") return split_along(1, {d_mlp, d_ssm});
  }
  if (kind == "mamba1") {
    // d_inner channels split: in_proj's x and z rows, conv, dt_proj's outputs, A_log, D (column-
    // parallel); x_proj and out_proj read d_inner (row-parallel: partial sums, see Mamba1::x_proj_sum).
    const int64_t d_inner = c.mamba1.expand * c.d_model;
    if (p == "in_proj.weight") return split_along(0, {d_inner, d_inner});
    if (p == "conv_weight" || p == "conv_bias" || p == "dt_proj.weight" || p == "dt_proj.bias" ||
        p == "A_log" || p == "D")
      return split_along(0, {d_inner});
    if (p == "x_proj.weight" || p == "out_proj.weight") return split_along(1, {d_inner});
  }
  COIL_FAIL("tensor parallel: no shard rule for parameter '", name, "' of mixer '", c.mixer, "'");
}

Tensor take_param_shard(const Tensor& full, const ShardSpec& s, int rank, int size) {
  if (s.replicated() || size == 1) return full.detach().clone();
  std::vector<Tensor> pieces;
  int64_t off = 0;
  for (size_t i = 0; i < s.widths.size(); ++i) {
    const int64_t w = s.widths[i];
    if (w == 0) continue;
    Tensor seg = full.detach().narrow(s.dim, off, w);
    pieces.push_back(s.split[i] ? seg.narrow(s.dim, rank * (w / size), w / size) : seg);
    off += w;
  }
  COIL_CHECK(off == full.size(s.dim), "take_param_shard: segments sum to ", off, ", tensor has ",
             full.size(s.dim), " along dim ", s.dim);
  return (pieces.size() == 1 ? pieces[0] : concat(pieces, s.dim)).contiguous().clone();
}

Tensor gather_param_shards(const Tensor& local, const ShardSpec& s, Communicator& tp) {
  if (s.replicated() || tp.size() == 1) return local.detach().clone();
  std::vector<Tensor> pieces;
  int64_t off = 0;
  for (size_t i = 0; i < s.widths.size(); ++i) {
    const int64_t w = s.widths[i];
    if (w == 0) continue;
    const int64_t lw = s.split[i] ? w / tp.size() : w;
    Tensor piece = local.detach().narrow(s.dim, off, lw).contiguous();
    pieces.push_back(s.split[i] ? all_gather_dim(tp, piece, s.dim) : piece);
    off += lw;
  }
  return (pieces.size() == 1 ? pieces[0] : concat(pieces, s.dim)).contiguous();
}

void validate_parallel_layout(const ModelConfig& c, const GridShape& g, int world_size,
                              int64_t seq_len, int64_t batch) {
  COIL_CHECK(g.dp >= 1 && g.tp >= 1 && g.sp >= 1, "parallel layout: dp, tp, sp must be >= 1, got dp=",
             g.dp, " tp=", g.tp, " sp=", g.sp);
  COIL_CHECK(g.world_size() == world_size, "parallel layout: dp * tp * sp = ", g.dp, " * ", g.tp, " * ",
             g.sp, " = ", g.world_size(), " does not match the ", world_size, " ranks launched");
  if (g.tp > 1) {
    COIL_CHECK(c.vocab % g.tp == 0, "parallel layout: vocab ", c.vocab, " does not divide by tp ", g.tp);
    COIL_CHECK(c.mlp_hidden % g.tp == 0, "parallel layout: mlp_hidden ", c.mlp_hidden,
               " does not divide by tp ", g.tp);
    const bool hybrid = c.mixer == "hybrid";
    const bool has_mamba2 = c.mixer == "mamba2" || (hybrid && c.layer_pattern.find('M') != std::string::npos);
    const bool has_heads = (c.mixer != "mamba2" && c.mixer != "mamba1" && !hybrid) ||
                           (hybrid && c.layer_pattern.find('*') != std::string::npos);
    if (c.mixer == "mamba1")
      COIL_CHECK((c.mamba1.expand * c.d_model) % g.tp == 0, "parallel layout: Mamba-1's d_inner = expand ",
                 c.mamba1.expand, " * d_model ", c.d_model, " does not divide by tp ", g.tp);
    if (has_mamba2) {
      const int64_t d_inner = c.mamba2.expand * c.d_model;
      const int64_t d_ssm = c.mamba2.n_ssm_heads > 0 ? c.mamba2.n_ssm_heads * c.mamba2.head_dim : d_inner;
      COIL_CHECK((d_ssm / c.mamba2.head_dim) % g.tp == 0 && (d_inner - d_ssm) % g.tp == 0,
                 "parallel layout: Mamba-2's ", d_ssm / c.mamba2.head_dim, " SSM heads (and gated branch of ",
                 d_inner - d_ssm, " channels) do not divide by tp ", g.tp);
    }
    if (has_heads)
      COIL_CHECK(c.n_heads % g.tp == 0, "parallel layout: n_heads ", c.n_heads, " does not divide by tp ",
                 g.tp);
  }
  if (g.sp > 1) {
    if (seq_len > 0) {
      COIL_CHECK(seq_len % g.sp == 0, "parallel layout: sequence length ", seq_len,
                 " does not divide by sp ", g.sp);
      int64_t halo = 0;
      if (c.mixer == "linear") halo = c.linear.conv_width - 1;
      if (c.mixer == "mamba2" || (c.mixer == "hybrid" && c.layer_pattern.find('M') != std::string::npos))
        halo = c.mamba2.d_conv - 1;
      if (c.mixer == "mamba1") halo = c.mamba1.d_conv - 1;
      COIL_CHECK(seq_len / g.sp >= halo, "parallel layout: sequence shards of ", seq_len / g.sp,
                 " tokens (length ", seq_len, " / sp ", g.sp, ") are shorter than the conv halo of ", halo);
    }
  }
  if (batch > 0)
    COIL_CHECK(batch % g.dp == 0, "parallel layout: batch ", batch, " does not divide by dp ", g.dp);
}

ParallelLanguageModel::ParallelLanguageModel(const ModelConfig& c, const ParallelGroups& groups,
                                             const ParallelOptions& popt, const ParamOptions& opt)
    : config_(c), local_config_(c), groups_(groups), popt_(popt) {
  COIL_CHECK(groups.dp && groups.tp && groups.sp && groups.dp_sp,
             "ParallelLanguageModel: every group (dp, tp, sp, dp_sp) must be given");
  COIL_CHECK(!popt.balanced_causal || (c.mixer == "softmax" && !popt.sequence_chain),
             "ParallelLanguageModel: the load-balanced causal split is implemented for softmax attention "
             "with the gather style only (mixer '", c.mixer, "'", popt.sequence_chain ? ", chain" : "", ")");
  COIL_CHECK(!popt.sequence_ring || (c.mixer == "softmax" && !popt.sequence_chain && !popt.balanced_causal),
             "ParallelLanguageModel: the K, V ring is implemented for softmax attention with the gather "
             "style and the contiguous split only (mixer '", c.mixer, "'",
             popt.sequence_chain ? ", chain" : "", popt.balanced_causal ? ", balanced" : "", ")");
  GridShape g;
  g.dp = groups.dp->size();
  g.tp = groups.tp->size();
  g.sp = groups.sp->size();
  validate_parallel_layout(c, g, g.world_size());
  const int tp = g.tp, tr = groups.tp->rank();
  local_config_.vocab = c.vocab / tp;
  local_config_.mlp_hidden = c.mlp_hidden / tp;
  if (c.mixer == "mamba2" || c.mixer == "hybrid") local_config_.mamba2.tp_shards = tp;
  if (c.mixer == "mamba1") local_config_.mamba1.tp_shards = tp;
  if (c.mixer != "mamba2" && c.mixer != "mamba1") local_config_.n_heads = c.n_heads / tp;
  local_ = std::make_shared<LanguageModel>(local_config_, opt);
  register_module("embedding", local_->embedding);
  register_module("layers", local_->layers);
  register_module("norm_f", local_->norm_f);
  register_module("lm_head", local_->lm_head);

  // The full model, drawn exactly as on one rank; each rank keeps its slices.
  const StateDict full = LanguageModel(c, opt).state_dict();
  for (const auto& [name, p] : named_parameters()) {
    const ShardSpec s = tp > 1 ? shard_spec(name, c) : ShardSpec{};
    specs_[name] = s;
    Tensor piece = take_param_shard(full.at(name), s, tr, tp);
    COIL_CHECK(piece.shape() == p.shape(), "ParallelLanguageModel: slice of '", name, "' is ",
               shape_str(piece.shape()), ", the local parameter ", shape_str(p.shape()));
    p.detach().copy_(piece);
  }
  // The output norm over H*D of a head-sharded linear mixer needs the global sum of squares.
  if (tp > 1)
    for (size_t i = 0; i < local_->num_blocks(); ++i)
      if (auto* lm = dynamic_cast<LinearAttentionMixer*>(local_->block(i).mixer.get()); lm && lm->norm) {
        CommPtr tpg = groups.tp;
        lm->norm->sum_across = [tpg](const Tensor& t) { return sum_over_group(t, tpg); };
        lm->norm->parts = tp;
      }
  // Mamba-1's row-parallel x_proj leaves partial [dt_low | B | C]: summed over tp forward, and its
  // gradient (each rank's channels' share) summed backward.
  if (tp > 1)
    for (size_t i = 0; i < local_->num_blocks(); ++i)
      if (auto* m1 = dynamic_cast<Mamba1*>(local_->block(i).mixer.get())) {
        CommPtr tpg = groups.tp;
        m1->x_proj_sum = [tpg](const Tensor& t) { return sum_over_group(t, tpg); };
      }
}

const ShardSpec& ParallelLanguageModel::spec(const std::string& name) const {
  auto it = specs_.find(name);
  COIL_CHECK(it != specs_.end(), "ParallelLanguageModel: no parameter named '", name, "'");
  return it->second;
}

Tensor ParallelLanguageModel::embed(const Tensor& ids) const {
  const CommPtr& tp = groups_.tp;
  if (tp->size() == 1) return local_->embedding->forward(ids);
  // Vocab-parallel: ids outside this rank's rows look up row 0 and are zeroed; the sum over tp
  // leaves each token its own row.
  const int64_t Vl = local_config_.vocab, off = tp->rank() * Vl;
  std::vector<int64_t> v = ids.to_ints(), local(v.size());
  std::vector<double> mask(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const bool mine = v[i] >= off && v[i] < off + Vl;
    local[i] = mine ? v[i] - off : 0;
    mask[i] = mine ? 1.0 : 0.0;
  }
  Shape mshape = ids.shape();
  mshape.push_back(1);
  Tensor lids = Tensor::from_ints(local, ids.shape(), ids.dtype()).to(ids.device());
  const Tensor& w = local_->embedding->weight;
  // The mask in the lookup's dtype: an f32 mask (the master weights' dtype) would promote a bf16
  // lookup, and with it the whole residual stream, to f32.
  Tensor e = embedding(w, lids);
  e = e * Tensor::from_vector(mask, mshape, e.dtype(), e.device());
  return reduce_from_group(e, tp);
}

namespace {

// One layer's body on this rank's shard: the input x, and under the chain the state the earlier
// shards left (`in`) and where to put the one this shard leaves (`out`, null on the last rank); null
// both when the mixer gets its context through its sequence hooks (or sp = 1, or no mixer).
using LayerBody = std::function<Tensor(const Tensor& x, const MixerState* in, MixerState* out)>;

// The entry names and dtypes of a region's outgoing chain state, fixed by the region's first run
// (the forward): the replay in backward must hand back the same outputs in the same order.
struct StateLayout {
  bool fixed = false;
  std::vector<std::string> names;
  std::vector<DType> dtypes;
};

// One layer x -> body(x), with or without recompute, with or without the chain.
//
// Recompute (core/autograd/recompute.h): the body runs without a graph and again, with one, in
// backward, so between forward and backward a layer keeps only its input (and, under the chain, the
// state it received; the one it sent is rebuilt by the replay). The body may hold collectives (tp's
// copy_to_group / reduce_from_group, the gather style's all-gather, previous-tail halo and softmax K,
// V ring): a replay repeats them, which is sound because every rank of a group replays the same layer
// at the same point of backward.
// The engine (core/autograd/engine.cpp) runs a node only once every gradient it waits for arrived,
// and a layer's RecomputeBackward waits for the gradient of its output, which only the next layer's
// region (or, past the last one, the head) produces: so on every rank the regions replay strictly
// from the last layer down, each one's nested backward running to its end inside its node, with
// nothing but the chain's point-to-point messages between two regions. Outside the regions the
// backward holds no collective of the sp or tp group but the head's (copy_to_group before lm_head,
// before the first replay), and each region's nested graph has the same shape on every rank of its
// groups (the mixers' sharded paths make the same calls on every rank; see SequenceShardHooks), so
// its collectives come in the same order everywhere. DataParallel's bucket all-reduces start from the
// parameters' accumulation hooks, which the nested passes fire in the same order on every dp rank.
//
// The chain cannot be replayed (rank r - 1 would have to send again), so chain_receive and
// chain_send stay outside the region: the received state's tensors are inputs of the region, the
// outgoing state's tensors its outputs, and their gradients travel by the chain's own backward.
// The mixer and the MLP share one region: two would keep the residual h between them too. Without
// recompute the chain wraps the layer the same way (chain_send on the layer's output, not the
// mixer's: the state is sent once the layer is done, which changes no value).
Tensor run_layer(const LayerBody& body, const Tensor& x, bool chained, bool recompute, const CommPtr& sp) {
  if (!chained) {
    if (!recompute) return body(x, nullptr, nullptr);
    return coil::recompute(
        [body](const std::vector<Tensor>& in) { return std::vector<Tensor>{body(in[0], nullptr, nullptr)}; },
        {x})[0];
  }
  const bool last = sp->rank() == sp->size() - 1;
  MixerState in, out;
  Tensor xin = chain_receive(x, sp, &in);
  if (!recompute) return chain_send(body(xin, &in, last ? nullptr : &out), out, sp);
  std::vector<std::string> in_names;
  std::vector<Tensor> inputs{xin};
  for (const auto& [name, t] : in.entries) {
    in_names.push_back(name);
    inputs.push_back(t);
  }
  auto layout = std::make_shared<StateLayout>();
  auto fn = [body, in_names, last, layout](const std::vector<Tensor>& v) {
    MixerState sin, sout;
    for (size_t i = 0; i < in_names.size(); ++i) sin.set(in_names[i], v[i + 1]);
    std::vector<Tensor> outs{body(v[0], &sin, last ? nullptr : &sout)};
    if (!layout->fixed) {
      for (const auto& [name, t] : sout.entries) {
        layout->names.push_back(name);
        layout->dtypes.push_back(t.dtype());
      }
      layout->fixed = true;
    }
    COIL_CHECK(sout.entries.size() == layout->names.size(), "sequence chain with recompute: the replay left ",
               sout.entries.size(), " state entries, the forward ", layout->names.size());
    for (size_t i = 0; i < layout->names.size(); ++i) {
      Tensor t = sout.get(layout->names[i]);
      COIL_CHECK(t.dtype() == layout->dtypes[i], "sequence chain with recompute: state entry '",
                 layout->names[i], "' is ", t.dtype(), " in the replay, ", layout->dtypes[i], " in the forward");
      outs.push_back(t);
    }
    return outs;
  };
  std::vector<Tensor> r = coil::recompute(fn, inputs);
  for (size_t i = 0; i < layout->names.size(); ++i) out.set(layout->names[i], r[i + 1]);
  return chain_send(r[0], out, sp);
}

}  // namespace

Tensor ParallelLanguageModel::forward(const Tensor& ids) const {
  COIL_CHECK(ids.dim() == 2, "ParallelLanguageModel: expected ids (B, T), got ", ids.describe());
  const CommPtr &tp = groups_.tp, &sp = groups_.sp;
  const int64_t T = ids.size(1);
  const bool chain = sp->size() > 1 && (popt_.sequence_chain || config_.mixer == "mamba1");
  if (sp->size() > 1 && !chain && hooks_len_ != T) {
    auto hooks = make_sequence_hooks(sp, T, popt_.balanced_causal, popt_.sequence_ring);
    for (size_t i = 0; i < local_->num_blocks(); ++i) local_->block(i).mixer->sequence_shard = hooks;
    for (size_t i = 0; i < local_->num_hybrid_layers(); ++i)
      if (const auto& m = local_->hybrid_layer(i).mixer) m->sequence_shard = hooks;
    hooks_len_ = T;
  }
  // Recompute only pays off when a graph is being recorded (as in Block::forward).
  const bool recompute = config_.recompute && GradMode::is_enabled();
  // The mixer on its input h: the chained state when given, else forward (the gather style's hooks).
  auto mix = [](const Mixer& m, const Tensor& h, const MixerState* in, MixerState* out) {
    return in ? m.forward_stateful(h, *in, out) : m.forward(h);
  };
  Tensor x = embed(ids);  // (B, T, C), replicated over tp
  for (size_t i = 0; i < local_->num_blocks(); ++i) {
    const Block* b = &local_->block(i);
    // The single model's wiring (Block::forward_impl): h = x + mixer(norm1(x)) and norm2(h) in the
    // fused op, the residual stream in the embedding's dtype (bf16 under autocast).
    LayerBody body = [b, tp, mix](const Tensor& xb, const MixerState* in, MixerState* out) {
      Tensor m = mix(*b->mixer, copy_to_group(b->norm1->forward(xb), tp), in, out);
      auto [h, n] = b->norm2->forward_add(xb, reduce_from_group(m, tp));
      return h + reduce_from_group(b->mlp->forward(copy_to_group(n, tp)), tp);
    };
    x = run_layer(body, x, chain, recompute, sp);
  }
  // Hybrid: each layer is x + f(RMSNorm(x)) with f a mixer (sharded like the blocks' mixers) or a
  // SwiGLU MLP (split like the blocks' MLPs); recompute and the chain as for the blocks (an MLP
  // layer has no state to pass).
  for (size_t i = 0; i < local_->num_hybrid_layers(); ++i) {
    const HybridLayer* l = &local_->hybrid_layer(i);
    LayerBody body = [l, tp, mix](const Tensor& xl, const MixerState* in, MixerState* out) {
      Tensor h = copy_to_group(l->norm->forward(xl), tp);
      Tensor f = l->mixer ? mix(*l->mixer, h, in, out) : l->mlp->forward(h);
      return xl + reduce_from_group(f, tp);
    };
    x = run_layer(body, x, chain && l->mixer != nullptr, recompute, sp);
  }
  return local_->lm_head->forward(copy_to_group(local_->norm_f->forward(x), tp));  // (B, T, V/tp)
}

Tensor ParallelLanguageModel::loss(const Tensor& ids, const Tensor& targets, int64_t ignore_index) const {
  COIL_CHECK(targets.shape() == ids.shape(), "ParallelLanguageModel::loss: targets ", targets.describe(),
             " must have the shape of ids ", ids.describe());
  const CommPtr& tp = groups_.tp;
  Tensor logits = forward(ids);  // (B, T, Vl)
  const std::vector<int64_t> t = targets.to_ints();
  double n_local = 0;
  for (int64_t v : t) n_local += v != ignore_index ? 1.0 : 0.0;
  const double n_global = reduce_values(*groups_.dp_sp, {n_local})[0];
  COIL_CHECK(n_global > 0, "ParallelLanguageModel::loss: every target is ignore_index ", ignore_index);
  Tensor local_sum;
  if (tp->size() == 1) {
    local_sum = n_local > 0 ? scale(cross_entropy(logits, targets, ignore_index), n_local)
                            : scale(sum(logits), 0.0);
  } else {
    // Vocab-parallel cross-entropy: global max (a constant), global sum of exp, the target's logit
    // from the rank that holds it.
    const int64_t Vl = local_config_.vocab, off = tp->rank() * Vl;
    Tensor mx = all_reduced(*tp, max(logits.detach(), -1, true).contiguous(), ReduceOp::Max);
    Tensor sh = logits - mx;                                            // (B, T, Vl)
    Tensor se = reduce_from_group(sum(exp(sh), -1), tp);                // (B, T)
    // The target's shifted logit: a row lookup into the flattened (B*T*Vl, 1) logits (rows whose
    // target another rank holds read entry 0 and are masked), so nothing of size B*T*V is built.
    COIL_CHECK(int64_t(t.size()) * Vl < (int64_t(1) << 31), "vocab-parallel cross-entropy: B*T*V/tp = ",
               int64_t(t.size()) * Vl, " logits exceed the i32 row index of the lookup; use a smaller micro-batch");
    std::vector<int64_t> idx(t.size(), 0);
    std::vector<double> mine(t.size(), 0.0), valid(t.size(), 0.0);
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i] == ignore_index) continue;
      valid[i] = 1.0;
      if (t[i] >= off && t[i] < off + Vl) {
        idx[i] = int64_t(i) * Vl + (t[i] - off);
        mine[i] = 1.0;
      }
    }
    const Device dev = logits.device();
    Tensor rows = sh.reshape({sh.numel(), 1});
    Tensor picked = embedding(rows, Tensor::from_ints(idx, targets.shape(), DType::I32).to(dev));  // (B, T, 1)
    Tensor pm = Tensor::from_vector(mine, targets.shape(), logits.dtype(), dev);
    Tensor tl = reduce_from_group(picked.squeeze(-1) * pm, tp);            // (B, T)
    Tensor vm = Tensor::from_vector(valid, targets.shape(), logits.dtype(), dev);
    local_sum = sum((log(se) - tl) * vm);
  }
  return scale(reduce_from_group(local_sum, groups_.dp_sp), 1.0 / n_global);
}

void ParallelLanguageModel::finish_tp_grads() const {
  Communicator& tp = *groups_.tp;
  if (tp.size() == 1) return;
  for (const auto& [name, p] : named_parameters()) {
    const ShardSpec& s = spec(name);
    if (!s.has_replicated_segment() || !p.grad().defined()) continue;
    Tensor g = p.grad();
    int64_t off = 0;
    for (size_t i = 0; i < s.widths.size(); ++i) {
      const int64_t lw = s.split[i] ? s.widths[i] / tp.size() : s.widths[i];
      if (!s.split[i] && lw > 0) {
        Tensor part = g.narrow(s.dim, off, lw);
        Tensor summed = all_reduced(tp, part.contiguous(), ReduceOp::Sum);
        part.copy_(summed);
      }
      off += lw;
    }
  }
}

double ParallelLanguageModel::global_grad_norm() const {
  Communicator& tp = *groups_.tp;
  const bool lead = tp.rank() == 0;  // counts what every tp rank holds a copy of
  // The counted gradients (or shard parts) go through one sum_squares_multi per device and dtype,
  // read back once each (not one host read per tensor); their sums are added in parameter order.
  std::vector<std::vector<Tensor>> groups;
  std::vector<std::pair<size_t, size_t>> order;  // (group, index in it) of each counted tensor
  auto count = [&](const Tensor& t) {
    size_t gi = 0;
    while (gi < groups.size() && !(groups[gi][0].device() == t.device() && groups[gi][0].dtype() == t.dtype()))
      ++gi;
    if (gi == groups.size()) groups.emplace_back();
    order.emplace_back(gi, groups[gi].size());
    groups[gi].push_back(t);
  };
  for (const auto& [name, p] : named_parameters()) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    const ShardSpec& s = spec(name);
    if (s.replicated() || tp.size() == 1) {
      if (lead || tp.size() == 1) count(g);
      continue;
    }
    int64_t off = 0;
    for (size_t i = 0; i < s.widths.size(); ++i) {
      const int64_t lw = s.split[i] ? s.widths[i] / tp.size() : s.widths[i];
      if (lw > 0 && (s.split[i] || lead)) count(g.narrow(s.dim, off, lw).contiguous());
      off += lw;
    }
  }
  std::vector<std::vector<double>> sums;
  for (const std::vector<Tensor>& ts : groups)
    sums.push_back(sum_squares_multi(ts).to(Device::cpu()).to(DType::F64).to_vector());
  double ss = 0;
  for (const auto& [gi, i] : order) ss += sums[gi][i];
  return std::sqrt(reduce_values(tp, {ss})[0]);
}

Tensor ParallelLanguageModel::local_batch(const Tensor& global) const {
  const int dp = groups_.dp->size(), sp = groups_.sp->size();
  COIL_CHECK(global.dim() >= 2 && global.size(0) % dp == 0 && global.size(1) % sp == 0,
             "ParallelLanguageModel::local_batch: ", global.describe(), " does not split into dp ", dp,
             " x sp ", sp, " blocks");
  const int64_t Bl = global.size(0) / dp, Tl = global.size(1) / sp;
  Tensor rows = global.narrow(0, groups_.dp->rank() * Bl, Bl);
  if (popt_.balanced_causal && sp > 1) {
    COIL_CHECK(global.size(1) % (2 * sp) == 0, "ParallelLanguageModel::local_batch: the balanced split needs ",
               "the sequence length ", global.size(1), " to divide by 2 sp = ", 2 * sp);
    const int64_t L = Tl / 2, r = groups_.sp->rank();
    Tensor a = rows.narrow(1, r * L, L).contiguous(), b = rows.narrow(1, (2 * sp - 1 - r) * L, L).contiguous();
    if (rows.dtype() != DType::I32 && rows.dtype() != DType::I64) return concat({a, b}, 1).contiguous();
    // Token ids: joined on the host (concat is a floating-point op).
    const std::vector<int64_t> va = a.to_ints(), vb = b.to_ints();
    const int64_t inner = a.numel() / (Bl * L);  // elements per token (1 for ids)
    std::vector<int64_t> out;
    for (int64_t i = 0; i < Bl; ++i) {
      out.insert(out.end(), va.begin() + i * L * inner, va.begin() + (i + 1) * L * inner);
      out.insert(out.end(), vb.begin() + i * L * inner, vb.begin() + (i + 1) * L * inner);
    }
    Shape shape = a.shape();
    shape[1] = 2 * L;
    return Tensor::from_ints(out, shape, rows.dtype(), rows.device());
  }
  return rows.narrow(1, groups_.sp->rank() * Tl, Tl).contiguous();
}

Tensor ParallelLanguageModel::local_logits(const Tensor& global) const {
  const int64_t Vl = local_config_.vocab;
  return local_batch(global).narrow(2, groups_.tp->rank() * Vl, Vl).contiguous();
}

}  // namespace coil
