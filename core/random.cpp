// Counter-based generator: splitmix64-style finaliser of (seed, counter). Cheap, stateless per
// element, identical on every device.
#include "core/random.h"

#include <cmath>

namespace coil {

uint64_t Generator::hash(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  // a second round decorrelates neighbouring counters further
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Generator::uniform_at(uint64_t seed, uint64_t counter) {
  return double(hash(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}

double Generator::normal_at(uint64_t seed, uint64_t counter) {
  // Box-Muller on two independent hashes of the same counter (streams 2c and 2c+1).
  double u1 = uniform_at(seed, 2 * counter);
  double u2 = uniform_at(seed, 2 * counter + 1);
  u1 = u1 < 1e-300 ? 1e-300 : u1;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

uint64_t Generator::next_u64() { return hash(seed_, advance(1)); }
double Generator::next_uniform() { return uniform_at(seed_, advance(1)); }
double Generator::next_normal() { return normal_at(seed_, advance(1)); }

}  // namespace coil
