// nanode's codegen probe (cmake/nanode_codegen.cmake). Debian 12's GCC 12.2 at
// -O2 with AVX-512 enabled (-march=native on an AVX-512 host, -march=x86-64-v4)
// builds the constant {2, 2, 0, 0} of this struct as a broadcast of 2, so a
// stride-2, padding-0 Conv2dOptions arrives as stride 2, padding 2. The probe
// exits 0 when the four fields arrive intact.
#include <cstdint>
#include <cstdio>

struct Probe4 {
  int64_t s0, s1, p0, p1;
  Probe4(int64_t s, int64_t p) : s0(s), s1(s), p0(p), p1(p) {}
};

__attribute__((noinline)) int64_t nanode_probe_digits(Probe4 o) { return o.s0 * 1000 + o.s1 * 100 + o.p0 * 10 + o.p1; }

int main() {
  const int64_t a = nanode_probe_digits(Probe4(2, 0));
  const int64_t b = nanode_probe_digits(Probe4(1, 3));
  std::printf("%lld %lld\n", static_cast<long long>(a), static_cast<long long>(b));
  return a == 2200 && b == 1133 ? 0 : 1;
}
