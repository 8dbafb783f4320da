// Counter-based random numbers: the state is (seed, offset), so a stream can be saved in a checkpoint
// and resumed exactly, and every device can produce the same numbers for the same state.
// Element i of a draw uses counter offset + i; a draw advances offset by its element count.
#pragma once

#include <cstdint>

namespace coil {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  // Reserve n counters; returns the first.
  uint64_t advance(uint64_t n) { uint64_t o = offset_; offset_ += n; return o; }
  // Host draws.
  uint64_t next_u64();
  double next_uniform();  // [0, 1)
  double next_normal();   // N(0, 1)

  static uint64_t hash(uint64_t seed, uint64_t counter);          // 64 random bits
  static double uniform_at(uint64_t seed, uint64_t counter);      // [0, 1), 53 bits
  static double normal_at(uint64_t seed, uint64_t counter);       // Box-Muller on two hashes

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

}  // namespace coil
