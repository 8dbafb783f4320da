// Names and kinds of the op list, generated from COIL_OP_LIST so they cannot drift apart.
#include "core/op_list.h"

#include <cstring>

namespace coil {
namespace {
constexpr const char* kNames[] = {
#define COIL_OP_NAME(name, str, kind) str,
    COIL_OP_LIST(COIL_OP_NAME)
#undef COIL_OP_NAME
};
constexpr OpKind kKinds[] = {
#define COIL_OP_KIND(name, str, kind) OpKind::kind,
    COIL_OP_LIST(COIL_OP_KIND)
#undef COIL_OP_KIND
};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == kNumOps, "op name table out of sync");
static_assert(sizeof(kKinds) / sizeof(kKinds[0]) == kNumOps, "op kind table out of sync");
}  // namespace

const char* op_name(Op op) { return kNames[int(op)]; }
OpKind op_kind(Op op) { return kKinds[int(op)]; }
bool op_from_name(const char* name, Op* out) {
  for (int i = 0; i < kNumOps; ++i) {
    if (std::strcmp(kNames[i], name) == 0) {
      *out = Op(i);
      return true;
    }
  }
  return false;
}

}  // namespace coil
