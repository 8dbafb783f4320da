// Dense staging for kernels whose contract admits strided views (the linattn ops take q, k, v and
// write dq, dk, dv as views of one packed projection) but whose loops index dense tensors: the
// chosen inputs are copied to dense tensors, the chosen outputs are computed into dense temporaries
// and copied into the views by finish(). Dense operands pass through untouched.
#pragma once

#include <initializer_list>
#include <utility>
#include <vector>

#include "core/registry.h"
#include "core/tensor.h"

namespace coil {

struct DenseStaging {
  KernelArgs args;                                   // what the dense kernel body reads and writes
  std::vector<std::pair<Tensor, Tensor>> writeback;  // (the caller's view, the dense temporary)

  DenseStaging(const KernelArgs& a, std::initializer_list<size_t> ins, std::initializer_list<size_t> outs)
      : args(a) {
    for (size_t i : ins)
      if (args.in[i].defined() && !args.in[i].is_contiguous()) args.in[i] = args.in[i].contiguous();
    for (size_t o : outs) {
      const Tensor& view = a.out[o];
      if (!view.defined() || view.is_contiguous()) continue;
      args.out[o] = Tensor::empty(view.shape(), view.dtype(), view.device());
      writeback.emplace_back(view, args.out[o]);
    }
  }
  // Copies the dense results into the caller's views (stream order on the device).
  void finish() {
    for (auto& [view, dense] : writeback) view.copy_(dense);
  }
};

}  // namespace coil
