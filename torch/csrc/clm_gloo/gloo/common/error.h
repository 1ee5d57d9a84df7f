// Stand-in for gloo/common/error.h; see clm_gloo_decls.h.
#pragma once
#include "../../clm_gloo_decls.h"
