// prefix_attention: without a decay cumsum, the fused attention op (core/ops.h attention()). With one
// (2Mamba-E's decayed scores, which the fused op does not take), flash-attention style in blocks of
// queries x keys with an online softmax (running row max m, sum l, accumulator), so no (Tq, Tk) score
// tensor exists; one autograd node that keeps only q, k, v, the output and the row log-sum-exp, and
// recomputes each block's scores in backward. The blocks run on the tensor ops (any device) in f32
// (f64 for f64 inputs) with autocast off, forward and backward: the running max / sum / output need
// the precision, and the backward's mixed inputs (a bf16 q next to an f32 incoming gradient) one
// dtype. The output and the gradients come back in the inputs' dtypes.
#include "layers/prefix_attention.h"

#include <algorithm>
#include <vector>

#include "core/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops.h"

namespace coil {
namespace {

// Queries per block; keys per block kBlock^2 / (queries per block): the largest transient is a few
// (B, H, .., ..) score blocks of kBlock^2 entries (one decode step takes up to 16,384 keys at once).
// Larger blocks mean fewer ops (on a GPU, fewer launches), smaller ones a smaller transient.
constexpr int64_t kBlock = 128;
// Additive mask of invisible keys: a large negative number (not -inf) keeps exp() at exactly 0
// without NaNs (every query row sees key 0, so no row is masked out entirely).
constexpr double kMasked = -1e30;

struct Blocks {
  // (B, H, T, D) views of the inputs, the scale, and the (B, H, T, 1) decay cumsums or undefined.
  Tensor q, k, v, acs_q, acs_k;
  double scale = 1;
  int64_t Tq = 0, Tk = 0, P = 0, kb = kBlock;  // kb: keys per block
  bool causal = true;

  // Key block [j0, j0 + nj) is visible to some query of block [i0, i0 + ni) iff j0 <= P + i0 + ni - 1.
  bool visible(int64_t i0, int64_t ni, int64_t j0) const { return !causal || j0 <= P + i0 + ni - 1; }

  // Scores of query block [i0, i0 + ni) against key block [j0, j0 + nj): (B, H, ni, nj), masked where
  // key j > P + i.
  Tensor scores(int64_t i0, int64_t ni, int64_t j0, int64_t nj) const {
    Tensor s = scale_op(matmul(q.narrow(2, i0, ni), k.narrow(2, j0, nj).transpose(-1, -2)));
    if (acs_q.defined())
      s = s + acs_q.narrow(2, i0, ni) - acs_k.narrow(2, j0, nj).transpose(-1, -2);
    if (causal && j0 + nj - 1 > P + i0) {  // the block reaches past some query's last visible key
      std::vector<double> mask(size_t(ni * nj), 0.0);
      for (int64_t i = 0; i < ni; ++i)
        for (int64_t j = std::max<int64_t>(0, P + i0 + i + 1 - j0); j < nj; ++j)
          mask[size_t(i * nj + j)] = kMasked;
      s = s + Tensor::from_vector(mask, {ni, nj}, q.dtype(), q.device());
    }
    return s;
  }
  Tensor scale_op(const Tensor& x) const { return coil::scale(x, scale); }
};

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) { return xs.size() == 1 ? xs[0] : concat(xs, dim); }
// The compute dtype: f64 stays, f32 and bf16 run in f32.
Tensor to_compute(const Tensor& t) {
  const DType ct = t.dtype() == DType::F64 ? DType::F64 : DType::F32;
  return t.dtype() == ct ? t : t.to(ct);
}
Tensor to_dtype(const Tensor& t, DType dt) { return t.dtype() == dt ? t : t.to(dt); }

}  // namespace

Tensor prefix_attention(const Tensor& q, const Tensor& k, const Tensor& v, double sm_scale,
                        const Tensor& acs_q, const Tensor& acs_k, Tensor* lse_out, bool causal) {
  COIL_CHECK(q.dim() == 4 && k.dim() == 4 && v.shape() == k.shape() && q.size(0) == k.size(0) &&
                 q.size(2) == k.size(2) && q.size(3) == k.size(3) && q.size(1) > 0 &&
                 k.size(1) >= (causal ? q.size(1) : 1),
             "prefix_attention: q ", shape_str(q.shape()), " and k ", shape_str(k.shape()), " / v ",
             shape_str(v.shape()), " do not fit (expected (B, Tq > 0, H, D) and (B, Tk, H, D) with Tk ",
             causal ? ">= Tq)" : ">= 1)");
  const bool decay = acs_q.defined();
  // Without a decay the scores are plain softmax attention: the fused op (op Attention, cuDNN's flash
  // attention for bf16 on CUDA) with the same bottom-right causal alignment and a differentiable lse.
  if (!decay) {
    COIL_CHECK(!acs_k.defined(), "prefix_attention: acs_k ", shape_str(acs_k.shape()),
               " is given without acs_q");
    return attention(q, k, v, sm_scale, causal, lse_out);
  }
  // The block path, with a decay from here on (the code keeps `decay` general).
  COIL_CHECK(acs_k.defined() && acs_q.shape() == (Shape{q.size(0), q.size(1), q.size(2)}) &&
                 acs_k.shape() == (Shape{k.size(0), k.size(1), k.size(2)}),
             "prefix_attention: acs_q ", shape_str(acs_q.shape()), " / acs_k ", shape_str(acs_k.shape()),
             " do not match q ", shape_str(q.shape()), " and k ", shape_str(k.shape()));
  Blocks bl;
  bl.scale = sm_scale;
  bl.causal = causal;
  bl.Tq = q.size(1), bl.Tk = k.size(1), bl.P = bl.Tk - bl.Tq;
  bl.kb = kBlock * kBlock / std::max<int64_t>(1, std::min(kBlock, bl.Tq));
  // (B, H, T, D) views of q, k, v and (B, H, T, 1) of the decay cumsums, in the compute dtype.
  auto heads_first = [](const Tensor& x) { return to_compute(x.detach()).permute({0, 2, 1, 3}); };
  auto acs_col = [](const Tensor& a) { return to_compute(a.detach()).permute({0, 2, 1}).unsqueeze(3); };
  bl.q = heads_first(q), bl.k = heads_first(k), bl.v = heads_first(v);
  if (decay) bl.acs_q = acs_col(acs_q), bl.acs_k = acs_col(acs_k);

  Tensor o, lse;  // (B, H, Tq, D), (B, H, Tq, 1)
  {
    NoGradGuard ng;
    AutocastGuard full(false);
    std::vector<Tensor> os, lses;
    for (int64_t i0 = 0; i0 < bl.Tq; i0 += kBlock) {
      const int64_t ni = std::min(kBlock, bl.Tq - i0);
      Tensor m, l, acc;  // running row max, sum of exp(s - m), sum of exp(s - m) v
      for (int64_t j0 = 0; j0 < bl.Tk && bl.visible(i0, ni, j0); j0 += bl.kb) {
        const int64_t nj = std::min(bl.kb, bl.Tk - j0);
        Tensor s = bl.scores(i0, ni, j0, nj);
        Tensor bm = max(s, 3, true);
        if (!m.defined()) {  // block 0 holds key 0, visible to every query: m is finite from here on
          Tensor p = exp(s - bm);
          m = bm, l = sum(p, 3, true), acc = matmul(p, bl.v.narrow(2, j0, nj));
          continue;
        }
        Tensor m_new = max(concat({m, bm}, 3), 3, true);
        Tensor p = exp(s - m_new), c = exp(m - m_new);  // c rescales what was summed so far
        l = l * c + sum(p, 3, true);
        acc = acc * c + matmul(p, bl.v.narrow(2, j0, nj));
        m = m_new;
      }
      os.push_back(acc / l);
      lses.push_back(m + log(l));
    }
    o = cat(os, 2);
    lse = cat(lses, 2);
  }
  Tensor o_tok = o.permute({0, 2, 1, 3}).contiguous();  // (B, Tq, H, D), compute dtype
  Tensor y = to_dtype(o_tok, q.dtype());                 // o_tok itself unless q is bf16
  std::vector<Tensor> inputs = {q, k, v};
  if (decay) inputs.push_back(acs_q), inputs.push_back(acs_k);
  std::vector<DType> dtypes;
  for (const Tensor& t : inputs) dtypes.push_back(t.dtype());
  std::vector<Tensor> outputs = {y};
  if (lse_out) outputs.push_back(*lse_out = lse.squeeze(3).permute({0, 2, 1}).contiguous());  // (B, Tq, H)
  record("PrefixAttentionBackward", inputs, outputs,
         [bl, decay, dtypes](const std::vector<Tensor>& g, const std::vector<Tensor>& sv) {
           NoGradGuard ng;
           AutocastGuard full(false);
           const Tensor &o_saved = sv[0], &lse_s = sv[1];
           const Tensor dy = to_compute(g[0]);
           Tensor dO = dy.permute({0, 2, 1, 3});                                // (B, H, Tq, D)
           Tensor delta = sum(dy * o_saved, 3, true).permute({0, 2, 1, 3});     // (B, H, Tq, 1)
           // d lse_i / d s_ij = p_ij: the lse output's gradient joins d(score) = p (dp - delta) as
           // delta - dlse.
           if (g.size() > 1) delta = delta - to_compute(g[1]).permute({0, 2, 1}).unsqueeze(3);
           const int64_t nkb = (bl.Tk + bl.kb - 1) / bl.kb;
           const size_t n_kb = static_cast<size_t>(nkb);
           std::vector<Tensor> dqs, dks(n_kb), dvs(n_kb), daqs, daks(n_kb);
           for (int64_t i0 = 0; i0 < bl.Tq; i0 += kBlock) {
             const int64_t ni = std::min(kBlock, bl.Tq - i0);
             Tensor dO_i = dO.narrow(2, i0, ni), q_i = bl.q.narrow(2, i0, ni);
             Tensor dq, daq;
             for (int64_t j0 = 0, jb = 0; j0 < bl.Tk && bl.visible(i0, ni, j0); j0 += bl.kb, ++jb) {
               const int64_t nj = std::min(bl.kb, bl.Tk - j0);
               Tensor p = exp(bl.scores(i0, ni, j0, nj) - lse_s.narrow(2, i0, ni));     // (B, H, ni, nj)
               Tensor ds = p * (matmul(dO_i, bl.v.narrow(2, j0, nj).transpose(-1, -2)) -
                                delta.narrow(2, i0, ni));                               // d(score)
               auto add_to = [](Tensor& acc, const Tensor& x) { acc = acc.defined() ? acc + x : x; };
               add_to(dvs[size_t(jb)], matmul(p.transpose(-1, -2), dO_i));
               add_to(dks[size_t(jb)], matmul(ds.transpose(-1, -2), q_i));
               add_to(dq, matmul(ds, bl.k.narrow(2, j0, nj)));
               if (decay) {
                 add_to(daq, sum(ds, 3, true));
                 add_to(daks[size_t(jb)], neg(sum(ds, 2, true)).transpose(-1, -2));
               }
             }
             dqs.push_back(dq);
             if (decay) daqs.push_back(daq);
           }
           // Key blocks no query sees (none when Tk >= Tq, kept general) get zero gradients.
           for (int64_t jb = 0; jb < nkb; ++jb) {
             if (dks[size_t(jb)].defined()) continue;
             const int64_t nj = std::min(bl.kb, bl.Tk - jb * bl.kb);
             Shape sh = bl.k.narrow(2, jb * bl.kb, nj).shape();
             dks[size_t(jb)] = Tensor::zeros(sh, dO.dtype(), dO.device());
             dvs[size_t(jb)] = Tensor::zeros(sh, dO.dtype(), dO.device());
             if (decay) daks[size_t(jb)] = Tensor::zeros({sh[0], sh[1], nj, 1}, dO.dtype(), dO.device());
           }
           auto tokens_first = [](const Tensor& x) { return x.permute({0, 2, 1, 3}).contiguous(); };
           std::vector<Tensor> grads = {tokens_first(scale(cat(dqs, 2), bl.scale)),
                                        tokens_first(scale(cat(dks, 2), bl.scale)),
                                        tokens_first(cat(dvs, 2))};
           if (decay) {
             auto per_token = [](const Tensor& x) { return x.squeeze(3).permute({0, 2, 1}).contiguous(); };
             grads.push_back(per_token(cat(daqs, 2)));
             grads.push_back(per_token(cat(daks, 2)));
           }
           for (size_t i = 0; i < grads.size(); ++i) grads[i] = to_dtype(grads[i], dtypes[i]);
           return grads;
         },
         {o_tok, lse});
  return y;
}

}  // namespace coil
