// The knobs of the CUDA selective scan (kernels/cuda/selective_scan.cu) visible outside it; tests use
// them to run every form on small shapes, the benchmark to time the forms against each other.
#pragma once

#include <cstdint>

namespace coil::cuda {

// The backward runs over segments of whole 64-token chunks so that its per-block dBm / dCm partials
// stay under this many bytes (default 64 MiB). Sets it when bytes > 0; returns the previous value.
int64_t selective_scan_partial_budget(int64_t bytes);

// How the scan spreads over the GPU. kSequential: one thread per (b, d, n) walks the whole sequence.
// kSplit: the chunks run in parallel (a local pass per chunk from a zero state, a sequential combine
// over chunk summaries per state, then the output pass), about twice the arithmetic for B x more
// parallelism. kAuto (default): kSplit when the sequential grid is small for the GPU and T spans
// several chunks. Sets the mode; returns the previous one.
enum class ScanMode { kAuto, kSequential, kSplit };
ScanMode selective_scan_mode(ScanMode mode);

}  // namespace coil::cuda
