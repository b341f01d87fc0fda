/*
 * reactor/child.h: reaping child processes on the reactor.  Internal; the
 * public face is ct_spawn_process() (include/ctwist/process.h).
 *
 * The first watch installs a SIGCHLD handler on the reactor (libevent's
 * evsignal, so it runs on the reactor thread).  Each SIGCHLD -- signals
 * coalesce, so one may stand for many exits -- runs waitpid(pid, WNOHANG)
 * for every watched child, never waitpid(-1): children the reactor did not
 * start (a supervisor's own workers) are left to their owner.
 */
#ifndef CT_REACTOR_CHILD_H
#define CT_REACTOR_CHILD_H

#include <sys/types.h>

#include "ctwist/reactor.h"

/* `status` as from waitpid(). */
typedef void (*ct__child_cb)(pid_t pid, int status, void *arg);

/* Call `cb` on the reactor thread once `pid` (a child of this process) has
 * exited and been reaped.  Never calls it from inside this function: a
 * child that is already gone is reaped on a later loop turn.  Returns 0,
 * CT_EINVAL or CT_ENOMEM. */
int ct__child_watch(ct_reactor *r, pid_t pid, ct__child_cb cb, void *arg);

/* Stop watching `pid` (its callback will not run; it is not reaped). */
void ct__child_unwatch(ct_reactor *r, pid_t pid);

#endif /* CT_REACTOR_CHILD_H */
