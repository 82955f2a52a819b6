#pragma once
// The launchers one kernel backend defines, in its own namespace: cuda_kernels
// for nanode::cuda, cuda_emulated for nanode::cuda_emulated (NANODE_KERNEL_NS,
// set by the build). register.cpp puts them in the tables of
// backend/cuda/api.hpp and core/device_backend.hpp.
#include <cstddef>
#include <cstdint>

#include "nanode/backend/cuda/api.hpp"

#ifndef NANODE_KERNEL_NS
#error "NANODE_KERNEL_NS must name the backend's namespace (cuda_kernels or cuda_emulated)"
#endif

namespace nanode::NANODE_KERNEL_NS {

using cuda::kHouseholderMaxN;
using cuda::kHouseholderRows;
using cuda::kMaxBasisTerms;
using cuda::kMaxLincombTerms;
using cuda::LincombTerms;
using cuda::MultiLincomb;

int device_count();
/// Work items issued to the device stream: kernel launches, library calls (cuBLAS,
/// cuDNN) and device copies (one counter per backend, all devices). device_calls
/// reads it.
void count_device_call();
void* malloc_device(size_t bytes, int device);
void free_device(void* ptr, size_t bytes, int device);
void empty_cache(int device);

#define NANODE_CUDA_DECLARE(ret, name, params, args) ret name params;
NANODE_CUDA_LAUNCHERS(NANODE_CUDA_DECLARE)
#undef NANODE_CUDA_DECLARE

}  // namespace nanode::NANODE_KERNEL_NS
