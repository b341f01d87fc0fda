/**
 * @file process.h
 * @brief Child processes with a process protocol (Twisted's
 *        reactor.spawnProcess and ProcessProtocol).
 *
 * ct_spawn_process() starts a program with posix_spawn (every descriptor
 * ctwist opens is close-on-exec, so the child gets only its three standard
 * descriptors), connects its stdin, stdout and stderr to the reactor, and
 * reports to a `ct_process_protocol_ops`:
 *
 *   connection_made -> out_received / err_received ... -> in/out/err
 *   connection_lost (as each pipe closes) -> process_exited (reaped) ->
 *   process_ended (exited and every pipe closed; the last call)
 *
 * The pipes are Unix stream socket pairs (as libuv does), carried by the
 * ordinary stream transport: writes to the child's stdin are buffered with
 * the usual watermarks, and a producer registered on
 * ct_process_stdin(p) is paused while a slow child lets output pile up.
 *
 * Children are reaped on SIGCHLD, which the reactor handles (through
 * libevent's signal event) once a process has been spawned on it: each
 * SIGCHLD runs waitpid(pid, WNOHANG) for every child the reactor started,
 * so none is left a zombie however many exit at once.  Children started
 * otherwise are not touched.
 *
 * Not thread-safe: use on the reactor thread.
 */
#ifndef CTWIST_PROCESS_H
#define CTWIST_PROCESS_H

#include <stddef.h>
#include <sys/types.h>

#include "ctwist/error.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_process ct_process;

/**
 * What the parent hears from a child.  Every callback is optional and runs
 * on the reactor thread with the `arg` given to ct_spawn_process().
 * Data is borrowed for the call only.
 */
typedef struct ct_process_protocol_ops {
  /** The child is running and its pipes are connected. */
  void (*connection_made)(ct_process *p, void *arg);
  /** Bytes the child wrote to its stdout. */
  void (*out_received)(ct_process *p, const char *data, size_t len, void *arg);
  /** Bytes the child wrote to its stderr. */
  void (*err_received)(ct_process *p, const char *data, size_t len, void *arg);
  /** The child's stdin is closed: by ct_process_close_stdin() once the
   *  queued bytes were written, or because the child closed it or exited
   *  (then unwritten bytes are dropped). */
  void (*in_connection_lost)(ct_process *p, void *arg);
  /** The child's stdout reached end of file. */
  void (*out_connection_lost)(ct_process *p, void *arg);
  /** The child's stderr reached end of file. */
  void (*err_connection_lost)(ct_process *p, void *arg);
  /**
   * The child has exited and been reaped (its pipes may still be open).
   * `reason` is borrowed: CT_ECONNDONE for exit code 0, CT_EPROCESS_EXIT
   * for another code ("process 4242 (sh) exited with code 3"),
   * CT_EPROCESS_SIGNAL when a signal killed it ("... was killed by signal
   * 9 (Killed)"); ct_process_exit_code() / ct_process_exit_signal() give
   * the numbers.
   */
  void (*process_exited)(ct_process *p, const ct_failure *reason, void *arg);
  /**
   * The child has exited and all its pipes are closed: the last callback.
   * `reason` as for process_exited.  The handle `p` is freed when this
   * returns.
   */
  void (*process_ended)(ct_process *p, const ct_failure *reason, void *arg);
} ct_process_protocol_ops;

/** How to set up one of the child's standard descriptors. */
typedef enum ct_child_fd_kind {
  CT_CHILD_PIPE = 0, /**< connected to the reactor (the default) */
  CT_CHILD_DEVNULL,  /**< /dev/null */
  CT_CHILD_INHERIT,  /**< the parent's own descriptor of that number */
  CT_CHILD_FD        /**< the parent's descriptor `fd` (dup2'ed) */
} ct_child_fd_kind;

/** One standard descriptor of the child (the fd map). */
typedef struct ct_child_fd {
  ct_child_fd_kind kind;
  int fd; /**< for CT_CHILD_FD */
} ct_child_fd;

/** Options of ct_spawn_process(); all zeros is the default. */
typedef struct ct_process_options {
  /** Environment, NULL-terminated "NAME=value" strings; NULL: inherit. */
  const char *const *env;
  /** Working directory; NULL: inherit. */
  const char *cwd;
  /** stdin, stdout, stderr; default: pipes to the reactor. */
  ct_child_fd fds[3];
} ct_process_options;

/**
 * Start `argv[0]` (looked up in PATH when it has no '/') with arguments
 * `argv` (NULL-terminated).  The child starts with default signal
 * dispositions and an empty signal mask (the reactor's ignored SIGPIPE is
 * not inherited).  `ops` is borrowed and must outlive the process; `opts`
 * may be NULL.
 *
 * Returns the process, valid until process_ended returns.  On error
 * returns NULL and no callback ever runs; `*err` (if not NULL) gets a
 * failure the caller owns, naming the program and the reason: CT_ENOENT
 * (no such program -- not a silent exit 127), CT_EACCES, CT_EINVAL (empty
 * argv, a bad fd map), CT_EMFILE, CT_ENOMEM...
 */
CT_EXTERN ct_process *ct_spawn_process(ct_reactor *r,
                                       const ct_process_protocol_ops *ops,
                                       void *arg, const char *const *argv,
                                       const ct_process_options *opts,
                                       ct_failure **err);

/**
 * Queue bytes for the child's stdin.  Returns 0, or CT_ECLOSED when stdin
 * is not a pipe or is closed.  Memory: see ct_process_stdin().
 */
CT_EXTERN int ct_process_write(ct_process *p, const void *data, size_t len);

/** Close the child's stdin once the queued bytes are written (the child
 *  reads end of file).  Returns 0 or CT_ECLOSED. */
CT_EXTERN int ct_process_close_stdin(ct_process *p);

/**
 * Send `signum` to the child.  Returns 0, CT_ESTATE once it has been
 * reaped (its pid may belong to another process by then), or the negated
 * errno of kill().
 */
CT_EXTERN int ct_process_signal(ct_process *p, int signum);

/**
 * The transport carrying the child's stdin, or NULL when it is not a pipe
 * or has closed: register a producer on it (ct_transport_register_producer)
 * to be paused while the child reads slowly, or set its watermarks.
 * Borrowed; valid until in_connection_lost.
 */
CT_EXTERN ct_transport *ct_process_stdin(ct_process *p);

/** The child's process id. */
CT_EXTERN pid_t ct_process_pid(const ct_process *p);

/** The exit code once exited normally, else -1. */
CT_EXTERN int ct_process_exit_code(const ct_process *p);

/** The signal that killed the child, else 0. */
CT_EXTERN int ct_process_exit_signal(const ct_process *p);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_PROCESS_H */
