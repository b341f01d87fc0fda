/**
 * @file discovery.h
 * @brief Service registration and discovery on ZooKeeper (zk.h) for the
 *        JSON-RPC client (jsonrpc.h): the layout of docs/discovery.md.
 *
 * A service NAME lives under `/ctwist/services/NAME`.  Each listening
 * endpoint of each server is one ephemeral sequential child, whose data is
 * an Apache Curator `ServiceInstance` in JSON, so that JVM services using
 * Curator's service discovery can read ctwist's members (and the other way
 * round):
 *
 *     {"name": "calc", "id": "<guid>-0", "address": "10.0.0.5",
 *      "port": 7000, "sslPort": null, "payload": null,
 *      "registrationTimeUTC": 1764480000000, "serviceType": "DYNAMIC",
 *      "uriSpec": null, "enabled": true}
 *
 * The child's name is "<id>-<counter>" (zk.h, ct_zk_register()).
 *
 * Not thread-safe: use everything on its reactor's thread.
 */
#ifndef CTWIST_DISCOVERY_H
#define CTWIST_DISCOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/deferred.h"
#include "ctwist/jsonrpc.h"
#include "ctwist/zk.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Where services live. */
#define CT_SERVICES_ROOT "/ctwist/services"

/**
 * Write the znode path of `service` ("/ctwist/services/NAME") into `buf`.
 * NAME must be 1..100 characters of [A-Za-z0-9._-].  Returns 0, or
 * CT_EINVAL for a bad name or a short buffer.
 */
CT_EXTERN int ct_service_path(const char *service, char *buf, size_t len);

/**
 * The member JSON (Curator ServiceInstance, see the file comment) of one
 * endpoint: a malloc'd NUL-terminated string the caller frees, or NULL if
 * memory runs out.  `registered_ms` is the registration time in
 * milliseconds since the Unix epoch (wall time, as Curator writes it).
 */
CT_EXTERN char *ct_service_member_json(const char *service, const char *id,
                                       const char *address, int port,
                                       int64_t registered_ms);

/**
 * Read member JSON: write the client endpoint it names
 * ("tcp:host=ADDRESS:port=PORT", with ':' in IPv6 addresses escaped) into
 * `endpoint`.  Returns 0, or CT_EPARSE with `*err` (if non-NULL) naming
 * what is wrong (not JSON, no address, a port outside 1..65535, disabled)
 * or CT_EINVAL when `endpoint` is too small.
 */
CT_EXTERN int ct_service_member_endpoint(const char *json, size_t len,
                                         char *endpoint, size_t endpoint_len,
                                         ct_failure **err);

/* ------------------------------------------------------------ registration */

/** One endpoint registered as a member of a service. */
typedef struct ct_service_registration ct_service_registration;

/**
 * Register `address`:`port` as a member of `service` for as long as the
 * registration lives (ct_zk_register(): kept through connection loss and
 * session expiry, never duplicated).  Returns NULL with `*err` (if
 * non-NULL) set for a bad service name or address, or when memory runs
 * out.
 */
CT_EXTERN ct_service_registration *
ct_service_register(ct_zk *zk, const char *service, const char *address,
                    int port, ct_failure **err);

/** The underlying ZooKeeper registration (borrowed). */
CT_EXTERN ct_zk_registration *
ct_service_registration_zk(const ct_service_registration *g);

/** Delete the member and free the registration; as ct_zk_unregister(). */
CT_EXTERN ct_deferred *ct_service_unregister(ct_service_registration *g);

/* --------------------------------------------------------------- discovery */

/** A watch on a service's members feeding a JSON-RPC client. */
typedef struct ct_rpc_discovery ct_rpc_discovery;

/** Called after the member set changed (or ZooKeeper became unreachable:
 *  `unreachable` 1, the set is kept), with the number of members. */
typedef void (*ct_rpc_discovery_cb)(ct_rpc_discovery *d, size_t members,
                                    int unreachable, void *arg);

/**
 * Watch the members of `service` and keep `client` connected to exactly
 * them: ct_rpc_client_connect() for each new member, and
 * ct_rpc_client_disconnect() (which holds the member in the client's
 * removal window) for each one whose node disappears.  A member whose
 * data cannot be read as member JSON is skipped with a warning.  When
 * ZooKeeper is unreachable the last known set is kept, and a warning names
 * it; it is brought up to date when a session is back.  `zk` and `client`
 * are borrowed and must outlive the discovery.  Returns NULL with `*err`
 * (if non-NULL) set for a bad service name or when memory runs out.
 */
CT_EXTERN ct_rpc_discovery *ct_rpc_discovery_new(ct_zk *zk, const char *service,
                                                 ct_rpc_client *client,
                                                 ct_failure **err);

/**
 * A Deferred (one reference for the caller) that fires with CT_NONE once
 * the member list has been read (at once if it has), or errbacks with
 * CT_ETIMEDOUT naming the ensemble when ZooKeeper cannot be reached within
 * its connect timeout (ct_zk_options).
 */
CT_EXTERN ct_deferred *ct_rpc_discovery_ready(ct_rpc_discovery *d);

/** Members known now (endpoints, duplicates counted once). */
CT_EXTERN size_t ct_rpc_discovery_members(const ct_rpc_discovery *d);

/** Member nodes in ZooKeeper now (a node whose data is unreadable or
 *  names an endpoint another node names counts too). */
CT_EXTERN size_t ct_rpc_discovery_nodes(const ct_rpc_discovery *d);

/** Fill `out` with up to `max` member endpoints (borrowed: valid until the
 *  next change), each once.  Returns the number of members. */
CT_EXTERN size_t ct_rpc_discovery_endpoints(const ct_rpc_discovery *d,
                                            const char **out, size_t max);

/** Set the change observer (replaces the previous one; NULL removes it). */
CT_EXTERN void ct_rpc_discovery_on_change(ct_rpc_discovery *d,
                                          ct_rpc_discovery_cb cb, void *arg);

/** Stop watching and free.  The client keeps the members it has.  NULL is
 *  a no-op. */
CT_EXTERN void ct_rpc_discovery_free(ct_rpc_discovery *d);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_DISCOVERY_H */
