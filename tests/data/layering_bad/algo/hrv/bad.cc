// A deliberate layering violation: tools/check_layering.sh must refuse this tree (CTest).
#include "owner/gateway/gateway.h"
