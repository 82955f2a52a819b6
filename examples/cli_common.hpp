#pragma once
// What the example trainers share on their command lines: options checked on the
// text the user typed, before any conversion (an integer out of range, a negative
// number for an unsigned option, NaN or infinity for a float are each one line
// naming the option and its range, never a silent clamp or wrap), and the parse
// itself (an unknown option lists the valid ones).
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>

namespace nanode::cli {

inline std::string quote(const std::string& s) { return "'" + (s.size() > 40 ? s.substr(0, 40) + "..." : s) + "'"; }

/// A whole-number option in [lo, hi].
inline CLI::Validator integer(long long lo, long long hi) {
  std::ostringstream desc;
  desc << "INT in [" << lo << ", " << hi << "]";
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        std::ostringstream err;
        err << "must be a whole number from " << lo << " to " << hi << ", got " << quote(s);
        if (s.empty()) return err.str();
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (end != s.c_str() + s.size() || errno == ERANGE || v < lo || v > hi) return err.str();
        return {};
      },
      desc.str());
}

/// An unsigned 64-bit option (a seed): 0 to 2^64 - 1, no sign.
inline CLI::Validator unsigned64() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const std::string err = "must be a whole number from 0 to 18446744073709551615, got " + quote(s);
        if (s.empty() || s[0] == '-' || s[0] == '+') return err;
        errno = 0;
        char* end = nullptr;
        (void)std::strtoull(s.c_str(), &end, 10);
        if (end != s.c_str() + s.size() || errno == ERANGE) return err;
        return {};
      },
      "UINT64");
}

/// A finite number in [lo, hi] (NaN and infinity are refused).
inline CLI::Validator number(double lo, double hi) {
  std::ostringstream desc;
  desc << "NUMBER in [" << lo << ", " << hi << "]";
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        std::ostringstream err;
        err << "must be a finite number from " << lo << " to " << hi << ", got " << quote(s);
        if (s.empty()) return err.str();
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end != s.c_str() + s.size() || !std::isfinite(v) || v < lo || v > hi) return err.str();
        return {};
      },
      desc.str());
}

/// Parses argv: 0 when the program should go on, otherwise the exit code (after
/// --help, or an error printed with the option list when an option is unknown).
inline int parse(CLI::App& app, int argc, char** argv, bool& done) {
  done = false;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError& e) {
    std::fprintf(stderr, "%s\n\n%s", e.what(), app.help().c_str());
    done = true;
    return 2;
  } catch (const CLI::ParseError& e) {
    done = true;
    return app.exit(e);
  }
  return 0;
}

}  // namespace nanode::cli
