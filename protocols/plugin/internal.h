/* Internal declarations shared by the plugin module's files. */
#ifndef CT_PROTOCOLS_PLUGIN_INTERNAL_H
#define CT_PROTOCOLS_PLUGIN_INTERNAL_H

#include "ctwist/plugin.h"

/* The bundled JSON-RPC demo service (rpc.c). */
extern const ct_plugin_descriptor ct__rpc_plugin;

#endif
