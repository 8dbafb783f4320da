// The autocast state (per thread) and the casts the op front-ends ask for (core/ops/op_utils.h).
#include "core/autocast.h"

#include <span>
#include <unordered_map>

#include "core/autograd/grad_mode.h"
#include "core/ops/op_utils.h"

namespace coil {

namespace {

// A parameter's cast, valid while the parameter's storage version is unchanged.
struct CachedCast {
  Tensor source;  // keeps the key's impl alive, so the pointer cannot be reused meanwhile
  uint64_t version = 0;
  bool graph = false;  // recorded with grad mode on (a no-grad cast cannot serve a training forward)
  Tensor cast;
};

struct AutocastState {
  bool enabled = false;
  DType lower = DType::BF16;
  std::unordered_map<const TensorImpl*, CachedCast>* cache = nullptr;  // owned by the outermost guard
};

thread_local AutocastState tls;

}  // namespace

AutocastGuard::AutocastGuard(bool enabled, DType lower)
    : prev_enabled_(tls.enabled), prev_lower_(tls.lower), owns_cache_(enabled && tls.cache == nullptr) {
  COIL_CHECK(lower == DType::BF16, "AutocastGuard: the lower precision must be bf16, got ",
             dtype_name(lower));
  tls.enabled = enabled;
  tls.lower = lower;
  if (owns_cache_) tls.cache = new std::unordered_map<const TensorImpl*, CachedCast>();
}

AutocastGuard::~AutocastGuard() {
  if (owns_cache_) {
    delete tls.cache;
    tls.cache = nullptr;
  }
  tls.enabled = prev_enabled_;
  tls.lower = prev_lower_;
}

bool autocast_enabled() { return tls.enabled; }
DType autocast_lower_dtype() { return tls.lower; }

namespace detail {

namespace {

Tensor cast_cached(const Tensor& t, DType to) {
  // Only leaves that require grad (parameters) are worth caching: they are reused by every call of
  // a layer within one forward; activations are cast once anyway.
  if (tls.cache == nullptr || !t.is_leaf() || !t.requires_grad()) return t.to(to);
  const bool graph = GradMode::is_enabled();
  auto it = tls.cache->find(t.impl());
  if (it != tls.cache->end() && it->second.version == t.version() && it->second.graph == graph &&
      it->second.cast.dtype() == to)
    return it->second.cast;
  Tensor c = t.to(to);
  (*tls.cache)[t.impl()] = CachedCast{t, t.version(), graph, c};
  return c;
}

}  // namespace

Tensor autocast_lower(const Tensor& t) {
  if (!tls.enabled || !t.defined() || t.dtype() != DType::F32) return t;
  return cast_cached(t, tls.lower);
}

Tensor autocast_like(const Tensor& t, const Tensor& ref) {
  if (!tls.enabled || !ref.defined() || ref.dtype() != tls.lower) return t;
  return autocast_lower(t);
}

Tensor autocast_f32(const Tensor& t) {
  if (!tls.enabled || !t.defined() || t.dtype() != tls.lower) return t;
  return t.to(DType::F32);
}

void autocast_promote(Tensor* const* ts, size_t n) {
  if (!tls.enabled) return;
  bool any_f32 = false, any_lower = false;
  for (Tensor* t : std::span(ts, n)) {
    if (!t->defined()) continue;
    any_f32 |= t->dtype() == DType::F32;
    any_lower |= t->dtype() == tls.lower;
  }
  if (!(any_f32 && any_lower)) return;
  for (Tensor* t : std::span(ts, n))
    if (t->defined() && t->dtype() == tls.lower) *t = t->to(DType::F32);
}

}  // namespace detail
}  // namespace coil
