// bf16 softmax attention through cuDNN's fused flash-attention engines, written against the backend
// (graph) API. cuDNN recognises scaled-dot-product attention as a pattern of matmul, pointwise and
// reduction operations; the graphs below are that pattern as cudnn_frontend's SDPA nodes lower it
// (forward: S = scale Q K^T, causal select, softmax with stats, O = P V; backward: the FlashAttention-2
// recomputation with dQ accumulated in fp32). Layout: the logical (B, H, T, D) tensors are coil's
// (B, T, H, D) storage through strides, and K^T / V^T are strided views, so nothing is transposed.
// Tq queries over Tk keys: the causal mask is bottom-right aligned (query i sits at Tk - Tq + i), built
// as the frontend builds it: generated row and column indices, row + Tk - Tq (two int32 scalars, added
// and subtracted) >= col, select; Tq == Tk keeps the plain row >= col graph, and non-causal has no mask.
// Stats come out as the natural-log log-sum-exp of the SCALED scores, which is coil's lse.
// lse's incoming gradient (dlse) changes the backward only through Delta' = Delta - dlse, and the SDPA
// backward graph has no input for it. Measured, H100, cuDNN 9.14: the variant-1 graph with "- dlse"
// where Delta is formed (Delta' written to the workspace) builds a plan, but its dQ and dK come out
// wrong (errors 0.1 to 0.6 against 0.005 for naive bf16; dV right), so the engine does not fuse that op
// as written. cudnn_sdpa_backward therefore takes no dlse; attention.cu composes that backward from
// plain cuDNN calls (cudnn_backward_with_dlse), and bf16_attention_impl reports cuDNN for it when both
// plain plans exist.
// One plan per (device, B, Tq, Tk, H, D, causal, fwd/bwd, graph variant), cached for the process.
#include <array>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <memory>
#include <tuple>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"

#if COIL_HAVE_CUDNN
#include <cudnn_version.h>

#include <cstdio>
#include <limits>

#include "kernels/cuda/cudnn_backend.h"
#endif

namespace coil::cuda {

namespace {
bool cudnn_switched_off() {
  const char* e = std::getenv("COIL_CUDNN_ATTENTION");
  return e && std::string(e) == "0";
}
}  // namespace

#if !COIL_HAVE_CUDNN

bool cudnn_attention_built() { return false; }
std::string cudnn_attention_info() { return "cuDNN not built in (CMake found no cudnn_graph.h / libcudnn)"; }
AttentionImpl bf16_attention_impl(int, const AttentionShape&, bool, std::string* why) {
  if (why) *why = cudnn_attention_info();
  return AttentionImpl::Native;
}
bool cudnn_sdpa_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, bool) {
  return false;
}
bool cudnn_sdpa_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, const Tensor*, const Tensor&, const Tensor&, const Tensor&, double,
                         bool) {
  return false;
}

#else  // COIL_HAVE_CUDNN

namespace {
using cudnn::Graph;
using GT = Graph::T;

// Unique ids of the tensors the caller binds in the variant pack (virtual tensors get ids >= 2^20).
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kStats, kScale, kNegInf, kOne, kDO, kDQ, kDK, kDV,
  kSoftmaxSum,  // backward variants 1 and 3: Delta_i (B, H, Tq, 1) f32, in the workspace
  kDQAccum,     // backward: dQ accumulated in f32 (B, H, Tq, D), in the workspace
  kSeqKV,       // causal with Tq < Tk: int32 Tk, added to the row index
  kSeqQ,        // causal with Tq < Tk: int32 Tq, subtracted from it
};

// Backward graph variants, tried in this order (COIL_CUDNN_SDPA_BWD_VARIANT=1|2 forces one):
//  1: the current frontend's lowering: Delta materialised in the workspace, mask after "- stats",
//     dQ_accum plain fp32;
//  2: the 2024 frontend's lowering: Delta virtual, mask before "- stats", dP * 1, dQ_accum F16x16.
constexpr int kBwdVariants[] = {1, 2};

using Shape5 = AttentionShape;
auto tie(const Shape5& s) { return std::tie(s.B, s.Tq, s.Tk, s.H, s.D, s.causal); }

// (B, T, H, D) storage seen as logical (B, H, T, D), and as its transpose (B, H, D, T).
std::vector<int64_t> bhtd_strides(int64_t T, int64_t H, int64_t D) { return {T * H * D, D, H * D, 1}; }
std::vector<int64_t> bhdt_strides(int64_t T, int64_t H, int64_t D) { return {T * H * D, D, 1, H * D}; }

// The graph of one call, with the shapes every lowering step shares.
class SdpaGraph {
 public:
  explicit SdpaGraph(const Shape5& s) : s_(s) {}
  Graph g;

  GT io(int64_t uid, std::vector<int64_t> dims, std::vector<int64_t> strides,
        cudnnDataType_t t = CUDNN_DATA_BFLOAT16,
        cudnnBackendTensorReordering_t reorder = CUDNN_TENSOR_REORDERING_NONE) {
    return g.tensor({std::move(dims), std::move(strides), t, uid, false, false, reorder});
  }
  // Query-side (B, H, Tq, D) and key-side (B, H, Tk, D) io tensors; key-side transposed (B, H, D, Tk).
  GT q_side(int64_t uid) { return io(uid, {s_.B, s_.H, s_.Tq, s_.D}, bhtd_strides(s_.Tq, s_.H, s_.D)); }
  GT k_side(int64_t uid) { return io(uid, {s_.B, s_.H, s_.Tk, s_.D}, bhtd_strides(s_.Tk, s_.H, s_.D)); }
  GT k_side_t(int64_t uid) { return io(uid, {s_.B, s_.H, s_.D, s_.Tk}, bhdt_strides(s_.Tk, s_.H, s_.D)); }
  GT stats(int64_t uid) {
    return io(uid, {s_.B, s_.H, s_.Tq, 1}, {s_.H * s_.Tq, s_.Tq, 1, 1}, CUDNN_DATA_FLOAT);
  }
  // A host scalar bound by value at execution (f32: scale, the mask value, 1; int32: Tk, Tq).
  GT scalar(int64_t uid, cudnnDataType_t t = CUDNN_DATA_FLOAT) {
    return g.tensor({{1, 1, 1, 1}, {1, 1, 1, 1}, t, uid, false, true});
  }
  // Virtual (B, H, Tq, Tk) scores-shaped tensor, row-major.
  GT scores(cudnnDataType_t t = CUDNN_DATA_FLOAT) {
    return g.tensor({{s_.B, s_.H, s_.Tq, s_.Tk}, {s_.H * s_.Tq * s_.Tk, s_.Tq * s_.Tk, s_.Tk, 1}, t});
  }
  // Virtual (B, H, Tk, Tq): the transpose of a scores tensor, same memory order.
  GT scores_t(cudnnDataType_t t) {
    return g.tensor({{s_.B, s_.H, s_.Tk, s_.Tq}, {s_.H * s_.Tq * s_.Tk, s_.Tq * s_.Tk, 1, s_.Tk}, t});
  }
  GT rows() { return g.tensor({{s_.B, s_.H, s_.Tq, 1}, {s_.H * s_.Tq, s_.Tq, 1, 1}, CUDNN_DATA_FLOAT}); }

  // out = mode(x[, b]) in fp32; a fresh f32 scores tensor unless `out` is given.
  GT pw(cudnnPointwiseMode_t mode, GT x, GT b = nullptr, GT out = nullptr) {
    if (!out) out = scores();
    g.pointwise(mode, CUDNN_DATA_FLOAT, x, b, nullptr, out);
    return out;
  }

  // Keys after the query's position get the mask value: select(row + Tk - Tq >= col, x, neg_inf);
  // x itself when not causal.
  GT mask(GT x, GT neg_inf) {
    if (!s_.causal) return x;
    GT row = scores(CUDNN_DATA_INT32), col = scores(CUDNN_DATA_INT32);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, x, nullptr, nullptr, row, /*axis=*/2);
    g.pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, x, nullptr, nullptr, col, /*axis=*/3);
    if (s_.Tq != s_.Tk) {  // bottom-right: query i sits at position Tk - Tq + i
      GT shifted = scores(CUDNN_DATA_INT32), pos = scores(CUDNN_DATA_INT32);
      g.pointwise(CUDNN_POINTWISE_ADD, CUDNN_DATA_INT32, row, scalar(kSeqKV, CUDNN_DATA_INT32), nullptr, shifted);
      g.pointwise(CUDNN_POINTWISE_SUB, CUDNN_DATA_INT32, shifted, scalar(kSeqQ, CUDNN_DATA_INT32), nullptr, pos);
      row = pos;
    }
    GT keep = scores(CUDNN_DATA_BOOLEAN);
    g.pointwise(CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, nullptr, keep);
    GT y = scores();
    g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, x, neg_inf, keep, y);
    return y;
  }

 private:
  Shape5 s_;
};

// Forward: O = softmax(mask(scale Q K^T)) V, Stats = max + log(sum exp(. - max)).
void build_forward(SdpaGraph& G) {
  GT q = G.q_side(kQ), kt = G.k_side_t(kK), v = G.k_side(kV), o = G.q_side(kO), stats = G.stats(kStats);
  GT scale = G.scalar(kScale), neg_inf = G.scalar(kNegInf);
  GT s = G.scores();
  G.g.matmul(q, kt, s);
  s = G.pw(CUDNN_POINTWISE_MUL, s, scale);
  s = G.mask(s, neg_inf);
  GT mx = G.rows(), sum = G.rows();
  G.g.reduction(CUDNN_REDUCE_TENSOR_MAX, s, mx);
  GT e = G.pw(CUDNN_POINTWISE_EXP, G.pw(CUDNN_POINTWISE_SUB, s, mx));
  G.g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, sum);
  GT log_sum = G.pw(CUDNN_POINTWISE_LOG, sum, nullptr, G.rows());
  G.pw(CUDNN_POINTWISE_ADD, mx, log_sum, stats);
  GT p = G.scores(CUDNN_DATA_BFLOAT16);  // the second matmul takes P in the io type
  G.pw(CUDNN_POINTWISE_DIV, e, sum, p);
  G.g.matmul(p, v, o);
}

// Backward: P = exp(mask(scale Q K^T) - stats); dV = P^T dO; dS = P (dO V^T - Delta) scale;
// dK = dS^T Q; dQ = dS K (fp32 accumulator, then cast).
void build_backward(SdpaGraph& G, const Shape5& s, int variant) {
  GT q = G.q_side(kQ), kt = G.k_side_t(kK), vt = G.k_side_t(kV), o = G.q_side(kO), dO = G.q_side(kDO);
  GT stats = G.stats(kStats), dq = G.q_side(kDQ), dk = G.k_side(kDK), dv = G.k_side(kDV);
  GT scale = G.scalar(kScale), neg_inf = G.scalar(kNegInf), one = G.scalar(kOne);

  // Delta_i = sum_d dO_id o_id
  GT prod = G.g.tensor({{s.B, s.H, s.Tq, s.D}, {s.H * s.Tq * s.D, s.Tq * s.D, s.H * s.D, 1}, CUDNN_DATA_FLOAT});
  G.pw(CUDNN_POINTWISE_MUL, dO, o, prod);
  GT dsum = G.rows();
  G.g.reduction(CUDNN_REDUCE_TENSOR_ADD, prod, dsum);
  GT delta = variant == 1 ? G.stats(kSoftmaxSum) : G.rows();
  G.pw(CUDNN_POINTWISE_MUL, dsum, one, delta);

  // P, recomputed from the stats
  GT sc = G.scores();
  G.g.matmul(q, kt, sc);
  sc = G.pw(CUDNN_POINTWISE_MUL, sc, scale);
  if (variant == 1) {
    sc = G.mask(G.pw(CUDNN_POINTWISE_SUB, sc, stats), neg_inf);
  } else {
    sc = G.pw(CUDNN_POINTWISE_SUB, G.mask(sc, neg_inf), stats);
  }
  GT p = G.pw(CUDNN_POINTWISE_EXP, sc);

  // dV = P^T dO
  GT pt = G.scores_t(CUDNN_DATA_BFLOAT16);
  G.g.reshape(p, pt);
  G.g.matmul(pt, dO, dv);

  // dS = P * (dP - Delta) * scale
  GT dp = G.scores();
  G.g.matmul(dO, vt, dp);
  if (variant == 2) dp = G.pw(CUDNN_POINTWISE_MUL, dp, one);
  GT ds = G.pw(CUDNN_POINTWISE_SUB, dp, delta);
  ds = G.pw(CUDNN_POINTWISE_MUL, ds, p);
  ds = G.pw(CUDNN_POINTWISE_MUL, ds, scale);

  // dK = dS^T Q
  GT dst = G.scores_t(CUDNN_DATA_BFLOAT16);
  G.g.reshape(ds, dst);
  G.g.matmul(dst, q, dk);

  // dQ = dS K through the fp32 accumulator
  GT k = G.g.tensor({{s.B, s.H, s.Tk, s.D}, bhtd_strides(s.Tk, s.H, s.D), CUDNN_DATA_FLOAT});
  G.g.reshape(kt, k);
  GT dq_accum = G.io(kDQAccum, {s.B, s.H, s.Tq, s.D}, {s.H * s.Tq * s.D, s.Tq * s.D, s.D, 1}, CUDNN_DATA_FLOAT,
                     variant == 2 ? CUDNN_TENSOR_REORDERING_F16x16 : CUDNN_TENSOR_REORDERING_NONE);
  G.g.matmul(ds, k, dq_accum);
  G.g.pointwise(CUDNN_POINTWISE_IDENTITY, CUDNN_DATA_FLOAT, dq_accum, nullptr, nullptr, dq);
}

// --- plan cache -----------------------------------------------------------------------------------------
inline constexpr int64_t kWorkspaceAlign = 256;
int64_t align_up(int64_t n) { return (n + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign; }

struct Entry {
  std::unique_ptr<cudnn::Plan> plan;  // null: no engine takes the shape (why says why)
  std::string why;
  int variant = 0;
  // Workspace: [plan | Delta (variant 1) | dQ_accum (backward)], each 256-byte aligned.
  int64_t delta_offset = -1, dq_accum_offset = -1, dq_accum_bytes = 0, total_bytes = 0;
};

struct Key {
  int device;
  Shape5 s;
  bool backward;
  int forced_variant;  // 0: auto
  bool operator<(const Key& o) const {
    return std::tuple(device, tie(s), backward, forced_variant) <
           std::tuple(o.device, tie(o.s), o.backward, o.forced_variant);
  }
};

bool verbose() {
  const char* e = std::getenv("COIL_CUDNN_VERBOSE");
  return e && std::string(e) != "0";
}

int forced_bwd_variant() {
  const char* e = std::getenv("COIL_CUDNN_SDPA_BWD_VARIANT");
  return e ? std::atoi(e) : 0;
}

std::string shape_name(const Shape5& s, bool backward) {
  return detail::str_cat(backward ? "bwd" : "fwd", " B=", s.B, " Tq=", s.Tq, " Tk=", s.Tk, " H=", s.H,
                         " D=", s.D, s.causal ? " causal" : " full");
}

// Plans per key, one map per device, each guarded by its device's handle mutex (every access is inside
// with_handle). Never destroyed, like the handles.
std::map<Key, std::shared_ptr<Entry>>& cache(int device) {
  static auto* c = new std::array<std::map<Key, std::shared_ptr<Entry>>, kMaxDevices>();
  return (*c)[size_t(device)];
}

std::shared_ptr<Entry> build_entry(cudnnHandle_t handle, const Shape5& s, bool backward, int forced) {
  auto e = std::make_shared<Entry>();
  // cuDNN's attention engines take head dims that are multiples of 8 up to 256.
  if (s.D % 8 != 0 || s.D > 256) {
    e->why = detail::str_cat("head dim ", s.D, " (cuDNN takes multiples of 8 up to 256)");
    return e;
  }
  std::vector<int> variants = {0};
  if (backward) variants.assign(std::begin(kBwdVariants), std::end(kBwdVariants));
  if (backward && forced) variants = {forced};
  for (int variant : variants) {
    SdpaGraph G(s);
    if (backward) build_backward(G, s, variant);
    else build_forward(G);
    std::string why;
    e->plan = G.g.build_plan(handle, &why);
    if (e->plan) {
      e->variant = variant;
      break;
    }
    e->why += detail::str_cat(" {variant ", variant, ": ", why, "}");
  }
  if (e->plan) {
    e->why.clear();
    int64_t off = align_up(e->plan->workspace_bytes);
    if (backward) {
      if (e->variant == 1) {
        e->delta_offset = off;
        off += align_up(s.B * s.H * s.Tq * int64_t(sizeof(float)));
      }
      e->dq_accum_offset = off;
      e->dq_accum_bytes = s.B * s.H * s.Tq * s.D * int64_t(sizeof(float));
      off += align_up(e->dq_accum_bytes);
    }
    e->total_bytes = off;
  }
  if (verbose())
    std::fprintf(stderr, "[coil cudnn sdpa] %s: %s\n", shape_name(s, backward).c_str(),
                 e->plan ? detail::str_cat("plan ", e->plan->engine, ", variant ", e->variant, ", workspace ",
                                           e->total_bytes, " B").c_str()
                         : ("no plan:" + e->why).c_str());
  return e;
}

// The cached entry for this call (built on first use). Call inside with_handle.
std::shared_ptr<Entry> entry_for(cudnnHandle_t handle, int device, const Shape5& s, bool backward) {
  const int forced = backward ? forced_bwd_variant() : 0;
  const Key key{device, s, backward, forced};
  auto& c = cache(device);
  auto it = c.find(key);
  if (it == c.end()) it = c.emplace(key, build_entry(handle, s, backward, forced)).first;
  return it->second;
}

Shape5 shape_of(const Tensor& q, const Tensor& k, bool causal) {
  return {q.size(0), q.size(1), k.size(1), q.size(2), q.size(3), causal};
}

// cuDNN's tensor-core engines read 16-byte aligned rows.
bool aligned(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t && reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 != 0) return false;
  return true;
}

// The scalars bound by value: the mask value is the lowest float, as the frontend uses; Tk and Tq
// shift the causal diagonal.
struct Scalars {
  float scale, neg_inf = std::numeric_limits<float>::lowest(), one = 1.0f;
  int32_t seq_kv = 0, seq_q = 0;
};

// The mask's scalars join the variant pack only when the graph has them (cuDNN rejects a pack that
// names a tensor the graph lacks): the mask value when causal, Tk and Tq when also Tq != Tk.
void add_mask_scalars(const Shape5& s, Scalars& sc, std::vector<int64_t>& uids, std::vector<void*>& ptrs) {
  if (!s.causal) return;
  uids.push_back(kNegInf);
  ptrs.push_back(&sc.neg_inf);
  if (s.Tq == s.Tk) return;
  sc.seq_kv = int32_t(s.Tk);
  sc.seq_q = int32_t(s.Tq);
  uids.insert(uids.end(), {kSeqKV, kSeqQ});
  ptrs.insert(ptrs.end(), {&sc.seq_kv, &sc.seq_q});
}


// Shapes cuDNN is never asked about: nothing to do, or lengths past int32 (the mask's indices).
bool takes(const Shape5& s) {
  return s.B * s.H * s.Tq * s.Tk > 0 && s.Tk <= std::numeric_limits<int32_t>::max();
}

}  // namespace

bool cudnn_attention_built() { return true; }

std::string cudnn_attention_info() {
  return detail::str_cat("cuDNN ", cudnn::runtime_version_string(), " (built against ", CUDNN_MAJOR, ".",
                         CUDNN_MINOR, ".", CUDNN_PATCHLEVEL, ")");
}

AttentionImpl bf16_attention_impl(int device, const AttentionShape& s, bool backward, std::string* why) {
  if (cudnn_switched_off()) {
    if (why) *why = "COIL_CUDNN_ATTENTION=0";
    return AttentionImpl::Native;
  }
  if (!takes(s)) {
    if (why) *why = "empty or past int32 lengths";
    return AttentionImpl::Native;
  }
  // A backward with dlse runs cuDNN's plain backward plus a forward and a backward more (attention.cu,
  // cudnn_backward_with_dlse): cuDNN when it takes both plain plans of the shape.
  Shape5 plain = s;
  plain.dlse = false;
  for (bool bwd : {false, true}) {
    if (bwd != backward && !(backward && s.dlse)) continue;
    std::shared_ptr<Entry> e;
    cudnn::with_handle(device, [&](cudnnHandle_t h) { e = entry_for(h, device, plain, bwd); });
    if (!e->plan) {
      if (why) *why = e->why;
      return AttentionImpl::Native;
    }
  }
  if (why) *why = "";
  return AttentionImpl::CuDNN;
}

bool cudnn_sdpa_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                        const Tensor& lse, double scale, bool causal) {
  const Shape5 s = shape_of(q, k, causal);
  if (cudnn_switched_off() || !takes(s) || !aligned({&q, &k, &v, &o, &lse})) return false;
  const int device = q.device().index;
  bool ran = false;
  cudnn::with_handle(device, [&](cudnnHandle_t h) {
    std::shared_ptr<Entry> e = entry_for(h, device, s, false);
    if (!e->plan) return;
    Tensor ws = Tensor::empty({(e->total_bytes + 3) / 4}, DType::F32, q.device());
    Scalars sc{float(scale)};
    std::vector<int64_t> uids = {kQ, kK, kV, kO, kStats, kScale};
    std::vector<void*> ptrs = {q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr(), &sc.scale};
    add_mask_scalars(s, sc, uids, ptrs);
    cudnn::execute(h, *e->plan, uids, ptrs, e->total_bytes ? ws.data_ptr() : nullptr);
    ran = true;
  });
  return ran;
}

bool cudnn_sdpa_backward(const Tensor& dO, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& o, const Tensor& lse, const Tensor* dlse, const Tensor& dq,
                         const Tensor& dk, const Tensor& dv, double scale, bool causal) {
  const Shape5 s = shape_of(q, k, causal);
  if (dlse || cudnn_switched_off() || !takes(s) || !aligned({&dO, &q, &k, &v, &o, &lse, &dq, &dk, &dv}))
    return false;
  const int device = q.device().index;
  bool ran = false;
  cudnn::with_handle(device, [&](cudnnHandle_t h) {
    std::shared_ptr<Entry> e = entry_for(h, device, s, true);
    if (!e->plan) return;
    Tensor ws = Tensor::empty({(e->total_bytes + 3) / 4}, DType::F32, q.device());
    char* base = static_cast<char*>(ws.data_ptr());
    // Before cuDNN 9.6 the engine expected dQ_accum zeroed by the caller (the frontend did it).
    if (cudnn::runtime_version() < 90600)
      COIL_CUDA_CHECK(cudaMemsetAsync(base + e->dq_accum_offset, 0, size_t(e->dq_accum_bytes),
                                      current_stream(device)));
    Scalars sc{float(scale)};
    std::vector<int64_t> uids = {kQ, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV, kScale, kOne, kDQAccum};
    std::vector<void*> ptrs = {q.data_ptr(),  k.data_ptr(),   v.data_ptr(),  o.data_ptr(),
                               dO.data_ptr(), lse.data_ptr(), dq.data_ptr(), dk.data_ptr(),
                               dv.data_ptr(), &sc.scale,      &sc.one,       base + e->dq_accum_offset};
    if (e->delta_offset >= 0) {
      uids.push_back(kSoftmaxSum);
      ptrs.push_back(base + e->delta_offset);
    }
    add_mask_scalars(s, sc, uids, ptrs);
    cudnn::execute(h, *e->plan, uids, ptrs, base);
    ran = true;
  });
  return ran;
}

#endif  // COIL_HAVE_CUDNN

}  // namespace coil::cuda
