// clm_rows_default.cpp — clm_rows.h's loops for libtorch's "DEFAULT" capability
// (compiler flags in CMakeLists.txt).
#define CLM_ROWS_NAME rows_default
#define CLM_ROWS_ISA "DEFAULT"
#include "clm_rows_impl.h"
