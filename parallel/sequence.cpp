// Sequence parallel: the point-to-point autograd ops of the chain and the conv halo, and the
// callbacks of the gather style. Point-to-point order: forward messages flow up the ranks (each rank
// receives from rank - 1 before it sends to rank + 1), backward messages flow down, so blocking sends
// never wait on each other.
#include "parallel/sequence.h"

#include <string>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops.h"
#include "parallel/collectives.h"

namespace coil {

namespace {
constexpr int kTagTailFwd = 301, kTagTailBwd = 302, kTagChainFwd = 303, kTagChainBwd = 304;

// State metadata: number of entries, then per entry the name's length, its characters, the dtype,
// the rank and the sizes; sent as its length and then itself. The dtype travels because a state's
// entries need not share the activations' (under bf16 autocast the scan state S, z stays f32 next to
// a bf16 conv carry), and a receive buffer of the wrong width would not match the send.
struct StateEntryMeta {
  std::string name;
  DType dtype;
  Shape shape;
};

Tensor encode_meta(const MixerState& s) {
  std::vector<int64_t> m{int64_t(s.entries.size())};
  for (const auto& [name, t] : s.entries) {
    m.push_back(int64_t(name.size()));
    for (char ch : name) m.push_back(int64_t(ch));
    m.push_back(int64_t(t.dtype()));
    m.push_back(t.dim());
    for (int64_t d : t.shape()) m.push_back(d);
  }
  return Tensor::from_ints(m, {int64_t(m.size())}, DType::I64);
}

std::vector<StateEntryMeta> decode_meta(const std::vector<int64_t>& m) {
  std::vector<StateEntryMeta> out;
  size_t i = 0;
  const int64_t n = m.at(i++);
  for (int64_t e = 0; e < n; ++e) {
    StateEntryMeta entry;
    const int64_t len = m.at(i++);
    for (int64_t c = 0; c < len; ++c) entry.name.push_back(char(m.at(i++)));
    entry.dtype = DType(m.at(i++));
    entry.shape.resize(size_t(m.at(i++)));
    for (auto& d : entry.shape) d = m.at(i++);
    out.push_back(std::move(entry));
  }
  return out;
}
}  // namespace

Tensor sp_previous_tail(const Tensor& tail, const CommPtr& sp) {
  const int r = sp->rank(), S = sp->size();
  Tensor t = tail.detach().contiguous();
  Tensor prev = Tensor::zeros(t.shape(), t.dtype(), t.device());
  if (S == 1) return prev;
  if (r > 0) sp->recv(prev, r - 1, kTagTailFwd);
  if (r < S - 1) sp->send(t, r + 1, kTagTailFwd);
  record("sp_previous_tail", {tail}, {prev},
         [sp, r, S](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
           Tensor d = Tensor::zeros(g[0].shape(), g[0].dtype(), g[0].device());
           if (r < S - 1) sp->recv(d, r + 1, kTagTailBwd);
           if (r > 0) sp->send(g[0].contiguous(), r - 1, kTagTailBwd);
           return std::vector<Tensor>{d};
         });
  return prev;
}

std::vector<std::vector<Tensor>> sp_all_gather(const std::vector<Tensor>& parts, const Tensor& anchor,
                                               Tensor* anchor_out, const CommPtr& sp) {
  const int S = sp->size();
  std::vector<Tensor> flat_parts;
  std::vector<int64_t> sizes;
  for (const Tensor& p : parts) {
    flat_parts.push_back(p.contiguous().reshape({p.numel()}));
    sizes.push_back(p.numel());
  }
  Tensor flat = flat_parts.size() == 1 ? flat_parts[0] : concat(flat_parts, 0);  // (n)
  const int64_t n = flat.numel();
  Tensor gathered = Tensor::zeros({int64_t(S) * n}, flat.dtype(), flat.device());
  sp->all_gather(flat.detach().contiguous(), gathered);
  Tensor a_out = anchor.detach();
  const bool recorded = record(
      "sp_all_gather", {anchor, flat}, {a_out, gathered},
      [sp, n](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
        Tensor d = Tensor::zeros({n}, g[1].dtype(), g[1].device());
        sp->reduce_scatter(g[1].contiguous(), d, ReduceOp::Sum);
        return std::vector<Tensor>{g[0], d};
      });
  *anchor_out = recorded ? a_out : anchor;
  std::vector<std::vector<Tensor>> out(static_cast<size_t>(S));
  for (int j = 0; j < S; ++j) {
    int64_t off = int64_t(j) * n;
    for (size_t i = 0; i < parts.size(); ++i) {
      out[size_t(j)].push_back(gathered.narrow(0, off, sizes[i]).reshape(parts[i].shape()));
      off += sizes[i];
    }
  }
  return out;
}

std::shared_ptr<const SequenceShardHooks> make_sequence_hooks(const CommPtr& sp, int64_t shard_len,
                                                              bool balanced, bool ring) {
  auto h = std::make_shared<SequenceShardHooks>();
  h->balanced = balanced;
  h->ring = ring;
  h->rank = sp->rank();
  h->size = sp->size();
  h->offset = int64_t(sp->rank()) * shard_len;
  h->all_gather = [sp](const std::vector<Tensor>& parts, const Tensor& anchor, Tensor* anchor_out) {
    return sp_all_gather(parts, anchor, anchor_out, sp);
  };
  h->previous_tail = [sp](const Tensor& tail) { return sp_previous_tail(tail, sp); };
  return h;
}

Tensor chain_receive(const Tensor& x, const CommPtr& sp, MixerState* state) {
  state->entries.clear();
  const int r = sp->rank();
  if (r == 0) return x;
  Tensor len = Tensor::zeros({1}, DType::I64);
  sp->recv(len, r - 1, kTagChainFwd);
  Tensor meta = Tensor::zeros({int64_t(len.item())}, DType::I64);
  sp->recv(meta, r - 1, kTagChainFwd);
  const std::vector<StateEntryMeta> entries = decode_meta(meta.to_ints());
  std::vector<Tensor> outs{x.detach()};
  for (const StateEntryMeta& e : entries) {
    Tensor t = Tensor::zeros(e.shape, e.dtype, x.device());
    sp->recv(t, r - 1, kTagChainFwd);
    outs.push_back(t);
  }
  const bool recorded =
      record("sp_chain_receive", {x}, outs, [sp, r, entries](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
        // In the dtype rank - 1 posted its receive for (the state entry's own).
        for (size_t i = 1; i < g.size(); ++i) sp->send(g[i].to(entries[i - 1].dtype).contiguous(), r - 1, kTagChainBwd);
        return std::vector<Tensor>{g[0]};
      });
  for (size_t i = 0; i < entries.size(); ++i) state->set(entries[i].name, outs[i + 1]);
  return recorded ? outs[0] : x;
}

Tensor chain_send(const Tensor& y, const MixerState& state, const CommPtr& sp) {
  const int r = sp->rank(), S = sp->size();
  if (r == S - 1) return y;
  Tensor meta = encode_meta(state);
  sp->send(Tensor::from_ints({meta.numel()}, {1}, DType::I64), r + 1, kTagChainFwd);
  sp->send(meta, r + 1, kTagChainFwd);
  std::vector<Tensor> ins{y};
  std::vector<std::pair<Shape, DType>> shapes;  // each entry's gradient comes back in its dtype
  for (const auto& [name, t] : state.entries) {
    sp->send(t.detach().contiguous(), r + 1, kTagChainFwd);
    ins.push_back(t);
    shapes.emplace_back(t.shape(), t.dtype());
  }
  Tensor out = y.detach();
  const Device dev = y.device();
  if (!record("sp_chain_send", ins, {out},
              [sp, r, shapes, dev](const std::vector<Tensor>& g, const std::vector<Tensor>&) {
                std::vector<Tensor> d{g[0]};
                for (const auto& [s, dt] : shapes) {
                  Tensor t = Tensor::zeros(s, dt, dev);
                  sp->recv(t, r + 1, kTagChainBwd);
                  d.push_back(t);
                }
                return d;
              }))
    return y;
  return out;
}

Tensor sequence_parallel_mixer(const Mixer& mixer, const Tensor& x, const CommPtr& sp, bool chain) {
  if (sp->size() == 1 || !chain) return mixer.forward(x);
  MixerState in, out;
  Tensor xin = chain_receive(x, sp, &in);
  Tensor y = mixer.forward_stateful(xin, in, sp->rank() == sp->size() - 1 ? nullptr : &out);
  return chain_send(y, out, sp);
}

}  // namespace coil
