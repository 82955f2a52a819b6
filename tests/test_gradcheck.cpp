// Every registered op's backward against central finite differences (float64),
// on random shapes including broadcast cases. An op registered with
// NANODE_REGISTER_OP but missing from cases() fails the first test.
#include <map>

#include "op_cases.hpp"

using namespace nanode;
using nanode::testing::gradcheck;
using nanode::testing::rand64;
using nanode::testing::rand64_away;

namespace {
std::map<std::string, std::vector<testing::Case>> cases() { return testing::op_cases(); }
}  // namespace

TEST_CASE("every registered op has a gradient check", "[gradcheck]") {
  const auto all = cases();
  REQUIRE(op_registry().size() >= 38);
  for (const auto& name : op_registry()) {
    INFO("op '" << name << "' is registered with NANODE_REGISTER_OP but has no case in tests/op_cases.hpp");
    CHECK(all.count(name) == 1);
  }
}

TEST_CASE("op gradients match central finite differences", "[gradcheck]") {
  for (const auto& [name, list] : cases()) {
    for (const auto& c : list) {
      INFO("op " << name << " (" << c.label << ")");
      const auto r = gradcheck(c.f, c.inputs);
      INFO(r.where << "; max abs err " << r.max_abs_err);
      CHECK(r.ok);
    }
  }
}
