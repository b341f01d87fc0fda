/*
 * ct-rpc: call a JSON-RPC 2.0 server (docs/rpc.md), or load it.
 *
 *   ct-rpc --connect tcp:127.0.0.1:7000 add 1 2
 *   ct-rpc --connect tcp:127.0.0.1:7000 echo '{"a": [1, 2]}'
 *   ct-rpc --connect tcp:127.0.0.1:7000 --cancel-after 0.2 sleep 5
 *   ct-rpc --connect tcp:127.0.0.1:7000,tcp:127.0.0.1:7001 \
 *          --bench 100000 --concurrency 50 --connections 50 add 1 2
 *
 * One call prints its result as JSON on stdout and exits 0; an error
 * prints "error CODE: MESSAGE" (and the data) on stderr and exits 1.  With
 * several --connect endpoints the client balances over them (docs/rpc.md,
 * "Balancing"); --idempotent METHOD lets a call that lost its connection
 * be retried on another server.  With --bench N it makes N calls, C in
 * flight at a time, over K connections (spread over the endpoints: one
 * client per round of endpoints, each balancing over its members), and
 * reports calls/s, latency percentiles and the calls per member; a
 * progress line is shown on a terminal.  Exit status 2 for bad usage.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctwist/ctwist.h"
#include "rpc_zk.h"

#define MAX_CONNECT 64
#define MAX_CLIENTS 1024

static void usage(FILE *out) {
  fprintf(out,
          "usage: ct-rpc --connect ENDPOINT [--connect ENDPOINT...] [options] "
          "METHOD [PARAM...]\n"
          "Call METHOD on a JSON-RPC 2.0 server (ctwistd rpc) and print the "
          "result.\n"
          "PARAM: one JSON array or object is the params; otherwise each "
          "PARAM is one\n"
          "positional param, as JSON (1, \"x\", [1]) or else as a string.\n"
          "options:\n"
          "  --connect ENDPOINT   server endpoint, e.g. tcp:127.0.0.1:7000 "
          "(repeatable,\n"
          "                       or a comma list: calls are balanced over "
          "the servers)\n"
          "  --balancer p2c|rr    power of two choices, least loaded "
          "(default), or\n"
          "                       round robin\n"
          "  --idempotent METHOD  METHOD is safe to run twice: retried on "
          "another server\n"
          "                       when a connection is lost mid-call "
          "(repeatable)\n"
          "  --timeout S          per-call timeout (default 30); sent as the "
          "deadline\n"
          "  --notify             send a notification (no answer)\n"
          "  --cancel-after S     cancel the call after S seconds "
          "(rpc.cancel)\n"
          "  --bench N            make N calls and report calls/s, "
          "latency and the calls\n"
          "                       per member\n"
          "  --concurrency C      calls in flight during --bench (default "
          "1)\n"
          "  --connections K      connections during --bench (default: one "
          "per endpoint)\n"
          "  --zk HOST:PORT[,...] --service NAME\n"
          "                       members from ZooKeeper instead of "
          "--connect\n"
          "                       (docs/discovery.md); --members lists "
          "them\n"
          "  --quiet              no progress line\n"
          "  --help               this text\n"
          "exit status: 0 success, 1 the call failed, 2 bad usage\n");
}

typedef struct app {
  ct_reactor *r;
  ct_rpc_client *c; /* the first client (the only one outside --bench) */
  ct_rpc_client **cs;
  size_t ncs, next_c;
  int status;
  /* single call */
  ct_deferred *d;
  /* bench */
  long total, started, done, failed;
  long conc;
  double *lat; /* seconds per call */
  double t0, last_progress;
  int progress;
  const char *method;
  json_t *params;
  char first_error[256];
} app;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ one call */

static void print_failure(const ct_failure *f) {
  if (ct_rpc_is_error(f)) {
    fprintf(stderr, "error %d: %s\n", f->code, f->message);
    if (ct_rpc_error_data(f) != NULL)
      fprintf(stderr, "data: %s\n", ct_rpc_error_data(f));
  } else {
    char buf[1024];
    ct_failure_format(f, buf, sizeof buf);
    fprintf(stderr, "error: %s\n", buf);
  }
}

static ct_step call_done(ct_result r, void *arg) {
  app *a = arg;
  if (r.failure != NULL) {
    if (r.failure->code == CT_ECANCELLED && a->status == -1) {
      printf("cancelled\n");
      a->status = 0;
    } else {
      print_failure(r.failure);
      a->status = 1;
    }
    ct_failure_free(r.failure);
  } else {
    json_t *j = ct_rpc_value_json(r.value);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    printf("%s\n", text ? text : "null");
    free(text);
    ct_value_free(r.value);
    a->status = 0;
  }
  ct_reactor_stop(a->r);
  return ct_pass(CT_NONE);
}

static void cancel_now(void *arg) {
  app *a = arg;
  a->status = -1; /* a cancellation is the expected outcome */
  ct_deferred_cancel(a->d);
}

/* -------------------------------------------------------------- bench */

typedef struct slot {
  app *a;
  double t;
} slot;

static void bench_next(app *a, slot *s);

static ct_step bench_done(ct_result r, void *arg) {
  slot *s = arg;
  app *a = s->a;
  double t = now();
  if (r.failure != NULL) {
    if (a->failed++ == 0)
      ct_failure_format(r.failure, a->first_error, sizeof a->first_error);
    ct_failure_free(r.failure);
  } else {
    ct_value_free(r.value);
  }
  a->lat[a->done++] = t - s->t;
  if (a->progress && t - a->last_progress >= 0.5) {
    a->last_progress = t;
    fprintf(stderr, "\r%ld/%ld calls, %.0f calls/s   ", a->done, a->total,
            (double)a->done / (t - a->t0));
    fflush(stderr);
  }
  if (a->done == a->total)
    ct_reactor_stop(a->r);
  if (a->started < a->total)
    bench_next(a, s); /* the slot goes on with the next call */
  else
    free(s);
  return ct_pass(CT_NONE);
}

/* Start the next call in slot `s` (NULL: a new slot). */
static void bench_next(app *a, slot *s) {
  if (s == NULL && (s = malloc(sizeof *s)) == NULL) {
    fprintf(stderr, "ct-rpc: out of memory\n");
    exit(1);
  }
  s->a = a;
  s->t = now();
  a->started++;
  ct_rpc_client *c = a->cs[a->next_c++ % a->ncs];
  ct_deferred *d =
      ct_rpc_call(c, a->method, a->params ? json_deep_copy(a->params) : NULL);
  ct_deferred_add_both(d, bench_done, s);
  ct_deferred_unref(d);
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static double pct(const double *v, long n, double p) {
  long i = (long)ceil(p * (double)n) - 1;
  if (i < 0)
    i = 0;
  if (i >= n)
    i = n - 1;
  return v[i];
}

typedef struct waitc {
  app *a;
  size_t want;
  double deadline;
} waitc;

static size_t connections(const app *a) {
  size_t n = 0;
  for (size_t i = 0; i < a->ncs; i++)
    n += ct_rpc_client_connections(a->cs[i]);
  return n;
}

static void wait_connections(void *arg) {
  waitc *w = arg;
  app *a = w->a;
  if (connections(a) >= w->want) {
    a->t0 = now();
    a->last_progress = a->t0;
    for (long i = 0; i < a->conc && a->started < a->total; i++)
      bench_next(a, NULL);
    return;
  }
  if (now() > w->deadline) {
    fprintf(stderr, "ct-rpc: only %zu of %zu connections up after 10 s\n",
            connections(a), w->want);
    a->status = 1;
    ct_reactor_stop(a->r);
    return;
  }
  ct_call_later(a->r, 0.01, wait_connections, w);
}

/* ------------------------------------------------------------- params */

static json_t *parse_params(int argc, char **argv) {
  if (argc == 0)
    return NULL;
  if (argc == 1) {
    json_t *j = json_loads(argv[0], JSON_DECODE_ANY, NULL);
    if (json_is_array(j) || json_is_object(j))
      return j;
    json_decref(j);
  }
  json_t *arr = json_array();
  for (int i = 0; i < argc; i++) {
    json_t *j = json_loads(argv[i], JSON_DECODE_ANY, NULL);
    json_array_append_new(arr, j ? j : json_string(argv[i]));
  }
  return arr;
}

static int num_arg(const char *opt, const char *v, double min, double *out) {
  char *end;
  double d = v ? strtod(v, &end) : 0;
  if (v == NULL || *end != 0 || !isfinite(d) || d < min) {
    fprintf(stderr, "ct-rpc: %s needs a number >= %g\n", opt, min);
    return -1;
  }
  *out = d;
  return 0;
}

/* Calls per member, summed over the clients by endpoint. */
static void report_members(const app *a, const char *const *eps, int neps) {
  for (int e = 0; e < neps; e++) {
    uint64_t calls = 0, failures = 0, retries = 0;
    for (size_t i = 0; i < a->ncs; i++) {
      ct_rpc_member_stats st[MAX_CONNECT];
      size_t n = ct_rpc_client_members(a->cs[i], st, MAX_CONNECT);
      for (size_t k = 0; k < n && k < MAX_CONNECT; k++)
        if (strcmp(st[k].endpoint, eps[e]) == 0) {
          calls += st[k].calls;
          failures += st[k].failures;
          retries += st[k].retries;
        }
    }
    printf("member %s: %llu calls (%.1f%%), %llu failures, %llu retries\n",
           eps[e], (unsigned long long)calls,
           a->done > 0 ? 100.0 * (double)calls / (double)a->done : 0.0,
           (unsigned long long)failures, (unsigned long long)retries);
  }
}

/* Add a comma list to eps[] (repeats left out); -1 when there are too
 * many. */
static int add_endpoints(char *list, const char **eps, int *neps) {
  for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL;
       t = strtok_r(NULL, ",", &save)) {
    int seen = 0;
    for (int i = 0; i < *neps && !seen; i++)
      seen = strcmp(eps[i], t) == 0;
    if (seen)
      continue; /* one member per endpoint */
    if (*neps == MAX_CONNECT)
      return -1;
    eps[(*neps)++] = t;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *eps[MAX_CONNECT];
  const char *idem[MAX_CONNECT];
  int neps = 0, nidem = 0, notify = 0, quiet = 0, members = 0;
  int balancer = CT_RPC_BALANCE_P2C;
  const char *zk = NULL, *service = NULL;
  double timeout = 30, cancel_after = -1, bench = 0, conc = 1, conns = 0;
  int i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    const char *o = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int rc = 0;
    if (strcmp(o, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(o, "--connect") == 0 && v != NULL) {
      if (add_endpoints(argv[i + 1], eps, &neps) != 0) {
        fprintf(stderr, "ct-rpc: at most %d endpoints\n", MAX_CONNECT);
        return 2;
      }
      i++;
    } else if (strcmp(o, "--balancer") == 0 && v != NULL) {
      if (strcmp(v, "p2c") == 0)
        balancer = CT_RPC_BALANCE_P2C;
      else if (strcmp(v, "rr") == 0)
        balancer = CT_RPC_BALANCE_ROUND_ROBIN;
      else {
        fprintf(stderr, "ct-rpc: --balancer is p2c or rr\n");
        return 2;
      }
      i++;
    } else if (strcmp(o, "--idempotent") == 0 && v != NULL) {
      if (nidem == MAX_CONNECT) {
        fprintf(stderr, "ct-rpc: at most %d --idempotent\n", MAX_CONNECT);
        return 2;
      }
      idem[nidem++] = v;
      i++;
    } else if (strcmp(o, "--zk") == 0 && v != NULL) {
      zk = v, i++;
    } else if (strcmp(o, "--service") == 0 && v != NULL) {
      service = v, i++;
    } else if (strcmp(o, "--members") == 0) {
      members = 1;
    } else if (strcmp(o, "--notify") == 0) {
      notify = 1;
    } else if (strcmp(o, "--quiet") == 0) {
      quiet = 1;
    } else if (strcmp(o, "--timeout") == 0) {
      rc = num_arg(o, v, 0.001, &timeout), i++;
    } else if (strcmp(o, "--cancel-after") == 0) {
      rc = num_arg(o, v, 0, &cancel_after), i++;
    } else if (strcmp(o, "--bench") == 0) {
      rc = num_arg(o, v, 1, &bench), i++;
    } else if (strcmp(o, "--concurrency") == 0) {
      rc = num_arg(o, v, 1, &conc), i++;
    } else if (strcmp(o, "--connections") == 0) {
      rc = num_arg(o, v, 1, &conns), i++;
    } else {
      fprintf(stderr, "ct-rpc: unknown option or missing value: %s\n", o);
      usage(stderr);
      return 2;
    }
    if (rc != 0)
      return 2;
  }
  if ((zk == NULL) != (service == NULL)) {
    fprintf(stderr, "ct-rpc: --zk and --service go together\n");
    return 2;
  }
  if ((neps == 0 && zk == NULL) || (i >= argc && !members)) {
    fprintf(stderr, "ct-rpc: need --connect ENDPOINT and a METHOD\n");
    usage(stderr);
    return 2;
  }
  app a = {0};
  a.method = i < argc ? argv[i] : "";
  a.params = parse_params(i < argc ? argc - i - 1 : 0, argv + i + 1);
  a.r = ct_reactor_new();
  ct_rpc_client_options co = {
      .timeout = timeout, .fail_fast = 1, .balancer = balancer};
  /* K connections spread over the endpoints: a client per round of
   * endpoints (a client keeps one connection per endpoint). */
  long k = bench > 0 && conns > 0 ? (long)conns : neps;
  a.ncs = zk != NULL ? 1 : (size_t)((k + neps - 1) / neps);
  if (a.ncs > MAX_CLIENTS) {
    fprintf(stderr, "ct-rpc: at most %d connections per endpoint\n",
            MAX_CLIENTS);
    return 2;
  }
  a.cs = calloc(a.ncs, sizeof *a.cs);
  for (size_t j = 0; a.r != NULL && a.cs != NULL && j < a.ncs; j++) {
    if ((a.cs[j] = ct_rpc_client_new(a.r, &co)) == NULL)
      break;
    for (int m = 0; m < nidem; m++)
      if (ct_rpc_client_set_idempotent(a.cs[j], idem[m]) != 0)
        a.cs[j] = NULL; /* out of memory: reported below */
  }
  if (a.r == NULL || a.cs == NULL || a.cs[a.ncs - 1] == NULL) {
    fprintf(stderr, "ct-rpc: out of memory\n");
    return 1;
  }
  a.c = a.cs[0];
  rpc_zk rz = {0};
  if (zk != NULL) {
    int rc = rpc_zk_start(&rz, a.r, a.c, zk, service);
    if (rc != 0 || members) {
      if (rc == 0)
        rpc_zk_print_members(&rz);
      rpc_zk_free(&rz);
      ct_rpc_client_free(a.c);
      free(a.cs);
      for (int turn = 0; turn < 20; turn++)
        ct_reactor_iterate(a.r);
      ct_reactor_free(a.r);
      json_decref(a.params);
      return rc;
    }
    /* Discovery connected the members: one connection each. */
    neps = (int)rpc_zk_endpoints(&rz, eps, MAX_CONNECT);
    k = neps;
  }
  for (long j = 0; j < k && zk == NULL; j++) {
    if (ct_rpc_client_connect(a.cs[j / neps], eps[j % neps]) != 0) {
      fprintf(stderr, "ct-rpc: bad endpoint %s (see docs/endpoints.md)\n",
              eps[j % neps]);
      return 2;
    }
  }
  waitc w = {&a, (size_t)k, now() + 10};
  if (bench > 0) {
    a.total = (long)bench;
    a.conc = (long)conc;
    a.lat = malloc((size_t)a.total * sizeof *a.lat);
    a.progress = !quiet && isatty(2);
    ct_call_later(a.r, 0, wait_connections, &w);
  } else if (notify) {
    int rc =
        ct_rpc_notify(a.c, a.method, a.params ? json_incref(a.params) : NULL);
    if (rc != 0) {
      fprintf(stderr, "ct-rpc: notify: %s\n", ct_strerror(rc));
      return 1;
    }
  } else {
    a.d = ct_rpc_call(a.c, a.method, a.params ? json_incref(a.params) : NULL);
    ct_deferred_add_both(a.d, call_done, &a);
    if (cancel_after >= 0)
      ct_call_later(a.r, cancel_after, cancel_now, &a);
  }
  if (notify && bench == 0) {
    /* Run until the notification has been written out. */
    while (ct_rpc_client_queued(a.c) > 0 && a.status == 0)
      ct_reactor_iterate(a.r);
  } else {
    ct_reactor_run(a.r);
  }
  if (bench > 0 && a.done > 0) {
    double el = now() - a.t0;
    if (a.progress)
      fprintf(stderr, "\r%60s\r", "");
    qsort(a.lat, (size_t)a.done, sizeof *a.lat, cmp_double);
    printf("%ld calls in %.3f s over %ld connections, %ld in flight: "
           "%.0f calls/s\n",
           a.done, el, k, a.conc, (double)a.done / el);
    printf("latency p50 %.1f us, p99 %.1f us, p999 %.1f us\n",
           pct(a.lat, a.done, 0.5) * 1e6, pct(a.lat, a.done, 0.99) * 1e6,
           pct(a.lat, a.done, 0.999) * 1e6);
    report_members(&a, eps, neps);
    if (a.failed > 0) {
      printf("%ld calls failed; first: %s\n", a.failed, a.first_error);
      a.status = 1;
    }
  }
  int status = a.status < 0 ? 1 : a.status;
  ct_deferred_unref(a.d);
  rpc_zk_free(&rz);
  for (size_t j = 0; j < a.ncs; j++)
    ct_rpc_client_free(a.cs[j]);
  free(a.cs);
  /* The connections close on the next loop turns (output flushed, then
   * their protocols released): turn the loop before freeing it. */
  for (int turn = 0; turn < 20; turn++)
    ct_reactor_iterate(a.r);
  ct_reactor_free(a.r);
  json_decref(a.params);
  free(a.lat);
  return status;
}
