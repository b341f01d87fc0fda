/**
 * @file jsonrpc.h
 * @brief JSON-RPC 2.0 on the message protocol: a server of registered
 *        methods (synchronous or Deferred), a client that keeps one
 *        connection per server and returns Deferreds, and two extensions
 *        that cross the wire: cancellation and deadlines.
 *
 * ## Wire format (docs/rpc.md)
 * One request object or batch array per message frame (message.h), in the
 * content, with the header `{"content-type": "application/json"}`.  A
 * response (or batch of responses) comes back the same way.  A client may
 * add `"deadline-ms": N` to the header: the server cancels the call N
 * milliseconds after receipt and answers -32001 "deadline exceeded" (N <= 0:
 * the method is not started at all).  The notification
 * `{"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": ID}}`
 * cancels the request ID in flight on the same connection: its Deferred is
 * cancelled (so the method's canceller runs) and ID is answered with
 * -32800 "request cancelled".
 *
 * ## JSON values
 * Params and results are jansson values (`json_t`, include <jansson.h> to
 * build them).  The header only declares the type, so including it does not
 * need jansson's headers.
 *
 * ## Errors
 * A JSON-RPC error travels as a ct_failure in the domain
 * CT_RPC_DOMAIN ("jsonrpc") whose `code` is the JSON-RPC code (-32601, ...,
 * or an application's own) and whose message is the error's message.  The
 * error's optional `data` rides as the failure's cause, in the domain
 * "jsonrpc-data", whose message is the data as JSON text: read it with
 * ct_rpc_error_data().  Build such failures with ct_rpc_error_new().
 * Client-side failures that never reached a server keep their ctwist codes
 * (CT_ETIMEDOUT, CT_ECONNLOST, CT_ECANCELLED, CT_EQUEUEFULL, ...).
 *
 * Not thread-safe: use everything on its reactor's thread.
 */
#ifndef CTWIST_JSONRPC_H
#define CTWIST_JSONRPC_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/deferred.h"
#include "ctwist/error.h"
#include "ctwist/message.h"
#include "ctwist/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** jansson's value type (the same declaration <jansson.h> makes). */
typedef struct json_t json_t;

/** The failure domain of JSON-RPC errors. */
#define CT_RPC_DOMAIN "jsonrpc"
/** The failure domain of an error's `data` (the cause of a "jsonrpc" one). */
#define CT_RPC_DATA_DOMAIN "jsonrpc-data"

/** JSON-RPC error codes: the specification's and the two extensions'. */
enum {
  CT_RPC_PARSE_ERROR = -32700,       /**< unparsable JSON */
  CT_RPC_INVALID_REQUEST = -32600,   /**< not a valid request object */
  CT_RPC_METHOD_NOT_FOUND = -32601,  /**< no such method */
  CT_RPC_INVALID_PARAMS = -32602,    /**< params the method cannot use */
  CT_RPC_INTERNAL_ERROR = -32603,    /**< the method failed unexpectedly */
  CT_RPC_DEADLINE_EXCEEDED = -32001, /**< the header's deadline passed */
  CT_RPC_REQUEST_CANCELLED = -32800  /**< cancelled by rpc.cancel */
};

/** The header key carrying a call's deadline (milliseconds from receipt). */
#define CT_RPC_DEADLINE_KEY "deadline-ms"

/**
 * A JSON-RPC error as a failure: domain CT_RPC_DOMAIN, `code`, the
 * printf-style message, and `data` (taken over, may be NULL) kept as JSON
 * text in a "jsonrpc-data" cause.  Never returns NULL (see
 * ct_failure_new_at()).  Use the macro, which records the caller's site.
 */
CT_EXTERN ct_failure *ct_rpc_error_new_at(const char *file, int line, int code,
                                          json_t *data, const char *fmt, ...)
    CT_PRINTF(5, 6);
#define ct_rpc_error_new(code, data, ...)                                      \
  ct_rpc_error_new_at(__FILE__, __LINE__, (code), (data), __VA_ARGS__)

/** 1 if `f` is a JSON-RPC error (domain CT_RPC_DOMAIN). */
CT_EXTERN int ct_rpc_is_error(const ct_failure *f);

/** The `data` of a JSON-RPC error as JSON text (borrowed from `f`), or
 *  NULL when it has none. */
CT_EXTERN const char *ct_rpc_error_data(const ct_failure *f);

/** A ct_value owning `j` (json_decref frees it); NULL is the JSON null. */
CT_EXTERN ct_value ct_rpc_value(json_t *j);

/** The JSON value carried by a ct_rpc_value() (borrowed), or NULL. */
static inline json_t *ct_rpc_value_json(ct_value v) {
  return (json_t *)v.ptr;
}

/* ------------------------------------------------------------------ server */

/** Limits and options of a server; zero members mean the defaults. */
typedef struct ct_rpc_server_options {
  ct_msg_options msg;  /**< the message protocol's limits and watermarks */
  size_t max_batch;    /**< entries per batch (default 1000) */
  size_t max_depth;    /**< JSON nesting depth (default 64) */
  size_t max_inflight; /**< requests running per connection before reading
                            pauses (default 1024) */
} ct_rpc_server_options;

#define CT_RPC_MAX_BATCH_DEFAULT 1000
#define CT_RPC_MAX_DEPTH_DEFAULT 64
#define CT_RPC_MAX_INFLIGHT_DEFAULT 1024

/** A JSON-RPC server: a method table over a message server. */
typedef struct ct_rpc_server ct_rpc_server;

/** One request being answered; valid during the method call only. */
typedef struct ct_rpc_request ct_rpc_request;

/**
 * A method.  `params` is the request's params (a JSON array or object, or
 * NULL when absent), borrowed for the call: json_incref() what an async
 * method keeps.  Return:
 *  - ct_pass(ct_rpc_value(result)) to answer at once (a value whose ptr is
 *    NULL answers `null`; any value must be a ct_rpc_value());
 *  - ct_raise(failure) to answer an error: a ct_rpc_error_new() failure
 *    answers its code, message and data; any other failure answers -32603
 *    "Internal error" and is logged;
 *  - ct_wait(deferred) for an async method: the Deferred (whose reference
 *    the server takes over) fires later with a ct_rpc_value() or a failure
 *    as above.  The server cancels it on rpc.cancel, at the deadline, and
 *    when the client's connection ends; give it a canceller that stops the
 *    work.
 */
typedef ct_step (*ct_rpc_method_cb)(ct_rpc_request *req, json_t *params,
                                    void *arg);

/**
 * A server without a listening port: serve connections built by
 * ct_rpc_server_factory() (memory transports in tests, ports the caller
 * opens with ct_listen(), ctwistd).  `opts` is copied (NULL: defaults).
 * Returns NULL if memory runs out.
 */
CT_EXTERN ct_rpc_server *ct_rpc_server_new(ct_reactor *r,
                                           const ct_rpc_server_options *opts);

/**
 * A server listening on `endpoint` (see ct_listen()).  Returns NULL with
 * `*err` (if non-NULL) set on failure.
 */
CT_EXTERN ct_rpc_server *ct_rpc_server_listen(ct_reactor *r,
                                              const char *endpoint,
                                              const ct_rpc_server_options *opts,
                                              ct_failure **err);

/** The factory building this server's connections (borrowed). */
CT_EXTERN ct_factory *ct_rpc_server_factory(ct_rpc_server *s);

/** The bound port of a listening server (-1 otherwise). */
CT_EXTERN int ct_rpc_server_port(const ct_rpc_server *s);

/**
 * Register `fn` under `name` (copied), replacing an earlier one.  Names
 * beginning with "rpc." are reserved (CT_EINVAL).  Returns 0, CT_EINVAL or
 * CT_ENOMEM.
 */
CT_EXTERN int ct_rpc_server_register(ct_rpc_server *s, const char *name,
                                     ct_rpc_method_cb fn, void *arg);

/** Counters of a server. */
typedef struct ct_rpc_server_stats {
  uint64_t served;      /**< requests answered (notifications included) */
  uint64_t inflight;    /**< async requests running now */
  uint64_t cancelled;   /**< cancelled by rpc.cancel, deadline or loss */
  uint64_t errors;      /**< error responses sent */
  uint64_t connections; /**< live connections */
} ct_rpc_server_stats;

/** Fill `out` with the server's counters. */
CT_EXTERN void ct_rpc_server_stats_get(const ct_rpc_server *s,
                                       ct_rpc_server_stats *out);

/**
 * Stop listening, cancel every request in flight and close every
 * connection; no method or callback runs after this call.  Not from inside
 * a method.  NULL is a no-op.
 */
CT_EXTERN void ct_rpc_server_free(ct_rpc_server *s);

/** The reactor of the server answering `req`. */
CT_EXTERN ct_reactor *ct_rpc_request_reactor(const ct_rpc_request *req);

/** The called method's name (borrowed). */
CT_EXTERN const char *ct_rpc_request_method(const ct_rpc_request *req);

/** The connection the request came on (borrowed). */
CT_EXTERN ct_messenger *ct_rpc_request_messenger(const ct_rpc_request *req);

/** 1 for a notification (nobody reads the answer). */
CT_EXTERN int ct_rpc_request_is_notification(const ct_rpc_request *req);

/** Seconds left before the request's deadline, or a negative number when
 *  it has none. */
CT_EXTERN double ct_rpc_request_remaining(const ct_rpc_request *req);

/* ------------------------------------------------------------------ client */

/** Balancers: how a call picks among the live members. */
enum {
  /** Power of two choices (default): two live members drawn at random,
   *  the one with fewer calls outstanding gets the call. */
  CT_RPC_BALANCE_P2C = 0,
  /** Each live member in turn. */
  CT_RPC_BALANCE_ROUND_ROBIN = 1
};

/**
 * Options of a client; zero members mean the defaults.
 *
 * ## Members, balancing and resilience (docs/rpc.md, "Balancing")
 * Each endpoint given to ct_rpc_client_connect() is a *member*, kept
 * connected by a reconnecting client (protocol.h).  A call goes to one
 * live member chosen by `balancer`.  A member whose calls fail
 * `accrual_failures` times in a row (connection lost, timeout, failed
 * connection attempt; a JSON-RPC error answer is a success) is *dead* for
 * a jittered back-off starting at `accrual_backoff` and doubling up to
 * `accrual_backoff_max`; then it is probed with one call, which revives it
 * or doubles the back-off.  When every member is dead a call fails at
 * once, naming them.  A call whose connection was lost before its answer
 * is retried on another member when its method was marked with
 * ct_rpc_client_set_idempotent(), within the retry budget and before its
 * timeout; otherwise it fails with a message saying that it may have run.
 */
typedef struct ct_rpc_client_options {
  ct_msg_options msg;   /**< the message protocol's limits and watermarks */
  double timeout;       /**< per-call timeout in seconds (default 30) */
  size_t max_queued;    /**< calls held while no connection is up
                             (default 10000; over it: CT_EQUEUEFULL) */
  double retry_initial; /**< first reconnect delay (default 0.5 s) */
  double retry_max;     /**< longest reconnect delay (default 30 s) */
  int no_deadline;      /**< 1: do not send deadline-ms */
  /** 1: when a connection attempt fails while no connection is up, the
   *  queued calls errback at once with that failure (naming the
   *  endpoint) instead of waiting for a later attempt: for command-line
   *  tools.  Reconnecting goes on either way. */
  int fail_fast;
  /** CT_RPC_BALANCE_P2C (default) or CT_RPC_BALANCE_ROUND_ROBIN. */
  int balancer;
  /** Consecutive failures that mark a member dead (default 5). */
  int accrual_failures;
  /** First dead time in seconds, jittered (default 1); doubles on every
   *  failed probe up to `accrual_backoff_max` (default 30). */
  double accrual_backoff;
  double accrual_backoff_max;
  /**
   * Seconds a member removed by ct_rpc_client_disconnect() keeps its
   * connection so that calls in flight get their answers and a re-add
   * revives it without reconnecting (Finagle's "limbo").  Because 0 is a
   * meaningful value ("close at once"), the default (40 s) is asked for
   * with any negative value or with `removal_window_set` left 0: set
   * `removal_window_set = 1` to use `removal_window` as given.
   */
  double removal_window;
  int removal_window_set;
  /** Retry budget (Finagle's RetryBudget): each call deposits
   *  `retry_budget_percent` percent of a retry (default 20), and
   *  `retry_budget_min_per_s` retries per second (default 10) are always
   *  allowed, over a window of CT_RPC_RETRY_WINDOW seconds.  A negative
   *  value means 0. */
  double retry_budget_percent;
  double retry_budget_min_per_s;
  /** Seed of the client's random numbers (balancer, jitter); 0: one drawn
   *  from the clock and the client's address.  Set for reproducible
   *  tests. */
  uint64_t seed;
  /**
   * How members connect; NULL: ct_connect().  Called as the reconnecting
   * client's `connect` (protocol.h, ct_reconnect_policy) with
   * `connect_arg`: tests connect members over in-memory transports.
   */
  ct_deferred *(*connect)(ct_reactor *r, const char *endpoint,
                          ct_client_factory *cf, void *arg);
  void *connect_arg;
} ct_rpc_client_options;

#define CT_RPC_TIMEOUT_DEFAULT 30.0
#define CT_RPC_MAX_QUEUED_DEFAULT 10000
#define CT_RPC_ACCRUAL_FAILURES_DEFAULT 5
#define CT_RPC_ACCRUAL_BACKOFF_DEFAULT 1.0
#define CT_RPC_ACCRUAL_BACKOFF_MAX_DEFAULT 30.0
#define CT_RPC_REMOVAL_WINDOW_DEFAULT 40.0
#define CT_RPC_RETRY_BUDGET_PERCENT_DEFAULT 20.0
#define CT_RPC_RETRY_BUDGET_MIN_PER_S_DEFAULT 10.0
/** The retry budget's window in seconds (Finagle's TTL). */
#define CT_RPC_RETRY_WINDOW 10

/** A JSON-RPC client holding one connection per server endpoint. */
typedef struct ct_rpc_client ct_rpc_client;

/** Create a client with no connection.  `opts` is copied (NULL:
 *  defaults).  Returns NULL if memory runs out. */
CT_EXTERN ct_rpc_client *ct_rpc_client_new(ct_reactor *r,
                                           const ct_rpc_client_options *opts);

/**
 * Add member `endpoint` (a client endpoint, see ct_connect(); copied):
 * keep a connection to it, reconnecting with jittered exponential back-off
 * (`retry_initial` doubling to `retry_max`) whenever it fails or ends.
 * Adding an endpoint already a member is a no-op; adding one in its
 * removal window revives it (its connection is kept).  Returns 0,
 * CT_EINVAL (bad endpoint) or CT_ENOMEM.
 */
CT_EXTERN int ct_rpc_client_connect(ct_rpc_client *c, const char *endpoint);

/**
 * Remove member `endpoint`: it takes no new call from now on; its calls
 * in flight still get their answers during the removal window, after
 * which its connection is closed (calls still in flight then fail as on a
 * lost connection, and idempotent ones are retried elsewhere).  A window
 * of 0 closes it at once.  Returns 0, or CT_ENOENT if `endpoint` is not a
 * member (or already being removed).
 */
CT_EXTERN int ct_rpc_client_disconnect(ct_rpc_client *c, const char *endpoint);

/**
 * Mark `method` (copied) as idempotent: safe to run twice, so a call to it
 * whose connection was lost before the answer is retried on another
 * member (within the retry budget).  Returns 0, CT_EINVAL or CT_ENOMEM.
 */
CT_EXTERN int ct_rpc_client_set_idempotent(ct_rpc_client *c,
                                           const char *method);

/** One member's state and counters (ct_rpc_client_members()). */
typedef struct ct_rpc_member_stats {
  const char *endpoint; /**< borrowed: valid until the member is removed */
  int up;               /**< 1: its connection is up */
  int dead;             /**< 1: marked dead by failure accrual */
  int removing;         /**< 1: in its removal window */
  size_t outstanding;   /**< calls sent to it and not answered yet */
  uint64_t calls;       /**< calls sent to it (retries included) */
  uint64_t failures;    /**< its failures as failure accrual counts
                             them: calls timed out, connection attempts
                             failed, connections lost */
  uint64_t retries;     /**< retried calls it received */
} ct_rpc_member_stats;

/**
 * Fill `out` with up to `max` members (in the order they were added;
 * connections made by the caller through ct_rpc_client_factory() are
 * members named after their peer).  Returns the number of members, which
 * may exceed `max`.
 */
CT_EXTERN size_t ct_rpc_client_members(const ct_rpc_client *c,
                                       ct_rpc_member_stats *out, size_t max);

/**
 * The factory building this client's connections (borrowed), for
 * connections made by the caller (ct_pump_connect_factories() in tests);
 * those are used like the others but not re-established.
 */
CT_EXTERN ct_factory *ct_rpc_client_factory(ct_rpc_client *c);

/** Live connections. */
CT_EXTERN size_t ct_rpc_client_connections(const ct_rpc_client *c);

/** Calls sent and not answered yet, over all connections. */
CT_EXTERN size_t ct_rpc_client_pending(const ct_rpc_client *c);

/** Calls held because no connection is up. */
CT_EXTERN size_t ct_rpc_client_queued(const ct_rpc_client *c);

/**
 * Call `method` with `params` (taken over; a JSON array, object, or NULL
 * for none) and the client's timeout.  Returns a Deferred (one reference
 * for the caller) that fires with a ct_rpc_value() of the result, or
 * errbacks with the JSON-RPC error (ct_rpc_error_new() form), CT_ETIMEDOUT,
 * CT_ECONNLOST (the message names the endpoint), CT_EQUEUEFULL, CT_EINVAL
 * (bad params) or CT_ECANCELLED.  Cancelling it sends rpc.cancel to the
 * server.  NULL only if memory runs out.
 */
CT_EXTERN ct_deferred *ct_rpc_call(ct_rpc_client *c, const char *method,
                                   json_t *params);

/** ct_rpc_call() with its own timeout in seconds (<= 0: none, and no
 *  deadline is sent). */
CT_EXTERN ct_deferred *ct_rpc_call_timeout(ct_rpc_client *c, const char *method,
                                           json_t *params, double timeout);

/**
 * Send a notification (no answer).  `params` is taken over.  Returns 0,
 * CT_EINVAL, CT_EQUEUEFULL (no connection and the queue is full) or
 * CT_ENOMEM.
 */
CT_EXTERN int ct_rpc_notify(ct_rpc_client *c, const char *method,
                            json_t *params);

/** One entry of a batch. */
typedef struct ct_rpc_batch_entry {
  const char *method;
  json_t *params; /**< taken over by ct_rpc_call_batch(); may be NULL */
  int notify;     /**< 1: a notification (no answer expected) */
} ct_rpc_batch_entry;

/**
 * Send `n` calls as one batch on one connection.  Every entry's params is
 * taken over.  The Deferred fires with a ct_rpc_value() of a JSON array of
 * `n` elements in the entries' order: the response object (with "result"
 * or "error") of each call, JSON null for notifications.  It errbacks as
 * ct_rpc_call() for the batch as a whole (timeout, loss, an error the
 * server sent for the whole batch).  A batch of only notifications fires
 * once it is sent.
 */
CT_EXTERN ct_deferred *ct_rpc_call_batch(ct_rpc_client *c,
                                         ct_rpc_batch_entry *entries, size_t n);

/**
 * Close every connection and stop reconnecting; pending and queued calls
 * errback with CT_ECANCELLED.  The connections finish closing on later
 * loop turns: turn the reactor (ct_reactor_iterate()) before freeing it.
 * Not from inside a callback of a Deferred the client is firing (stop the
 * reactor, or free it from a ct_call_later(0) call).  NULL is a no-op.
 */
CT_EXTERN void ct_rpc_client_free(ct_rpc_client *c);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_JSONRPC_H */
