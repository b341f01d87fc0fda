/*
 * process.c: child processes (Twisted's spawnProcess), see process.h.
 *
 * The child's stdin, stdout and stderr are Unix stream socket pairs, not
 * pipes, as libuv does it: then the ordinary stream transport (which
 * writes with send(MSG_NOSIGNAL), so a child that goes away is an EPIPE
 * error, never a signal) carries them with its watermarks, producers and
 * close sequence.  Each pipe gets a small internal protocol that forwards
 * to the process protocol.  The reaper (reactor/child.c) reports the exit;
 * process_ended runs once the exit is known and the last pipe's transport
 * has released its protocol -- the last thing a transport does -- so the
 * process can be freed right there.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctwist/log.h"
#include "ctwist/process.h"
#include "reactor/child.h"
#include "reactor/internal.h"
#include "transports/stream.h"

extern char **environ;

typedef struct pipe_proto {
  ct_protocol base; /* first */
  ct_process *proc;
  int which; /* 0 stdin, 1 stdout, 2 stderr */
} pipe_proto;

struct ct_process {
  ct_reactor *r;
  const ct_process_protocol_ops *ops;
  void *arg;
  pid_t pid;
  pipe_proto pp[3];
  ct_transport *t[3]; /* while the pipe is open */
  int open;           /* pipes whose protocol is not yet released */
  int exited;
  int exit_code; /* -1 unless exited normally */
  int exit_signal;
  ct_failure *reason;
  char name[64]; /* the program, for messages */
};

/* ------------------------------------------------------------ the end */

static void maybe_end(ct_process *p) {
  if (!p->exited || p->open > 0)
    return;
  if (p->ops->process_ended != NULL)
    p->ops->process_ended(p, p->reason, p->arg);
  ct_failure_free(p->reason);
  free(p);
}

static void reaped_cb(pid_t pid, int status, void *arg) {
  ct_process *p = arg;
  p->exited = 1;
  if (status == -1) {
    p->reason =
        ct_failure_new_at(__FILE__, __LINE__, "process", CT_EPROCESS_EXIT, NULL,
                          "process %d (%s) exited; its status was "
                          "taken by another waitpid()",
                          (int)pid, p->name);
  } else if (WIFSIGNALED(status)) {
    p->exit_signal = WTERMSIG(status);
    p->reason = ct_failure_new_at(
        __FILE__, __LINE__, "process", CT_EPROCESS_SIGNAL, NULL,
        "process %d (%s) was killed by signal %d (%s)%s", (int)pid, p->name,
        p->exit_signal, strsignal(p->exit_signal),
        WCOREDUMP(status) ? ", core dumped" : "");
  } else {
    p->exit_code = WEXITSTATUS(status);
    p->reason = ct_failure_new_at(
        __FILE__, __LINE__, "process",
        p->exit_code == 0 ? CT_ECONNDONE : CT_EPROCESS_EXIT, NULL,
        "process %d (%s) exited with code %d", (int)pid, p->name, p->exit_code);
  }
  if (p->ops->process_exited != NULL)
    p->ops->process_exited(p, p->reason, p->arg);
  maybe_end(p);
}

/* ------------------------------------------------------ pipe protocols */

static void pipe_data(ct_protocol *pr, const char *data, size_t len) {
  pipe_proto *pp = (pipe_proto *)pr;
  ct_process *p = pp->proc;
  if (pp->which == 1 && p->ops->out_received != NULL)
    p->ops->out_received(p, data, len, p->arg);
  else if (pp->which == 2 && p->ops->err_received != NULL)
    p->ops->err_received(p, data, len, p->arg);
  /* Bytes on our end of stdin would mean the child wrote to its stdin:
   * ignored, as with a pipe they could not exist. */
}

static void pipe_lost(ct_protocol *pr, const ct_failure *reason) {
  (void)reason;
  pipe_proto *pp = (pipe_proto *)pr;
  ct_process *p = pp->proc;
  p->t[pp->which] = NULL;
  void (*cb)(ct_process *, void *) = pp->which == 0 ? p->ops->in_connection_lost
                                     : pp->which == 1
                                         ? p->ops->out_connection_lost
                                         : p->ops->err_connection_lost;
  if (cb != NULL)
    cb(p, p->arg);
}

static void pipe_release(ct_protocol *pr) {
  pipe_proto *pp = (pipe_proto *)pr;
  ct_process *p = pp->proc;
  p->open--;
  maybe_end(p);
}

/* End of file closes the pipe (eof_received NULL): for stdin it means the
 * child closed its end. */
static const ct_protocol_ops pipe_ops = {
    .name = "process-pipe",
    .data_received = pipe_data,
    .connection_lost = pipe_lost,
    .free = pipe_release,
};

/* ---------------------------------------------------------------- spawn */

static ct_process *spawn_fail(ct_failure **err, int code, const char *prog,
                              const char *why) {
  if (err != NULL)
    *err = ct_failure_new_at(__FILE__, __LINE__, "process", code, NULL,
                             "cannot start '%s': %s", prog, why);
  return NULL;
}

/* A descriptor >= 3, so that the dup2s onto 0..2 cannot clobber it. */
static int above_stdio(int fd) {
  if (fd < 0 || fd > 2)
    return fd;
  int hi = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return hi;
}

static void close_all(int fds[3][2]) {
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++)
      if (fds[i][j] >= 0)
        close(fds[i][j]);
}

ct_process *ct_spawn_process(ct_reactor *r, const ct_process_protocol_ops *ops,
                             void *arg, const char *const *argv,
                             const ct_process_options *opts, ct_failure **err) {
  if (err != NULL)
    *err = NULL;
  if (r == NULL || ops == NULL || argv == NULL || argv[0] == NULL ||
      argv[0][0] == '\0')
    return spawn_fail(err, CT_EINVAL, argv && argv[0] ? argv[0] : "",
                      "a reactor, a protocol and a non-empty argv are "
                      "required");
  const char *prog = argv[0];
  ct_process_options none;
  memset(&none, 0, sizeof none);
  if (opts == NULL)
    opts = &none;
  for (int i = 0; i < 3; i++) {
    ct_child_fd_kind k = opts->fds[i].kind;
    if (k < CT_CHILD_PIPE || k > CT_CHILD_FD ||
        (k == CT_CHILD_FD && fcntl(opts->fds[i].fd, F_GETFD) < 0))
      return spawn_fail(err, CT_EINVAL, prog,
                        "bad fd map: a kind out of range or a descriptor "
                        "that is not open");
  }
  ct_process *p = calloc(1, sizeof *p);
  if (p == NULL)
    return spawn_fail(err, CT_ENOMEM, prog, "out of memory");
  const char *base = strrchr(prog, '/');
  snprintf(p->name, sizeof p->name, "%s", base != NULL ? base + 1 : prog);

  int sv[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
  int tmp_fd[3] = {0, 0, 0}; /* sv[i][0] is a copy for CT_CHILD_FD */
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  int rc = 0;
  for (int i = 0; i < 3 && rc == 0; i++) {
    switch (opts->fds[i].kind) {
    case CT_CHILD_PIPE:
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]) != 0) {
        rc = errno;
        break;
      }
      sv[i][1] = above_stdio(sv[i][1]);
      if (sv[i][1] < 0)
        rc = errno;
      else
        rc = posix_spawn_file_actions_adddup2(&fa, sv[i][1], i);
      break;
    case CT_CHILD_DEVNULL:
      rc = posix_spawn_file_actions_addopen(&fa, i, "/dev/null",
                                            i == 0 ? O_RDONLY : O_WRONLY, 0);
      break;
    case CT_CHILD_FD:
      /* A source among 0..2 could be overwritten by an earlier dup2 of the
       * file actions: hand the child a copy above them instead. */
      if (opts->fds[i].fd <= 2) {
        sv[i][0] = fcntl(opts->fds[i].fd, F_DUPFD_CLOEXEC, 3);
        if (sv[i][0] < 0) {
          rc = errno;
          break;
        }
        rc = posix_spawn_file_actions_adddup2(&fa, sv[i][0], i);
        tmp_fd[i] = 1;
      } else {
        rc = posix_spawn_file_actions_adddup2(&fa, opts->fds[i].fd, i);
      }
      break;
    case CT_CHILD_INHERIT:
      break;
    }
  }
  if (rc == 0 && opts->cwd != NULL)
    rc = posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);
  /* The child starts clean: no blocked signals, default dispositions
   * (the reactor ignores SIGPIPE; a child must not inherit that). */
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  if (rc == 0)
    rc = posix_spawnattr_setsigmask(&attr, &empty);
  if (rc == 0)
    rc = posix_spawnattr_setsigdefault(&attr, &all);
  if (rc == 0)
    rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                             POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  if (rc == 0)
    /* glibc's posix_spawn reports a failed exec (ENOENT, EACCES, ...) here
     * rather than as exit status 127. */
    rc = posix_spawnp(&pid, prog, &fa, &attr, (char *const *)argv,
                      opts->env != NULL ? (char *const *)opts->env : environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    close_all(sv);
    free(p);
    char why[160];
    snprintf(why, sizeof why, "%s (errno %d)", strerror(rc), rc);
    return spawn_fail(err, -rc, prog, why);
  }

  for (int i = 0; i < 3; i++) {
    if (tmp_fd[i]) {
      close(sv[i][0]);
      sv[i][0] = -1;
    }
  }
  p->r = r;
  p->ops = ops;
  p->arg = arg;
  p->pid = pid;
  p->exit_code = -1;
  for (int i = 0; i < 3; i++) {
    p->pp[i].base.ops = &pipe_ops;
    p->pp[i].proc = p;
    p->pp[i].which = i;
    if (sv[i][1] >= 0) {
      close(sv[i][1]);
      sv[i][1] = -1;
    }
    if (sv[i][0] < 0)
      continue;
    int fd = sv[i][0];
    sv[i][0] = -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    ct_transport *t = ct__stream_new(r, fd, 1, 0);
    if (t == NULL) {
      ct_log(CT_LOG_ERROR, "process",
             "out of memory connecting %s's descriptor %d: closed", p->name, i);
      close(fd);
      continue;
    }
    p->t[i] = t;
    p->open++;
  }
  if (ct__child_watch(r, pid, reaped_cb, p) != 0)
    ct_log(CT_LOG_ERROR, "process",
           "out of memory watching process %d (%s): it will not be reaped",
           (int)pid, p->name);
  /* Count a pipe as open until its transport releases the protocol; hold
   * one more over the starts so none can end the process early. */
  p->open++;
  for (int i = 0; i < 3; i++)
    if (p->t[i] != NULL)
      ct__stream_start(p->t[i], &p->pp[i].base);
  if (ops->connection_made != NULL)
    ops->connection_made(p, arg);
  p->open--; /* nothing can have ended: exits are seen from the loop */
  return p;
}

/* ------------------------------------------------------------ controls */

int ct_process_write(ct_process *p, const void *data, size_t len) {
  if (p == NULL || p->t[0] == NULL)
    return CT_ECLOSED;
  return ct_transport_write(p->t[0], data, len);
}

int ct_process_close_stdin(ct_process *p) {
  if (p == NULL || p->t[0] == NULL)
    return CT_ECLOSED;
  return ct_transport_lose_connection(p->t[0]);
}

int ct_process_signal(ct_process *p, int signum) {
  if (p == NULL)
    return CT_EINVAL;
  if (p->exited)
    return CT_ESTATE;
  return kill(p->pid, signum) == 0 ? 0 : -errno;
}

ct_transport *ct_process_stdin(ct_process *p) {
  return p != NULL ? p->t[0] : NULL;
}

pid_t ct_process_pid(const ct_process *p) {
  return p != NULL ? p->pid : -1;
}

int ct_process_exit_code(const ct_process *p) {
  return p != NULL ? p->exit_code : -1;
}

int ct_process_exit_signal(const ct_process *p) {
  return p != NULL ? p->exit_signal : 0;
}
