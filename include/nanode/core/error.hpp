#pragma once
// nanode::Error and the checking helpers every op uses to reject bad input.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace nanode {

/// The one exception type nanode throws for bad input and misuse. Its message
/// names the operation and, where shapes are involved, the shapes.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

template <class... Args>
[[noreturn]] inline void fail(Args&&... args) {
  throw Error(detail::concat(std::forward<Args>(args)...));
}

}  // namespace nanode

/// Throws nanode::Error with the streamed message when `cond` is false.
#define NANODE_CHECK(cond, ...)                       \
  do {                                                \
    if (!(cond)) ::nanode::fail(__VA_ARGS__);         \
  } while (0)
