// Stand-in for gloo/rendezvous/store.h; see clm_gloo_decls.h.
#pragma once
#include "../../clm_gloo_decls.h"
