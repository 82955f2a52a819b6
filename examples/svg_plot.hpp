#pragma once
// A minimal SVG line-plot writer for the examples' pictures.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "nanode/core/error.hpp"

namespace nanode::examples {

struct Series {
  std::string label, color;
  std::vector<double> x, y;
  bool dashed = false;
};

/// One panel per entry of `panels`, side by side; each panel holds several series.
inline void write_svg(const std::string& path, const std::string& title,
                      const std::vector<std::pair<std::string, std::vector<Series>>>& panels) {
  const double W = 420, H = 320, pad = 45;
  std::ofstream f(path);
  NANODE_CHECK(f.good(), "cannot write ", path);
  f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W * static_cast<double>(panels.size()) << "' height='"
    << H + 30 << "' font-family='sans-serif' font-size='12'>\n";
  f << "<text x='10' y='18' font-size='14'>" << title << "</text>\n";
  for (size_t p = 0; p < panels.size(); ++p) {
    const auto& [name, series] = panels[p];
    double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
    for (const auto& s : series)
      for (size_t i = 0; i < s.x.size(); ++i) {
        x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
        y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
      }
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    const double ox = p * W, oy = 30;
    auto X = [&](double v) { return ox + pad + (v - x0) / (x1 - x0) * (W - 2 * pad); };
    auto Y = [&](double v) { return oy + H - pad - (v - y0) / (y1 - y0) * (H - 2 * pad); };
    f << "<text x='" << ox + pad << "' y='" << oy + 15 << "'>" << name << "</text>\n";
    f << "<rect x='" << ox + pad << "' y='" << oy + pad << "' width='" << W - 2 * pad << "' height='" << H - 2 * pad
      << "' fill='none' stroke='#999'/>\n";
    char buf[64];
    for (int k = 0; k <= 4; ++k) {
      const double xv = x0 + (x1 - x0) * k / 4, yv = y0 + (y1 - y0) * k / 4;
      std::snprintf(buf, sizeof buf, "%.2g", xv);
      f << "<text x='" << X(xv) - 8 << "' y='" << oy + H - pad + 15 << "'>" << buf << "</text>\n";
      std::snprintf(buf, sizeof buf, "%.2g", yv);
      f << "<text x='" << ox + 5 << "' y='" << Y(yv) + 4 << "'>" << buf << "</text>\n";
    }
    int legend = 0;
    for (const auto& s : series) {
      f << "<polyline fill='none' stroke='" << s.color << "' stroke-width='1.6'"
        << (s.dashed ? " stroke-dasharray='5,3'" : "") << " points='";
      for (size_t i = 0; i < s.x.size(); ++i) f << X(s.x[i]) << "," << Y(s.y[i]) << " ";
      f << "'/>\n";
      if (!s.label.empty()) {
        f << "<text x='" << ox + W - pad - 120 << "' y='" << oy + pad + 15 + 14 * legend << "' fill='" << s.color
          << "'>" << s.label << "</text>\n";
        ++legend;
      }
    }
  }
  f << "</svg>\n";
}

}  // namespace nanode::examples
