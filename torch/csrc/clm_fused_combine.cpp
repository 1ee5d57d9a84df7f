// clm_fused_combine.cpp — see clm_fused.h. (Being written.)
#include "clm_fused.h"
#include "clm_internal.h"
