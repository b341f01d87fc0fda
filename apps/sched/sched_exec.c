/*
 * The real executor of ct-sched: what a run does.
 *
 * - run: a child process (process.h) with stdin on /dev/null and stdout
 *   and stderr into a fixed-size tail buffer (bounded memory however much
 *   a command prints).  `timeout` sends SIGTERM, and SIGKILL after
 *   `kill-grace` if the command is still there.
 * - rpc: a JSON-RPC call (jsonrpc.h) on a client kept per endpoint, which
 *   reconnects by itself; the call's timeout is the task's (default 30 s).
 * - send: one message frame (message.h) on a connection kept per
 *   endpoint, opened on first use and again after it closes.
 */
#define _DEFAULT_SOURCE
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/deferred.h"
#include "ctwist/jsonrpc.h"
#include "ctwist/log.h"
#include "ctwist/message.h"
#include "ctwist/process.h"
#include "sched.h"

typedef struct peer {
  struct peer *next;
  char *endpoint;
  ct_rpc_client *rpc;
  ct_msg_client *msg;
} peer;

struct ct_sched_exec {
  ct_reactor *r;
  peer *peers;
};

typedef struct job {
  ct_sched_exec *e;
  ct_sched_run *run;
  const ct_sched_spec *spec;
  ct_process *proc;
  ct_delayed_call *term; /* referenced: timeout -> SIGTERM */
  ct_delayed_call *kill; /* referenced: kill-grace -> SIGKILL */
  int timed_out, stopping;
  ct_deferred *d; /* rpc call or connection attempt, referenced */
  char tail[CT_SCHED_TAIL_MAX];
  size_t tail_len; /* bytes in tail (a sliding window) */
} job;

static void drop_call(ct_delayed_call **c) {
  if (*c != NULL) {
    ct_delayed_call_cancel(*c);
    ct_delayed_call_unref(*c);
    *c = NULL;
  }
}

static peer *peer_get(ct_sched_exec *e, const char *endpoint) {
  for (peer *p = e->peers; p != NULL; p = p->next) {
    if (strcmp(p->endpoint, endpoint) == 0)
      return p;
  }
  peer *p = calloc(1, sizeof *p);
  if (p == NULL || (p->endpoint = strdup(endpoint)) == NULL) {
    free(p);
    return NULL;
  }
  p->next = e->peers;
  e->peers = p;
  return p;
}

static void job_finish(job *j, const ct_failure *f) {
  drop_call(&j->term);
  drop_call(&j->kill);
  if (j->d != NULL) {
    ct_deferred_unref(j->d);
    j->d = NULL;
  }
  char tail[CT_SCHED_TAIL_MAX + 1];
  /* Keep the last lines whole when the window cut one. */
  size_t off = 0;
  if (j->tail_len == CT_SCHED_TAIL_MAX) {
    const char *nl = memchr(j->tail, '\n', j->tail_len);
    if (nl != NULL && (size_t)(nl - j->tail) + 1 < j->tail_len)
      off = (size_t)(nl - j->tail) + 1;
  }
  memcpy(tail, j->tail + off, j->tail_len - off);
  tail[j->tail_len - off] = '\0';
  ct_sched_run *run = j->run;
  free(j);
  ct_sched_run_done(run, f, tail);
}

/* Finish `j` with a new failure (code, printf-style message). */
static void job_fail(job *j, int code, const char *fmt, ...) CT_PRINTF(3, 4);

static void job_fail(job *j, int code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ct_failure *f = ct_failure_new(code, "%s", msg);
  job_finish(j, f);
  ct_failure_free(f);
}

/* ------------------------------------------------------------- commands */

static void keep_tail(job *j, const char *d, size_t n) {
  if (n >= CT_SCHED_TAIL_MAX) {
    memcpy(j->tail, d + n - CT_SCHED_TAIL_MAX, CT_SCHED_TAIL_MAX);
    j->tail_len = CT_SCHED_TAIL_MAX;
    return;
  }
  if (j->tail_len + n > CT_SCHED_TAIL_MAX) {
    size_t drop = j->tail_len + n - CT_SCHED_TAIL_MAX;
    memmove(j->tail, j->tail + drop, j->tail_len - drop);
    j->tail_len -= drop;
  }
  memcpy(j->tail + j->tail_len, d, n);
  j->tail_len += n;
}

static void p_out(ct_process *p, const char *d, size_t n, void *arg) {
  (void)p;
  keep_tail(arg, d, n);
}

static void p_ended(ct_process *p, const ct_failure *reason, void *arg) {
  job *j = arg;
  (void)p;
  j->proc = NULL;
  if (j->timed_out) {
    job_fail(j, CT_ETIMEDOUT, "timed out after %gs and was stopped (%s)",
             j->spec->timeout, reason != NULL ? reason->message : "?");
  } else if (reason == NULL || reason->code == CT_ECONNDONE) {
    job_finish(j, NULL);
  } else {
    job_finish(j, reason);
  }
}

static const ct_process_protocol_ops proc_ops = {
    .out_received = p_out,
    .err_received = p_out,
    .process_ended = p_ended,
};

static void kill_cb(void *arg) {
  job *j = arg;
  ct_delayed_call_unref(j->kill);
  j->kill = NULL;
  if (j->proc != NULL) {
    ct_log(CT_LOG_WARN, "sched",
           "task %s: still running %gs after SIGTERM, "
           "sending SIGKILL",
           ct_sched_run_task(j->run), j->spec->kill_grace);
    ct_process_signal(j->proc, SIGKILL);
  }
}

static void terminate(job *j) {
  if (j->proc == NULL || j->kill != NULL)
    return;
  ct_process_signal(j->proc, SIGTERM);
  ct_delayed_call *c = ct_call_later(j->e->r, j->spec->kill_grace, kill_cb, j);
  if (c != NULL)
    j->kill = ct_delayed_call_ref(c);
}

static void term_cb(void *arg) {
  job *j = arg;
  ct_delayed_call_unref(j->term);
  j->term = NULL;
  j->timed_out = 1;
  ct_log(CT_LOG_WARN, "sched", "task %s: timed out after %gs, sending SIGTERM",
         ct_sched_run_task(j->run), j->spec->timeout);
  terminate(j);
}

static void start_command(job *j) {
  ct_process_options po;
  memset(&po, 0, sizeof po);
  po.fds[0].kind = CT_CHILD_DEVNULL;
  ct_failure *err = NULL;
  j->proc = ct_spawn_process(j->e->r, &proc_ops, j,
                             (const char *const *)j->spec->argv, &po, &err);
  if (j->proc == NULL) {
    job_finish(j, err);
    ct_failure_free(err);
    return;
  }
  if (j->spec->timeout > 0) {
    ct_delayed_call *c = ct_call_later(j->e->r, j->spec->timeout, term_cb, j);
    if (c != NULL)
      j->term = ct_delayed_call_ref(c);
  }
}

/* ------------------------------------------------------------------ rpc */

static ct_step rpc_done(ct_result r, void *arg) {
  job *j = arg;
  if (r.failure != NULL) {
    job_finish(j, r.failure); /* borrows it */
    ct_failure_free(r.failure);
    return ct_pass(CT_NONE);
  }
  ct_value_free(r.value);
  job_finish(j, NULL);
  return ct_pass(CT_NONE);
}

static void start_rpc(job *j, peer *p) {
  if (p->rpc == NULL) {
    ct_rpc_client_options o;
    memset(&o, 0, sizeof o);
    o.fail_fast = 1;
    p->rpc = ct_rpc_client_new(j->e->r, &o);
    if (p->rpc == NULL || ct_rpc_client_connect(p->rpc, p->endpoint) != 0) {
      job_fail(j, CT_EINVAL, "cannot connect to %s", p->endpoint);
      return;
    }
  }
  json_t *params = NULL;
  if (j->spec->params != NULL)
    params = json_loads(j->spec->params, 0, NULL);
  double timeout =
      j->spec->timeout > 0 ? j->spec->timeout : CT_RPC_TIMEOUT_DEFAULT;
  ct_deferred *d =
      ct_rpc_call_timeout(p->rpc, j->spec->method, params, timeout);
  if (d == NULL) {
    job_fail(j, CT_ENOMEM, "rpc call failed");
    return;
  }
  j->d = ct_deferred_ref(d);
  ct_deferred_add_both(d, rpc_done, j);
  ct_deferred_unref(d);
}

/* ----------------------------------------------------------------- send */

static ct_msg_header *header_of(const char *text) {
  ct_msg_header *h = ct_msg_header_new();
  if (h == NULL || text == NULL)
    return h;
  json_t *o = json_loads(text, 0, NULL);
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    if (json_is_string(v))
      ct_msg_header_set_str(h, key, json_string_value(v));
    else if (json_is_integer(v))
      ct_msg_header_set_int(h, key, (int64_t)json_integer_value(v));
  }
  json_decref(o);
  return h;
}

static void send_on(job *j, peer *p) {
  ct_messenger *m = NULL;
  if (ct_msg_client_messengers(p->msg, &m, 1) == 0 || m == NULL) {
    job_fail(j, CT_ECONNLOST, "no connection to %s", p->endpoint);
    return;
  }
  ct_msg_header *h = header_of(j->spec->header);
  const char *c = j->spec->content != NULL ? j->spec->content : "";
  int rc =
      h != NULL ? ct_msg_client_send(p->msg, m, h, c, strlen(c)) : CT_ENOMEM;
  ct_msg_header_free(h);
  if (rc != 0) {
    job_fail(j, rc, "send to %s: %s", p->endpoint, ct_strerror(rc));
    return;
  }
  job_finish(j, NULL);
}

typedef struct send_wait {
  job *j;
  peer *p;
} send_wait;

static ct_step connected(ct_result r, void *arg) {
  send_wait *w = arg;
  job *j = w->j;
  peer *p = w->p;
  free(w);
  if (r.failure != NULL) {
    job_finish(j, r.failure); /* borrows it */
    ct_failure_free(r.failure);
    return ct_pass(CT_NONE);
  }
  ct_value_free(r.value);
  send_on(j, p);
  return ct_pass(CT_NONE);
}

static void start_send(job *j, peer *p) {
  if (p->msg == NULL) {
    p->msg = ct_msg_client_new(j->e->r, NULL, NULL);
    if (p->msg == NULL) {
      job_fail(j, CT_ENOMEM, "out of memory");
      return;
    }
  }
  if (ct_msg_client_count(p->msg) > 0) {
    send_on(j, p);
    return;
  }
  send_wait *w = malloc(sizeof *w);
  ct_deferred *d =
      w != NULL ? ct_msg_client_add_connection(p->msg, p->endpoint) : NULL;
  if (d == NULL) {
    free(w);
    job_fail(j, CT_ENOMEM, "out of memory");
    return;
  }
  w->j = j;
  w->p = p;
  j->d = ct_deferred_ref(d);
  ct_deferred_add_both_full(d, connected, w, free);
  ct_deferred_unref(d);
}

/* ------------------------------------------------------------ interface */

static void exec_start(ct_sched_run *run, const ct_sched_spec *spec,
                       void *arg) {
  ct_sched_exec *e = arg;
  job *j = calloc(1, sizeof *j);
  if (j == NULL) {
    ct_failure *f = ct_failure_new(CT_ENOMEM, "out of memory");
    ct_sched_run_done(run, f, NULL);
    ct_failure_free(f);
    return;
  }
  j->e = e;
  j->run = run;
  j->spec = spec;
  ct_sched_run_set_data(run, j);
  if (spec->action == CT_SCHED_RUN) {
    start_command(j);
    return;
  }
  peer *p = peer_get(e, spec->endpoint);
  if (p == NULL) {
    job_fail(j, CT_ENOMEM, "out of memory");
    return;
  }
  if (spec->action == CT_SCHED_RPC)
    start_rpc(j, p);
  else
    start_send(j, p);
}

static void exec_stop(ct_sched_run *run, void *arg) {
  (void)arg;
  job *j = ct_sched_run_data(run);
  if (j == NULL)
    return;
  if (j->proc != NULL) {
    terminate(j);
  } else if (j->d != NULL) {
    ct_deferred *d = ct_deferred_ref(j->d);
    ct_deferred_cancel(d); /* fires rpc_done / connected: the job ends */
    ct_deferred_unref(d);
  }
}

ct_sched_exec *ct_sched_exec_new(ct_reactor *r) {
  ct_sched_exec *e = calloc(1, sizeof *e);
  if (e != NULL)
    e->r = r;
  return e;
}

ct_sched_executor ct_sched_exec_executor(ct_sched_exec *e) {
  ct_sched_executor x = {exec_start, exec_stop, e};
  return x;
}

void ct_sched_exec_free(ct_sched_exec *e) {
  if (e == NULL)
    return;
  while (e->peers != NULL) {
    peer *p = e->peers;
    e->peers = p->next;
    ct_rpc_client_free(p->rpc);
    ct_msg_client_free(p->msg);
    free(p->endpoint);
    free(p);
  }
  free(e);
}
