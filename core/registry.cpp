// The kernel table and dispatch.
#include "core/registry.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/allocator.h"

namespace coil {

Registry& Registry::instance() {
  static Registry r;
  return r;
}

void Registry::add(Backend b, Op op, DType t, KernelFn fn) {
  COIL_INTERNAL_ASSERT(table_[int(b)][int(op)][int(t)] == nullptr, "kernel registered twice: ",
                       op_name(op), " ", backend_name(b), " ", dtype_name(t));
  table_[int(b)][int(op)][int(t)] = fn;
}

bool Registry::supports(Backend b, Op op, DType t) const {
  return table_[int(b)][int(op)][int(t)] != nullptr;
}

KernelFn Registry::lookup(Backend b, Op op, DType t) const {
  KernelFn fn = table_[int(b)][int(op)][int(t)];
  if (fn) return fn;
  std::string have;
  for (DType d : dtypes(b, op)) have += std::string(have.empty() ? "" : ", ") + dtype_name(d);
  COIL_FAIL("op '", op_name(op), "' has no kernel for backend ", backend_name(b), " and dtype ",
            dtype_name(t), " (", backend_name(b), " supports: ", have.empty() ? "none" : have, ")");
}

std::vector<DType> Registry::dtypes(Backend b, Op op) const {
  std::vector<DType> out;
  for (int t = 0; t < kNumDTypes; ++t)
    if (table_[int(b)][int(op)][t]) out.push_back(DType(t));
  return out;
}

namespace {

// COIL_PROFILE_OPS=1: every kernel call is timed between two device synchronisations (so the
// times are exact per op, and the run is slower than without), summed per (op, dtype) and printed
// to stderr when the process exits, largest first. A tool for finding where a step's time goes.
class OpProfile {
 public:
  static OpProfile* instance() {
    static OpProfile* p = [] {
      const char* e = std::getenv("COIL_PROFILE_OPS");
      return (e && *e && std::string(e) != "0") ? new OpProfile() : nullptr;
    }();
    return p;
  }
  void add(Op op, DType t, double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[{int(op), int(t)}];
    e.seconds += seconds;
    ++e.calls;
  }
  ~OpProfile() = default;
  static void print_at_exit() {
    OpProfile* p = instance();
    if (!p) return;
    std::vector<std::pair<std::pair<int, int>, Entry>> rows(p->entries_.begin(), p->entries_.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    double total = 0;
    for (const auto& r : rows) total += r.second.seconds;
    std::fprintf(stderr, "COIL_PROFILE_OPS: %.3f s in kernels\n%-24s %-5s %10s %10s %7s\n", total,
                 "op", "dtype", "calls", "ms", "%");
    for (const auto& [key, e] : rows)
      std::fprintf(stderr, "%-24s %-5s %10lld %10.2f %6.1f%%\n", op_name(Op(key.first)),
                   dtype_name(DType(key.second)), (long long)e.calls, e.seconds * 1e3,
                   100 * e.seconds / std::max(total, 1e-30));
  }

 private:
  struct Entry {
    double seconds = 0;
    int64_t calls = 0;
  };
  OpProfile() { std::atexit(print_at_exit); }
  std::mutex mu_;
  std::map<std::pair<int, int>, Entry> entries_;
};

}  // namespace

void dispatch(Op op, DType t, const KernelArgs& args) {
  const Tensor& first = args.in.empty() ? args.out.at(0) : args.in.at(0);
  Backend b = first.device().type;
  for (const Tensor& x : args.in)
    if (x.defined())
      COIL_CHECK(x.device() == first.device(), "op '", op_name(op), "': inputs on different devices (",
                 first.device(), " and ", x.device(), ")");
  const KernelFn fn = Registry::instance().lookup(b, op, t);
  if (OpProfile* prof = OpProfile::instance()) {
    const Device dev = first.device();
    auto sync = [&] {
      if (!dev.is_cpu()) hooks_for(dev.type).synchronize(dev.index);
    };
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    fn(args);
    sync();
    prof->add(op, t, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return;
  }
  fn(args);
}

}  // namespace coil
