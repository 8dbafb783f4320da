// What the kernel benchmarks (bench/attention_bench.cpp, bench/linattn_bench.cpp) share: the common
// command-line options (H heads of dim D, a fixed number of tokens per call, the list of lengths T,
// warm-up and timed calls) and the timing rule (CUDA events on the current stream around each call,
// median of the timed calls).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/stream.h"

namespace coil::bench {

struct KernelBenchOptions {
  int iters = 20, warmup = 3;
  int64_t tokens = 32768, heads = 16, dim = 64;
  std::vector<int64_t> lengths = {1024, 2048, 4096, 8192, 16384, 32768};
};

// Parses argv into o: the common flags here, the rest through `extra(flag, next)`, which returns
// false for a flag it does not know (then the error names `source`, where the options are listed).
inline void parse_kernel_bench_args(
    int argc, char** argv, KernelBenchOptions& o, const char* source,
    const std::function<bool(const std::string&, const std::function<std::string()>&)>& extra) {
  for (int i = 1; i < argc; ++i) {
    const std::function<std::string()> next = [&]() -> std::string {
      COIL_CHECK(i + 1 < argc, argv[i], " needs a value");
      return argv[++i];
    };
    const std::string a = argv[i];
    if (a == "--iters") o.iters = std::stoi(next());
    else if (a == "--warmup") o.warmup = std::stoi(next());
    else if (a == "--tokens") o.tokens = std::stoll(next());
    else if (a == "--heads") o.heads = std::stoll(next());
    else if (a == "--dim") o.dim = std::stoll(next());
    else if (a == "--lengths") {
      o.lengths.clear();
      std::stringstream ss(next());
      for (std::string t; std::getline(ss, t, ',');) o.lengths.push_back(std::stoll(t));
    } else if (!extra(a, next)) {
      COIL_FAIL("unknown argument ", a, " (see the top of ", source, " for the options)");
    }
  }
  COIL_CHECK(o.iters > 0 && o.warmup >= 0, "--iters must be > 0 and --warmup >= 0");
}

// Median time in ms of `iters` calls of fn, each between two events on the current stream;
// `between` (if given) runs untimed after each call.
inline double median_ms(int warmup, int iters, const std::function<void()>& fn,
                        const std::function<void()>& between = {}) {
  cudaStream_t stream = cuda::current_stream(0);
  cudaEvent_t start, stop;
  COIL_CUDA_CHECK(cudaEventCreate(&start));
  COIL_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) {
    fn();
    if (between) between();
  }
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    COIL_CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    COIL_CUDA_CHECK(cudaEventRecord(stop, stream));
    COIL_CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0.0f;
    COIL_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
    if (between) between();
  }
  COIL_CUDA_CHECK(cudaEventDestroy(start));
  COIL_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A benchmark's main: runs body(argc, argv); an exception prints "name: what" and exits 1.
inline int guarded_main(const char* name, int argc, char** argv, int (*body)(int, char**)) {
  try {
    return body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace coil::bench
