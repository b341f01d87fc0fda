/**
 * @file policies.h
 * @brief Connection policies (Twisted's `twisted.protocols.policies`): idle
 *        timeouts, connection limits and bandwidth throttling.
 *
 * Three forms:
 *   - `ct_frame_deadline`, the frame-completion deadline (slow-loris
 *     defence) that the framing protocols apply by default;
 *   - `ct_idle_timeout`, a helper struct a protocol embeds to get Twisted's
 *     TimeoutMixin (set_timeout, reset on traffic, a timeout callback);
 *   - policy factories, which wrap any existing factory without changing
 *     its protocol (Twisted's ProtocolWrapper/WrappingFactory pattern):
 *     ct_timeout_factory_new(), ct_limit_factory_new(),
 *     ct_throttling_factory_new().  Each wrapped connection runs its
 *     protocol over a thin wrapper transport that forwards to the real one
 *     and lets the policy see traffic, so wrappers compose:
 * @code
 *   ct_factory echo;
 *   ct_echo_factory_init(&echo);
 *   ct_policy_factory *idle = ct_timeout_factory_new(&echo, 30.0);
 *   ct_policy_factory *lim = ct_limit_factory_new(
 *       ct_policy_factory_base(idle), 1000, 10);
 *   ct_listen(r, "tcp:7000", ct_policy_factory_base(lim), &err);
 * @endcode
 *
 * Lifetime: a policy factory is reference counted.  The creator holds one
 * reference, dropped by ct_policy_factory_free(); every connection it built
 * holds another until its protocol is released.  So the creator may free it
 * right after stopping its listening ports, while connections live on.  The
 * wrapped factory is borrowed and must outlive the policy factory.
 *
 * Timers run on the reactor clock of each connection's transport (a fake
 * clock in tests).  Not thread-safe.
 */
#ifndef CTWIST_POLICIES_H
#define CTWIST_POLICIES_H

#include <stddef.h>

#include "ctwist/error.h"
#include "ctwist/protocol.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ idle timeout */

typedef struct ct_idle_timeout ct_idle_timeout;

/** Called when the connection was idle for the timeout period. */
typedef void (*ct_idle_timeout_cb)(ct_idle_timeout *it, void *arg);

/**
 * An idle timer (Twisted's TimeoutMixin) to embed in a protocol's state.
 * Members are private; use the functions below.
 */
struct ct_idle_timeout {
  ct_reactor *reactor;   /**< explicit reactor, or NULL: the transport's */
  ct_protocol *protocol; /**< whose transport the default action aborts */
  ct_delayed_call *call; /**< the pending timer, or NULL */
  double timeout;        /**< seconds; 0 = disabled */
  ct_idle_timeout_cb cb; /**< NULL: abort the protocol's transport */
  void *arg;
  unsigned long fired; /**< times it timed out */
};

/**
 * Initialise `it` (no timer yet).  `r` may be NULL: the reactor of
 * `p->transport` is then used when a timer is armed.  `p` (borrowed) is the
 * protocol whose transport the default action aborts.  `cb` (may be NULL)
 * runs instead of the default action (Twisted's timeoutConnection).
 */
CT_EXTERN void ct_idle_timeout_init(ct_idle_timeout *it, ct_reactor *r,
                                    ct_protocol *p, ct_idle_timeout_cb cb,
                                    void *arg);

/**
 * Set the timeout period and (re)start the timer: it fires after `seconds`
 * without a ct_idle_timeout_reset().  `seconds` <= 0 disables it (Twisted's
 * setTimeout(None)).  Returns 0; CT_EINVAL for NULL or a non-finite period;
 * CT_ESTATE when no reactor is known (no explicit one and no transport);
 * CT_ENOMEM.
 */
CT_EXTERN int ct_idle_timeout_set(ct_idle_timeout *it, double seconds);

/** The configured period (0 when disabled). */
CT_EXTERN double ct_idle_timeout_get(const ct_idle_timeout *it);

/**
 * There was traffic: push the deadline to now + period (Twisted's
 * resetTimeout).  No-op while disabled or after the timer fired.
 */
CT_EXTERN void ct_idle_timeout_reset(ct_idle_timeout *it);

/**
 * Stop the timer (keeps the period; ct_idle_timeout_set() restarts it).
 * Call it from connection_lost, before the state holding `it` is freed.
 * NULL is a no-op.
 */
CT_EXTERN void ct_idle_timeout_cancel(ct_idle_timeout *it);

/** 1 while a timer is pending. */
CT_EXTERN int ct_idle_timeout_pending(const ct_idle_timeout *it);

/* ---------------------------------------------------- frame deadline */

/** Default seconds a started frame may take (Apache mod_reqtimeout's
 *  header=20). */
#define CT_FRAME_TIMEOUT_DEFAULT 20.0
/** Default minimum rate in bytes per second (mod_reqtimeout's MinRate=500):
 *  each byte of a frame received extends its deadline by 1/500 s. */
#define CT_FRAME_MIN_RATE_DEFAULT 500.0
/** Seconds a connection closed after a protocol error may take to flush
 *  what it is owed before it is aborted. */
#define CT_ERROR_CLOSE_TIMEOUT 10.0

/**
 * The frame-completion deadline of a framing protocol (the slow-loris
 * defence; nginx's client_header_timeout/client_body_timeout, Apache's
 * mod_reqtimeout).  Once the first byte of a frame arrived, the rest of
 * the frame must arrive within `timeout` seconds, extended by one second
 * for every `min_rate` bytes of it received, up to `max_timeout` seconds
 * after its first byte.  Otherwise the connection is closed with a
 * CT_ETIMEDOUT failure naming the deadline.  While the receiver is paused
 * (by the user or because the peer does not read its replies) the clock
 * is stopped: a frame is only late through the peer's fault.
 *
 * The line, netstring and intN receivers (basic.h) and the message
 * protocol (message.h) apply it; zero members mean the defaults, so a
 * protocol configured with nothing is protected:
 *   - `timeout`: 0 = CT_FRAME_TIMEOUT_DEFAULT (20 s); < 0 disables the
 *     deadline altogether;
 *   - `min_rate`: 0 = CT_FRAME_MIN_RATE_DEFAULT (500 B/s); < 0 = no
 *     extension (a fixed deadline);
 *   - `max_timeout`: 0 = no cap (the frame size limits bound the frame);
 *     otherwise the longest a frame may take, in seconds.
 * A trickle of one byte every 3 s of a frame that never completes is cut
 * after ~20 s; a peer sending at 500 B/s or faster is never cut.
 */
typedef struct ct_frame_deadline {
  double timeout;
  double min_rate;
  double max_timeout;
} ct_frame_deadline;

/* --------------------------------------------------------- policy factory */

/** A factory wrapping another with a policy.  Opaque. */
typedef struct ct_policy_factory ct_policy_factory;

/**
 * The factory to listen or connect with (borrowed from `pf`, valid while
 * `pf` is referenced).
 */
CT_EXTERN ct_factory *ct_policy_factory_base(ct_policy_factory *pf);

/** The wrapped factory. */
CT_EXTERN ct_factory *ct_policy_factory_wrapped(ct_policy_factory *pf);

/** Connections built through `pf` that have not been released yet. */
CT_EXTERN unsigned ct_policy_factory_connections(const ct_policy_factory *pf);

/** Connections `pf` refused (limits). */
CT_EXTERN unsigned long ct_policy_factory_refused(const ct_policy_factory *pf);

/**
 * Drop the creator's reference.  The memory goes when the last connection
 * built through `pf` has been released.  Stop the listening ports using it
 * first.  NULL is a no-op.
 */
CT_EXTERN void ct_policy_factory_free(ct_policy_factory *pf);

/**
 * The protocol a wrapped connection hands to the wrapped factory's protocol,
 * i.e. the inner protocol of a wrapper `p` built by a policy factory, or
 * `p` itself when it is not a wrapper.  For tests and introspection.
 */
CT_EXTERN ct_protocol *ct_policy_inner_protocol(ct_protocol *p);

/**
 * Idle timeout for every connection of `wrapped` (Twisted's TimeoutFactory
 * and TimeoutProtocol): the timer starts at connection_made, is reset by
 * every chunk received and every write, and when it fires the connection is
 * aborted (the inner protocol's connection_lost sees CT_ECONNABORTED) and an
 * info line is logged.  `seconds` > 0.  Returns NULL for bad arguments or no
 * memory.
 */
CT_EXTERN ct_policy_factory *ct_timeout_factory_new(ct_factory *wrapped,
                                                    double seconds);

/**
 * Change the idle timeout of one live connection built by a timeout factory
 * (`p` is the inner protocol, as passed to its callbacks); `seconds` <= 0
 * disables it.  Returns 0, CT_EINVAL if `p` is not such a connection, or
 * the errors of ct_idle_timeout_set().
 */
CT_EXTERN int ct_timeout_set(ct_protocol *p, double seconds);

/**
 * A frame-deadline policy: every frame-aware protocol (the receivers of
 * basic.h, the message protocol) built by `wrapped` uses `deadline`
 * (copied; see ct_frame_deadline) instead of the deadline its own options
 * set.  Protocols that have no frames (echo, discard) are unaffected.
 * This is how ctwistd's --frame-timeout/--frame-min-rate reach a plugin's
 * protocol.  Returns NULL for bad arguments (NULL, a non-finite member)
 * or no memory.
 */
CT_EXTERN ct_policy_factory *
ct_frame_deadline_factory_new(ct_factory *wrapped,
                              const ct_frame_deadline *deadline);

/**
 * Connection limits (Twisted's LimitTotalConnectionsFactory and
 * LimitConnectionsByPeer): at most `max_total` connections at a time (0 =
 * no limit) and at most `max_per_peer` from one peer host, the IP address
 * without the port (0 = no limit; all Unix-socket peers count as one host).
 * An extra connection is refused at once (build_protocol returns NULL, so
 * the listener closes it) with a warning logged under module "policies";
 * existing connections are untouched.  Returns NULL for bad arguments or no
 * memory.
 */
CT_EXTERN ct_policy_factory *ct_limit_factory_new(ct_factory *wrapped,
                                                  unsigned max_total,
                                                  unsigned max_per_peer);

/**
 * Bandwidth caps shared by all connections of the factory (Twisted's
 * ThrottlingFactory), in bytes per second, 0 = no cap:
 *   - reading: once `read_limit` bytes were received in the current second,
 *     every connection stops reading until the next tick (the chunk that
 *     crosses the cap is still delivered; the excess is carried into the
 *     next second, so the long-run rate stays at the cap);
 *   - writing: the wrapper transport passes at most `write_limit` bytes per
 *     second to the real transports and holds the rest, releasing it on the
 *     next ticks; held bytes count as buffered output, so the watermarks
 *     pause the protocol's producer and, if it opted in, its reading.
 * Ticks run every second on `r`'s clock while the factory has connections.
 * Returns NULL for bad arguments or no memory.
 */
CT_EXTERN ct_policy_factory *ct_throttling_factory_new(ct_reactor *r,
                                                       ct_factory *wrapped,
                                                       size_t read_limit,
                                                       size_t write_limit);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_POLICIES_H */
