// The CUDA stream handle type, forward-declared exactly as the CUDA runtime declares it, so
// headers that take a stream need no CUDA include (core .cpp files compile with g++ alone).
#pragma once

struct CUstream_st;
using cudaStream_t = CUstream_st*;  // nullptr: the legacy default stream
