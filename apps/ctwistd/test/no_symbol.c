/* A shared object without the ctwist_plugin descriptor. */
#include "ctwist/plugin.h"

CT_PLUGIN_EXPORT int not_a_plugin = 1;
