/**
 * @file zk.h
 * @brief A ZooKeeper session driven by the reactor: operations that return
 *        Deferreds, watches that stay armed, and ephemeral registrations
 *        that survive connection loss and session expiry (docs/discovery.md).
 *
 * The client is Debian's single-threaded ZooKeeper C library
 * (libzookeeper-st).  It runs no thread: `zookeeper_interest()` names a
 * descriptor, the events it waits for and a timeout; the session watches
 * that descriptor and arms a timer on the reactor, calls
 * `zookeeper_process()` when either fires, and asks for interest again
 * after every call into the library.  Nothing is shared across `fork()`:
 * a child process opens its own session (ct_zk_new() after the fork).
 *
 * ## Sessions
 * A session is connected, or connecting (the library moves from server to
 * server of the ensemble on its own; watches and ephemeral nodes survive
 * within the session).  Session expiry is terminal for a ZooKeeper handle:
 * the session closes it, opens a new one after a jittered back-off, then
 * re-arms every watch and re-creates every registration (see
 * ct_zk_register()).
 *
 * ## Errors
 * A failure from ZooKeeper has the domain CT_ZK_DOMAIN ("zookeeper"), the
 * library's code (CT_ZK_ENONODE, ...) and a message naming the operation
 * and the path.  An operation issued while the session is connecting is
 * queued by the library and sent once it connects, or fails with
 * CT_ZK_ECONNECTIONLOSS if that attempt fails (a create may then still
 * have happened: see ct_zk_register()); one issued while the handle is
 * replaced after expiry fails with CT_ZK_ESESSIONEXPIRED.
 *
 * Not thread-safe: use everything on its reactor's thread.
 */
#ifndef CTWIST_ZK_H
#define CTWIST_ZK_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/deferred.h"
#include "ctwist/error.h"
#include "ctwist/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The failure domain of ZooKeeper errors. */
#define CT_ZK_DOMAIN "zookeeper"

/** ZooKeeper's error codes (the C library's values). */
enum {
  CT_ZK_ECONNECTIONLOSS = -4,   /**< the connection dropped mid-request */
  CT_ZK_EOPERATIONTIMEOUT = -7, /**< no answer in time */
  CT_ZK_ENONODE = -101,         /**< no such node */
  CT_ZK_EBADVERSION = -103,     /**< the version did not match */
  CT_ZK_ENODEEXISTS = -110,     /**< the node exists already */
  CT_ZK_ENOTEMPTY = -111,       /**< the node has children */
  CT_ZK_ESESSIONEXPIRED = -112, /**< the session expired */
  CT_ZK_ECLOSING = -116         /**< the session is being closed */
};

/** Flags of ct_zk_create(). */
enum {
  CT_ZK_EPHEMERAL = 1, /**< deleted when the session ends */
  CT_ZK_SEQUENCE = 2   /**< ZooKeeper appends a 10-digit counter */
};

/** A session with a ZooKeeper ensemble. */
typedef struct ct_zk ct_zk;

/** Options of a session; zero members mean the defaults. */
typedef struct ct_zk_options {
  double session_timeout; /**< asked of the server (default 10 s; the
                               server clamps it to 2..20 ticks) */
  double connect_timeout; /**< ct_zk_connected() gives up after this long
                               (default 15 s) */
  double backoff_initial; /**< delay before a new session after expiry
                               (default 0.5 s, jittered, doubling) */
  double backoff_max;     /**< longest such delay (default 10 s) */
} ct_zk_options;

#define CT_ZK_SESSION_TIMEOUT_DEFAULT 10.0
#define CT_ZK_CONNECT_TIMEOUT_DEFAULT 15.0

/** The state of a session, as ct_zk_state() reports it. */
typedef enum ct_zk_state_t {
  CT_ZK_CONNECTING = 0, /**< no server reachable yet, or reconnecting */
  CT_ZK_CONNECTED = 1,  /**< the session is usable */
  CT_ZK_EXPIRED = 2,    /**< expired: a new session is on its way */
  CT_ZK_CLOSED = 3      /**< ct_zk_free() has begun */
} ct_zk_state_t;

/** Called on every change of state. */
typedef void (*ct_zk_state_cb)(ct_zk *zk, ct_zk_state_t state, void *arg);

/**
 * Open a session with `ensemble`, "HOST:PORT[,HOST:PORT...]" optionally
 * followed by a chroot path ("h1:2181,h2:2181/app").  Connecting goes on
 * in the background; use ct_zk_connected() to wait for it.  `opts` is
 * copied (NULL: defaults).  Returns NULL with `*err` (if non-NULL) set for
 * a bad ensemble string or when memory runs out.  Free with ct_zk_free().
 */
CT_EXTERN ct_zk *ct_zk_new(ct_reactor *r, const char *ensemble,
                           const ct_zk_options *opts, ct_failure **err);

/**
 * Close the session (its ephemeral nodes go at once) and free it.  Pending
 * operations errback with CT_ZK_ECLOSING, watches and registrations are
 * released (their callbacks do not run again).  Not from inside one of its
 * own callbacks.  NULL is a no-op.
 */
CT_EXTERN void ct_zk_free(ct_zk *zk);

/**
 * A Deferred (one reference for the caller) that fires with CT_NONE once a
 * session is connected (at once if it is), or errbacks with CT_ETIMEDOUT
 * naming the ensemble when none is within the connect timeout.
 */
CT_EXTERN ct_deferred *ct_zk_connected(ct_zk *zk);

/** The current state. */
CT_EXTERN ct_zk_state_t ct_zk_state(const ct_zk *zk);

/** The id of the current session, 0 before the first one connects. */
CT_EXTERN int64_t ct_zk_session_id(const ct_zk *zk);

/** Sessions established so far (1 after the first connect, 2 after one
 *  expiry and a new session, ...). */
CT_EXTERN uint64_t ct_zk_sessions(const ct_zk *zk);

/** The ensemble string given to ct_zk_new() (borrowed). */
CT_EXTERN const char *ct_zk_ensemble(const ct_zk *zk);

/** Set the state observer (replaces the previous one; NULL removes it). */
CT_EXTERN void ct_zk_on_state(ct_zk *zk, ct_zk_state_cb cb, void *arg);

/** A node's metadata (ZooKeeper's Stat, the fields ctwist uses). */
typedef struct ct_zk_stat {
  int64_t czxid, mzxid;
  int64_t ephemeral_owner; /**< the owning session, 0 for persistent */
  int32_t version;         /**< data version */
  int32_t num_children;
  int32_t data_length;
} ct_zk_stat;

/** A node's data and metadata: what ct_zk_get() fires with. */
typedef struct ct_zk_node {
  char *data; /**< NUL-terminated copy (`len` bytes before the NUL) */
  size_t len;
  ct_zk_stat stat;
} ct_zk_node;

/** A list of child names: what ct_zk_get_children() fires with. */
typedef struct ct_zk_children {
  size_t n;
  char **names; /**< `n` NUL-terminated names, sorted */
} ct_zk_children;

/** Free what the operations fire with (a ct_value's destructor). */
CT_EXTERN void ct_zk_node_free(void *node);
CT_EXTERN void ct_zk_children_free(void *children);

/**
 * Create `path` with `len` bytes of `data` (copied) and CT_ZK_* `flags`,
 * open to everyone (ZooKeeper's OPEN_ACL_UNSAFE).  Fires with the created
 * path (a `char *`, freed with the value; with CT_ZK_SEQUENCE it carries
 * the counter).  Errbacks as described in the file comment.  Every
 * operation returns one reference for the caller, or NULL if memory runs
 * out.
 */
CT_EXTERN ct_deferred *ct_zk_create(ct_zk *zk, const char *path,
                                    const void *data, size_t len, int flags);

/** Create `path` and its missing ancestors as empty persistent nodes;
 *  nodes that exist already are fine.  Fires with CT_NONE. */
CT_EXTERN ct_deferred *ct_zk_ensure_path(ct_zk *zk, const char *path);

/** Delete `path` if its version is `version` (-1: any).  Fires with
 *  CT_NONE. */
CT_EXTERN ct_deferred *ct_zk_delete(ct_zk *zk, const char *path, int version);

/** Read `path`: fires with a ct_zk_node. */
CT_EXTERN ct_deferred *ct_zk_get(ct_zk *zk, const char *path);

/** Fires with the ct_zk_stat of `path` (value owning a malloc'd copy), or
 *  with a NULL value when it does not exist. */
CT_EXTERN ct_deferred *ct_zk_exists(ct_zk *zk, const char *path);

/** The children of `path`: fires with a ct_zk_children. */
CT_EXTERN ct_deferred *ct_zk_get_children(ct_zk *zk, const char *path);

/* ----------------------------------------------------------------- watches */

/** A watch that stays armed until cancelled. */
typedef struct ct_zk_watch ct_zk_watch;

/**
 * Called with the children of the watched path (borrowed for the call;
 * `kids` NULL and `f` NULL: the path does not exist), or with `f` set
 * (borrowed) when the session lost its connection: the caller should keep
 * what it knew.  `w` may be cancelled from here.
 */
typedef void (*ct_zk_children_cb)(ct_zk_watch *w, const ct_zk_children *kids,
                                  const ct_failure *f, void *arg);

/**
 * Watch the children of `path`: `cb` runs with the current list now (once
 * read), on every change, after every reconnection and after every new
 * session.  ZooKeeper's watches are one-shot: this one is re-armed each
 * time it fires.  While `path` does not exist, its creation is watched.
 * Returns NULL if memory runs out.
 */
CT_EXTERN ct_zk_watch *ct_zk_watch_children(ct_zk *zk, const char *path,
                                            ct_zk_children_cb cb, void *arg);

/** Called with the watched node's data (borrowed; NULL with `f` NULL: the
 *  node does not exist), or with `f` when the connection is lost. */
typedef void (*ct_zk_node_cb)(ct_zk_watch *w, const ct_zk_node *node,
                              const ct_failure *f, void *arg);

/** Watch one node's existence and data, as ct_zk_watch_children(). */
CT_EXTERN ct_zk_watch *ct_zk_watch_node(ct_zk *zk, const char *path,
                                        ct_zk_node_cb cb, void *arg);

/** Stop a watch: its callback does not run again.  Safe from inside it.
 *  NULL is a no-op. */
CT_EXTERN void ct_zk_watch_cancel(ct_zk_watch *w);

/* ----------------------------------------------------------- registrations */

/** An ephemeral sequential node this process keeps alive. */
typedef struct ct_zk_registration ct_zk_registration;

/**
 * Keep an ephemeral sequential node under `parent` (created with its
 * ancestors) holding `len` bytes of `data` (copied), for as long as the
 * registration lives:
 *  - its name is "<ID>-<counter>" where ID (copied; at most 63 characters,
 *    no '/') is unique to this process and registration; NULL: generated,
 *    "<GUID>-<n>" with a random per-process GUID (ct_zk_guid());
 *  - a create that ended with CONNECTION_LOSS may have succeeded: before
 *    trying again, the children of `parent` are searched for ID, and a node
 *    found there owned by this session is adopted;
 *  - after session expiry, the new session looks for ID too: a node that
 *    still exists is adopted when its `ephemeralOwner` is the new session,
 *    and otherwise (the old session's, not yet reaped, or anyone else's)
 *    deleted and created again, so exactly one node remains.
 * Returns NULL for a bad ID or if memory runs out.
 */
CT_EXTERN ct_zk_registration *ct_zk_register(ct_zk *zk, const char *parent,
                                             const char *id, const void *data,
                                             size_t len);

/** This session object's random GUID (32 hex digits, borrowed): the start
 *  of every ID it generates, for callers that build their own IDs. */
CT_EXTERN const char *ct_zk_guid(const ct_zk *zk);

/** The ID part of the node's name (borrowed). */
CT_EXTERN const char *ct_zk_registration_id(const ct_zk_registration *g);

/** The node's current path (borrowed), or NULL while it is being
 *  (re)created. */
CT_EXTERN const char *ct_zk_registration_path(const ct_zk_registration *g);

/** How many times the node was created (1 after the first create, one
 *  more per re-creation after expiry). */
CT_EXTERN uint64_t ct_zk_registration_creates(const ct_zk_registration *g);

/**
 * Delete the node and free the registration.  Returns a Deferred that
 * fires with CT_NONE once the node is deleted (or was already gone), or
 * errbacks when ZooKeeper cannot be reached (the node then goes when the
 * session expires or closes).  NULL if memory runs out (the registration
 * is freed anyway).
 */
CT_EXTERN ct_deferred *ct_zk_unregister(ct_zk_registration *g);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_ZK_H */
