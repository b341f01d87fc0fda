/*
 * zk_client: the calling client of the ZooKeeper scenarios
 * (test_discovery.py).  Two JSON-RPC clients fed by discovery of one
 * service call `sleep` continuously, C calls in flight each:
 *   - "idem" marked `sleep` idempotent: a call whose connection is lost
 *     is retried on another member;
 *   - "plain" did not: such a call fails (it may have run).
 * Commands on stdin, one a line, each answered by one JSON line on stdout:
 *   stats   {"idem": {"ok": N, "fail": N, "errors": [...],
 *                     "outstanding": {endpoint: calls in flight}},
 *            "plain": {...}, "calls": {endpoint: calls sent},
 *            "members": [endpoints taking calls], "known": N (discovery),
 *            "retries": N, "unreachable": 0|1}
 *   quit    stop calling, free everything, exit 0
 *
 *   zk_client ENSEMBLE SERVICE CONCURRENCY SLEEP_SECONDS
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctwist/ctwist.h"

typedef struct side {
  const char *name;
  ct_rpc_client *c;
  ct_rpc_discovery *disc;
  long ok, fail;
  json_t *errors; /* the first few failure messages */
  int stopping;
  long inflight;
} side;

typedef struct app {
  ct_reactor *r;
  ct_zk *zk;
  side s[2];
  double secs;
  int unreachable;
  char line[256];
  size_t used;
} app;

static app A;

static void call_one(side *sd);

static ct_step done(ct_result res, void *arg) {
  side *sd = arg;
  sd->inflight--;
  if (res.failure != NULL) {
    sd->fail++;
    if (json_array_size(sd->errors) < 8) {
      char buf[512];
      ct_failure_format(res.failure, buf, sizeof buf);
      json_t *e = json_object();
      json_object_set_new(e, "code", json_integer(res.failure->code));
      json_object_set_new(
          e, "domain",
          json_string(res.failure->domain ? res.failure->domain : ""));
      json_object_set_new(e, "message", json_stringn_nocheck(buf, strlen(buf)));
      json_array_append_new(sd->errors, e);
      fprintf(stderr, "zk_client: %s call failed: %s\n", sd->name, buf);
    }
    ct_failure_free(res.failure);
  } else {
    sd->ok++;
    ct_value_free(res.value);
  }
  if (!sd->stopping)
    call_one(sd);
  return ct_pass(CT_NONE);
}

static void call_one(side *sd) {
  ct_deferred *d = ct_rpc_call(sd->c, "sleep", json_pack("[f]", A.secs));
  if (d == NULL)
    return;
  sd->inflight++;
  ct_deferred_add_both(d, done, sd);
  ct_deferred_unref(d);
}

static void on_change(ct_rpc_discovery *d, size_t n, int unreachable,
                      void *arg) {
  (void)d;
  (void)n;
  (void)arg;
  A.unreachable = unreachable;
}

static json_t *side_json(side *sd) {
  ct_rpc_member_stats ms[64];
  size_t n = ct_rpc_client_members(sd->c, ms, 64);
  json_t *out = json_object();
  for (size_t i = 0; i < n && i < 64; i++)
    json_object_set_new(out, ms[i].endpoint,
                        json_integer((json_int_t)ms[i].outstanding));
  return json_pack("{sIsIsOso}", "ok", (json_int_t)sd->ok, "fail",
                   (json_int_t)sd->fail, "errors", sd->errors, "outstanding",
                   out);
}

static void print_stats(void) {
  ct_rpc_member_stats ms[64];
  size_t n = ct_rpc_client_members(A.s[0].c, ms, 64);
  json_t *members = json_array(), *calls = json_object();
  json_int_t retries = 0;
  for (size_t i = 0; i < n && i < 64; i++) {
    if (!ms[i].removing)
      json_array_append_new(members, json_string(ms[i].endpoint));
    json_object_set_new(calls, ms[i].endpoint,
                        json_integer((json_int_t)ms[i].calls));
    retries += (json_int_t)ms[i].retries;
  }
  json_t *j =
      json_pack("{so so so so sI sI sI si}", "idem", side_json(&A.s[0]),
                "plain", side_json(&A.s[1]), "members", members, "calls", calls,
                "known", (json_int_t)ct_rpc_discovery_members(A.s[0].disc),
                "nodes", (json_int_t)ct_rpc_discovery_nodes(A.s[0].disc),
                "retries", retries, "unreachable", A.unreachable);
  char *text = json_dumps(j, JSON_COMPACT);
  printf("%s\n", text);
  fflush(stdout);
  free(text);
  json_decref(j);
}

static void on_stdin(ct_reactor *r, int fd, int events, void *arg) {
  (void)events;
  (void)arg;
  ssize_t n = read(fd, A.line + A.used, sizeof A.line - 1 - A.used);
  if (n <= 0) {
    ct_reactor_remove_reader(r, fd);
    ct_reactor_stop(r);
    return;
  }
  A.used += (size_t)n;
  A.line[A.used] = '\0';
  char *nl;
  while ((nl = strchr(A.line, '\n')) != NULL) {
    *nl = '\0';
    if (strcmp(A.line, "stats") == 0) {
      print_stats();
    } else if (strcmp(A.line, "quit") == 0) {
      ct_reactor_remove_reader(r, fd);
      ct_reactor_stop(r);
    }
    size_t rest = A.used - (size_t)(nl + 1 - A.line);
    memmove(A.line, nl + 1, rest + 1);
    A.used = rest;
  }
  if (A.used == sizeof A.line - 1)
    A.used = 0; /* an over-long line: dropped */
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: zk_client ENSEMBLE SERVICE CONCURRENCY SECONDS\n");
    return 2;
  }
  int conc = atoi(argv[3]);
  A.secs = atof(argv[4]);
  A.r = ct_reactor_new();
  ct_zk_options zo = {.session_timeout = 4.0};
  ct_failure *err = NULL;
  A.zk = ct_zk_new(A.r, argv[1], &zo, &err);
  if (A.zk == NULL) {
    fprintf(stderr, "zk_client: %s\n", err->message);
    return 1;
  }
  /* Short windows: the scenarios watch members come and go. */
  ct_rpc_client_options co = {.timeout = 10,
                              .removal_window = 2.0,
                              .removal_window_set = 1,
                              .retry_initial = 0.1,
                              .retry_max = 1.0};
  for (int i = 0; i < 2; i++) {
    side *sd = &A.s[i];
    sd->name = i == 0 ? "idem" : "plain";
    sd->errors = json_array();
    sd->c = ct_rpc_client_new(A.r, &co);
    if (i == 0)
      ct_rpc_client_set_idempotent(sd->c, "sleep");
    sd->disc = ct_rpc_discovery_new(A.zk, argv[2], sd->c, &err);
    if (sd->disc == NULL) {
      fprintf(stderr, "zk_client: %s\n", err->message);
      return 1;
    }
  }
  ct_rpc_discovery_on_change(A.s[0].disc, on_change, NULL);
  ct_deferred *ready = ct_rpc_discovery_ready(A.s[1].disc);
  while (!ct_deferred_called(ready))
    ct_reactor_iterate_wait(A.r, 1.0);
  ct_result res;
  ct_deferred_take_result(ready, &res);
  ct_deferred_unref(ready);
  if (res.failure != NULL) {
    fprintf(stderr, "zk_client: %s\n", res.failure->message);
    return 1;
  }
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < conc; k++)
      call_one(&A.s[i]);
  ct_reactor_add_reader(A.r, 0, on_stdin, NULL);
  printf("{\"ready\": true}\n");
  fflush(stdout);
  ct_reactor_run(A.r);
  /* Let the calls in flight end, then free everything. */
  for (int i = 0; i < 2; i++)
    A.s[i].stopping = 1;
  for (int turn = 0; turn < 2000 && (A.s[0].inflight || A.s[1].inflight);
       turn++)
    ct_reactor_iterate_wait(A.r, 0.05);
  for (int i = 0; i < 2; i++) {
    ct_rpc_discovery_free(A.s[i].disc);
    ct_rpc_client_free(A.s[i].c);
    json_decref(A.s[i].errors);
  }
  ct_zk_free(A.zk);
  for (int turn = 0; turn < 20; turn++)
    ct_reactor_iterate(A.r);
  ct_reactor_free(A.r);
  return 0;
}
