#pragma once
// Frame metrics for video prediction: MSE, PSNR and SSIM of frames in [0, 1], and
// the best of k sampled futures (SVG's evaluation: for each test sequence keep the
// sample closest to the truth).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "nanode/core/error.hpp"

namespace nanode::models {

/// Mean squared error of two frames of n values.
inline double frame_mse(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return n > 0 ? s / static_cast<double>(n) : 0.0;
}

/// PSNR in dB for a data range of 1: 10 log10(1 / mse); +inf for identical frames.
inline double psnr_from_mse(double mse) {
  return mse > 0 ? 10.0 * std::log10(1.0 / mse) : std::numeric_limits<double>::infinity();
}

/// SSIM (Wang et al. 2004) of two frames [C, H, W] in [0, 1]: an 11x11 Gaussian
/// window (sigma 1.5) over the positions where it fits, K1 = 0.01, K2 = 0.03, the
/// mean over positions and channels. Frames smaller than the window use the
/// largest odd window that fits.
inline double frame_ssim(const float* a, const float* b, int64_t C, int64_t H, int64_t W) {
  NANODE_CHECK(C >= 1 && H >= 1 && W >= 1, "frame_ssim: empty frame");
  int64_t win = std::min<int64_t>({11, H, W});
  if (win % 2 == 0) --win;
  const int64_t r = win / 2;
  std::vector<double> g(static_cast<size_t>(win));
  double gs = 0;
  for (int64_t i = 0; i < win; ++i) {
    const double d = static_cast<double>(i - r);
    g[static_cast<size_t>(i)] = std::exp(-d * d / (2 * 1.5 * 1.5));
    gs += g[static_cast<size_t>(i)];
  }
  for (auto& v : g) v /= gs;
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  double total = 0;
  int64_t count = 0;
  for (int64_t c = 0; c < C; ++c) {
    const float* pa = a + c * H * W;
    const float* pb = b + c * H * W;
    for (int64_t y = r; y + r < H; ++y)
      for (int64_t x = r; x + r < W; ++x) {
        double ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
        for (int64_t i = -r; i <= r; ++i)
          for (int64_t j = -r; j <= r; ++j) {
            const double w = g[static_cast<size_t>(i + r)] * g[static_cast<size_t>(j + r)];
            const double va = pa[(y + i) * W + x + j], vb = pb[(y + i) * W + x + j];
            ma += w * va, mb += w * vb, saa += w * va * va, sbb += w * vb * vb, sab += w * va * vb;
          }
        const double va = saa - ma * ma, vb = sbb - mb * mb, cov = sab - ma * mb;
        total += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
        ++count;
      }
  }
  return total / static_cast<double>(count);
}

/// Per-frame scores of the best of k samples of one sequence: samples[s] holds F
/// predicted frames of n values each, truth F frames; the best sample is the one
/// with the lowest mean MSE over its frames (SVG keeps the closest sample).
struct BestOfK {
  int best = 0;
  std::vector<double> mse, psnr, ssim;  ///< per frame, of the best sample
};

inline BestOfK best_of_k(const std::vector<std::vector<float>>& samples, const std::vector<float>& truth, int64_t F,
                         int64_t C, int64_t H, int64_t W) {
  NANODE_CHECK(!samples.empty(), "best_of_k: no samples");
  const int64_t n = C * H * W;
  NANODE_CHECK(static_cast<int64_t>(truth.size()) == F * n, "best_of_k: truth has ", truth.size(), " values, expected ",
               F * n);
  BestOfK out;
  double best = std::numeric_limits<double>::infinity();
  for (size_t s = 0; s < samples.size(); ++s) {
    NANODE_CHECK(static_cast<int64_t>(samples[s].size()) == F * n, "best_of_k: sample ", s, " has ",
                 samples[s].size(), " values, expected ", F * n);
    double m = 0;
    for (int64_t f = 0; f < F; ++f) m += frame_mse(samples[s].data() + f * n, truth.data() + f * n, n);
    if (m < best) best = m, out.best = static_cast<int>(s);
  }
  const auto& bs = samples[static_cast<size_t>(out.best)];
  for (int64_t f = 0; f < F; ++f) {
    const double m = frame_mse(bs.data() + f * n, truth.data() + f * n, n);
    out.mse.push_back(m);
    out.psnr.push_back(psnr_from_mse(m));
    out.ssim.push_back(frame_ssim(bs.data() + f * n, truth.data() + f * n, C, H, W));
  }
  return out;
}

}  // namespace nanode::models
