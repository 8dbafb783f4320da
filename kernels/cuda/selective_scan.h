// The one knob of the CUDA selective scan (kernels/cuda/selective_scan.cu) visible outside it.
#pragma once

#include <cstdint>

namespace coil::cuda {

// The backward runs over segments of whole 64-token chunks so that its per-block dBm / dCm partials
// stay under this many bytes (default 64 MiB). Sets it when bytes > 0; returns the previous value.
// Tests lower it to run several segments on small shapes.
int64_t selective_scan_partial_budget(int64_t bytes);

}  // namespace coil::cuda
