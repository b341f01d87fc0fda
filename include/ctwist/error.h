/**
 * @file error.h
 * @brief Error codes and failures: the one error convention of ctwist.
 *
 * Synchronous calls return 0 (or a non-negative count) on success and a
 * negative `ct_err` code on failure.  System errors are the negated errno
 * (`-ECONNREFUSED`), so `ct_strerror(-errno)` always works; ctwist's own
 * conditions have codes below -4000.  When a call that takes a callback
 * fails synchronously, its callback is never called (libuv's rule).
 *
 * Asynchronous errors travel as a `ct_failure`: a code, a domain, a
 * formatted message, an optional cause (a chain) and the file:line where it
 * was created -- Twisted's Failure, made explicit.
 */
#ifndef CTWIST_ERROR_H
#define CTWIST_ERROR_H

#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a public symbol; everything else in the library is hidden. */
#define CT_EXTERN __attribute__((visibility("default")))

/** printf-style format checking for the library's variadic functions. */
#define CT_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))

/**
 * The ctwist error list: X(name, value, message).  System errors keep their
 * errno value (negated); ctwist's own start at -4001.
 */
#define CT_ERRNO_MAP(X)                                                        \
  X(EPERM, -EPERM, "operation not permitted")                                  \
  X(ENOENT, -ENOENT, "no such file or directory")                              \
  X(EINTR, -EINTR, "interrupted system call")                                  \
  X(EBADF, -EBADF, "bad file descriptor")                                      \
  X(EAGAIN, -EAGAIN, "resource temporarily unavailable")                       \
  X(ENOMEM, -ENOMEM, "not enough memory")                                      \
  X(EACCES, -EACCES, "permission denied")                                      \
  X(EBUSY, -EBUSY, "resource busy")                                            \
  X(EEXIST, -EEXIST, "already exists")                                         \
  X(EINVAL, -EINVAL, "invalid argument")                                       \
  X(ENFILE, -ENFILE, "file table overflow")                                    \
  X(EMFILE, -EMFILE, "too many open files")                                    \
  X(EPIPE, -EPIPE, "broken pipe")                                              \
  X(ERANGE, -ERANGE, "result out of range")                                    \
  X(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                              \
  X(ENOSYS, -ENOSYS, "function not implemented")                               \
  X(EMSGSIZE, -EMSGSIZE, "message too long")                                   \
  X(EPROTO, -EPROTO, "protocol error")                                         \
  X(EADDRINUSE, -EADDRINUSE, "address already in use")                         \
  X(EADDRNOTAVAIL, -EADDRNOTAVAIL, "address not available")                    \
  X(ENETUNREACH, -ENETUNREACH, "network is unreachable")                       \
  X(ECONNABORTED, -ECONNABORTED, "connection aborted")                         \
  X(ECONNRESET, -ECONNRESET, "connection reset by peer")                       \
  X(ENOTCONN, -ENOTCONN, "socket is not connected")                            \
  X(ETIMEDOUT, -ETIMEDOUT, "timed out")                                        \
  X(ECONNREFUSED, -ECONNREFUSED, "connection refused")                         \
  X(EHOSTUNREACH, -EHOSTUNREACH, "host is unreachable")                        \
  X(EALREADY_CALLED, -4001, "already called")                                  \
  X(EALREADY_CANCELLED, -4002, "already cancelled")                            \
  X(ECANCELLED, -4003, "cancelled")                                            \
  X(ENOTRUNNING, -4004, "reactor is not running")                              \
  X(ECONNDONE, -4005, "connection was closed cleanly")                         \
  X(ECONNLOST, -4006, "connection was lost")                                   \
  X(EBADENDPOINT, -4007, "bad endpoint description")                           \
  X(EPARSE, -4008, "malformed input")                                          \
  X(ETOOBIG, -4009, "over the configured limit")                               \
  X(ECLOSED, -4010, "object is closed")                                        \
  X(EQUEUEFULL, -4011, "queue is full")                                        \
  X(EQUEUEEMPTY, -4012, "queue is empty")                                      \
  X(ENOTFOUND, -4013, "not found")                                             \
  X(ESTATE, -4014, "operation not valid in the current state")                 \
  X(EUSER, -4015, "error raised by user code")                                 \
  X(EDNS, -4016, "host name lookup failed")                                    \
  X(EFIRST_ERROR, -4017, "first error in a deferred list")                     \
  X(ESLOWCONSUMER, -4040, "slow consumer: output over the limit")              \
  X(EPROCESS_EXIT, -4060, "process exited with a non-zero code")               \
  X(EPROCESS_SIGNAL, -4061, "process was killed by a signal")

/** Error codes: `CT_EINVAL`, `CT_EALREADY_CALLED`, ... (all negative). */
typedef enum ct_err {
  CT_OK = 0,
#define CT_ERR_ENUM_(name, value, msg) CT_##name = (value),
  CT_ERRNO_MAP(CT_ERR_ENUM_)
#undef CT_ERR_ENUM_
} ct_err;

/**
 * The message for an error code.  Known codes get ctwist's text, other
 * negated errno values the C library's; never returns NULL.  The string is
 * static or thread-local: do not free it.
 */
CT_EXTERN const char *ct_strerror(int err);

/** The symbolic name of an error code ("ECONNREFUSED"), or "UNKNOWN". */
CT_EXTERN const char *ct_err_name(int err);

/**
 * A failure: the asynchronous form of an error.
 *
 * Ownership: a `ct_failure *` has exactly one owner.  Functions that take a
 * failure say whether they take it (errback, raise) or borrow it
 * (connection_lost).  The owner releases it with ct_failure_free(), which
 * also frees its cause chain.  Fields are read-only for users.
 */
typedef struct ct_failure {
  int code;                 /**< a ct_err code (negative) */
  const char *domain;       /**< static string: "ctwist", "tcp", "user", ... */
  char *message;            /**< formatted text, owned */
  struct ct_failure *cause; /**< what caused this one, owned, or NULL */
  const char *file;         /**< where it was created (static string) */
  int line;
  /** A code-specific number, -1 when none: for CT_EFIRST_ERROR, the index
   *  of the Deferred that failed (see ct_first_error_index()).  Copied by
   *  ct_failure_copy(). */
  long detail;
} ct_failure;

/**
 * Create a failure with a printf-style message; use the ct_failure_new()
 * macro, which records the caller's file and line.  `cause` (may be NULL) is
 * taken over.  Never returns NULL: if memory runs out, a static
 * out-of-memory failure that ct_failure_free() ignores is returned.
 */
CT_EXTERN ct_failure *ct_failure_new_at(const char *file, int line,
                                        const char *domain, int code,
                                        ct_failure *cause, const char *fmt, ...)
    CT_PRINTF(6, 7);

/** New failure in the "ctwist" domain: ct_failure_new(CT_EINVAL, "bad %s", x).
 */
#define ct_failure_new(code, ...)                                              \
  ct_failure_new_at(__FILE__, __LINE__, "ctwist", (code), NULL, __VA_ARGS__)

/** New failure in a given domain, wrapping `cause` (taken over). */
#define ct_failure_wrap(domain, code, cause, ...)                              \
  ct_failure_new_at(__FILE__, __LINE__, (domain), (code), (cause), __VA_ARGS__)

/** New failure from a negated errno, message "<what>: <strerror>". */
#define ct_failure_errno(err, what)                                            \
  ct_failure_new_at(__FILE__, __LINE__, "os", (err), NULL, "%s: %s", (what),   \
                    ct_strerror(err))

/** Deep copy of a failure and its cause chain (the copy has one owner). */
CT_EXTERN ct_failure *ct_failure_copy(const ct_failure *f);

/** Free a failure and its cause chain.  NULL is a no-op. */
CT_EXTERN void ct_failure_free(ct_failure *f);

/** 1 if `f` or anything in its cause chain has code `code`. */
CT_EXTERN int ct_failure_check(const ct_failure *f, int code);

/**
 * Render the whole chain into `buf` (always NUL-terminated when len > 0),
 * one line per link, "[domain] NAME: message (file.c:line)", the causes
 * prefixed with "\n  caused by: ":
 *   [tcp] ECONNREFUSED: connect to 127.0.0.1:1 (tcp.c:88)
 *     caused by: [os] ECONNREFUSED: connect: connection refused (tcp.c:80)
 * A failure without a message shows ct_strerror(code).  Returns the length
 * the full text needs (excluding the NUL), like snprintf; NULL renders as
 * the empty string.
 */
CT_EXTERN size_t ct_failure_format(const ct_failure *f, char *buf, size_t len);

/** Write the rendered chain to a stdio stream. */
CT_EXTERN void ct_failure_print(const ct_failure *f, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_ERROR_H */
