// Stand-in for gloo/algorithm.h; see clm_gloo_decls.h.
#pragma once
#include "../clm_gloo_decls.h"
