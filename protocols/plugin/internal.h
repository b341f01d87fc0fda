/* Internal declarations shared by the plugin module's files. */
#ifndef CT_PROTOCOLS_PLUGIN_INTERNAL_H
#define CT_PROTOCOLS_PLUGIN_INTERNAL_H

#include "ctwist/plugin.h"

#include "ctwist/jsonrpc.h"

/* The bundled JSON-RPC demo service (rpc.c). */
extern const ct_plugin_descriptor ct__rpc_plugin;

/* The demo methods (add, echo, sleep, fib, stats) on a server of their own
 * that listens nowhere: the rpc plugin's, and the web plugin's --rpc.
 * NULL if memory runs out. */
typedef struct rpc_service rpc_service;
rpc_service *ct__rpc_service_new(ct_reactor *r, const ct_rpc_server_options *so,
                                 long max_fib);
ct_rpc_server *ct__rpc_service_server(rpc_service *svc);
void ct__rpc_service_free(rpc_service *svc);

#endif
