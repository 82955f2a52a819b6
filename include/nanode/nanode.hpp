#pragma once
// nanode: tensors, reverse-mode autodiff and non-autonomous neural ODEs.
// Include this one header to get everything.
#include "nanode/core/tensor.hpp"
#include "nanode/autograd/var.hpp"
#include "nanode/ops/elementwise.hpp"
#include "nanode/ops/linalg.hpp"
#include "nanode/ops/shape.hpp"
#include "nanode/ops/reduce.hpp"
#include "nanode/ops/conv.hpp"
#include "nanode/ops/pool.hpp"
#include "nanode/ops/norm.hpp"
#include "nanode/ops/loss.hpp"
#include "nanode/nn/module.hpp"
#include "nanode/nn/layers.hpp"
#include "nanode/nn/optim.hpp"
