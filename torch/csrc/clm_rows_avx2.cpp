// clm_rows_avx2.cpp — clm_rows.h's loops for libtorch's "AVX2" capability
// (compiler flags in CMakeLists.txt).
#define CLM_ROWS_NAME rows_avx2
#define CLM_ROWS_ISA "AVX2"
#include "clm_rows_impl.h"
