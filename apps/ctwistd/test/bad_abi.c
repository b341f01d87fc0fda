/* A plugin built for another ABI version: ctwistd must refuse it. */
#include "ctwist/plugin.h"

static int make(ct_reactor *r, int argc, char **argv, ct_factory **out,
                ct_failure **err) {
  (void)r, (void)argc, (void)argv, (void)out;
  *err = ct_failure_new(CT_EINVAL, "must not be called");
  return CT_EINVAL;
}

CT_PLUGIN_EXPORT const ct_plugin_descriptor ctwist_plugin = {
    .abi_version = CT_PLUGIN_ABI_VERSION + 41,
    .name = "bad-abi",
    .make_factory = make,
};
