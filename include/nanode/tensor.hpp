#pragma once
// Tensor with its members defined: core/tensor.hpp declares the class (and core/
// includes nothing of backend/); the members that compute (to(), clone(), fill_,
// ...) are defined by backend/tensor_members.hpp, which dispatch.hpp includes.
// Include this header (or nanode/nanode.hpp) to use Tensor.
#include "nanode/core/tensor.hpp"
#include "nanode/backend/dispatch.hpp"
