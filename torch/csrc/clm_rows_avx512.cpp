// clm_rows_avx512.cpp — clm_rows.h's loops for libtorch's "AVX512" capability
// (compiler flags in CMakeLists.txt).
#define CLM_ROWS_NAME rows_avx512
#define CLM_ROWS_ISA "AVX512"
#include "clm_rows_impl.h"
