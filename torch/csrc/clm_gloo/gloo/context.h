// Stand-in for gloo/context.h; see clm_gloo_decls.h.
#pragma once
#include "../clm_gloo_decls.h"
