// Stand-in for gloo/transport/device.h; see clm_gloo_decls.h.
#pragma once
#include "../../clm_gloo_decls.h"
