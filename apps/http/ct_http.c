/*
 * ct-http: a tiny curl on ctwist's HTTP client.
 *
 *   ct-http GET http://127.0.0.1:8080/file.txt
 *   ct-http POST http://127.0.0.1:8080/api --data '{"x":1}' \
 *           -H 'Content-Type: application/json'
 *   ct-http GET URL -o out.bin --repeat 3 -v   (3 fetches, one connection)
 *
 * The body goes to stdout (or -o FILE) as it arrives, through a body sink,
 * so large downloads use bounded memory.  `http_proxy`/`no_proxy` are
 * honoured.  Exit status: 0 for a response below 400, 1 for 400 and
 * above, 2 for bad usage, 3 when the request failed (the failure is
 * printed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/ctwist.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: ct-http METHOD URL [options]\n"
          "  METHOD               GET, POST, HEAD, PUT, DELETE, ...\n"
          "  --data TEXT, -d TEXT request body\n"
          "  -H 'Name: value'     add a request header (repeatable)\n"
          "  -o FILE              write the body to FILE instead of stdout\n"
          "  -v                   report status, redirects and connections "
          "on stderr\n"
          "  --timeout S          per-request timeout in seconds [30]\n"
          "  --max-redirects N    redirects to follow, -1 for none [5]\n"
          "  --repeat N           fetch N times over the keep-alive pool;\n"
          "                       -o FILE keeps the last body [1]\n"
          "  --help               this text\n"
          "http_proxy / no_proxy are honoured; https is not supported yet.\n");
}

typedef struct run {
  FILE *out;
  int done, failed, status;
  ct_reactor *reactor;
} run;

static int sink(void *arg, const char *d, size_t len) {
  run *r = arg;
  return fwrite(d, 1, len, r->out) == len ? 0 : CT_EPIPE;
}

static ct_step finished(ct_result res, void *arg) {
  run *r = arg;
  r->done = 1;
  if (res.failure != NULL) {
    r->failed = 1;
    ct_failure_print(res.failure, stderr);
    ct_failure_free(res.failure);
  } else {
    ct_http_client_response *resp = res.value.ptr;
    r->status = resp->status;
    ct_value_free(res.value);
  }
  ct_reactor_stop(r->reactor);
  return ct_pass(CT_NONE);
}

static ct_step closed_cb(ct_result res, void *arg) {
  ct_failure_free(res.failure);
  ct_value_free(res.value);
  ct_reactor_stop(arg);
  return ct_pass(CT_NONE);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
    usage(stdout);
    return 0;
  }
  if (argc < 3) {
    usage(stderr);
    return 2;
  }
  const char *method = argv[1], *url = argv[2], *data = NULL, *outpath = NULL;
  ct_http_headers headers = {0};
  ct_http_client_options co = {0};
  int verbose = 0;
  long repeat = 1;
  for (int i = 3; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "-v") == 0) {
      verbose = 1;
    } else if (v == NULL) {
      fprintf(stderr, "ct-http: %s needs a value (or is unknown)\n", a);
      return 2;
    } else if (strcmp(a, "--data") == 0 || strcmp(a, "-d") == 0) {
      data = v;
      i++;
    } else if (strcmp(a, "-o") == 0) {
      outpath = v;
      i++;
    } else if (strcmp(a, "--timeout") == 0) {
      co.timeout = atof(v);
      i++;
    } else if (strcmp(a, "--max-redirects") == 0) {
      co.max_redirects = atoi(v);
      i++;
    } else if (strcmp(a, "--repeat") == 0) {
      repeat = atol(v);
      i++;
    } else if (strcmp(a, "-H") == 0) {
      const char *colon = strchr(v, ':');
      if (colon == NULL || colon == v) {
        fprintf(stderr, "ct-http: -H '%s': expected 'Name: value'\n", v);
        return 2;
      }
      char *name = strndup(v, (size_t)(colon - v));
      const char *val = colon + 1 + strspn(colon + 1, " \t");
      int rc = name ? ct_http_headers_add(&headers, name, val) : CT_ENOMEM;
      free(name);
      if (rc != 0) {
        fprintf(stderr, "ct-http: -H '%s': %s\n", v, ct_strerror(rc));
        return 2;
      }
      i++;
    } else {
      fprintf(stderr, "ct-http: unknown option '%s'\n", a);
      return 2;
    }
  }
  if (co.max_redirects == 0)
    co.max_redirects = 5;
  if (repeat < 1)
    repeat = 1;
  FILE *out = outpath ? fopen(outpath, "wb") : stdout;
  if (out == NULL) {
    perror(outpath);
    return 2;
  }
  ct_reactor *reactor = ct_reactor_new();
  ct_http_client *client = reactor ? ct_http_client_new(reactor, &co) : NULL;
  if (client == NULL) {
    fprintf(stderr, "ct-http: out of memory\n");
    return 3;
  }
  run r = {out, 0, 0, 0, reactor};
  int status = 0;
  for (long n = 0; n < repeat && !r.failed; n++) {
    if (outpath != NULL && n > 0 &&
        (out = freopen(outpath, "wb", out)) == NULL) {
      perror(outpath);
      r.failed = 1;
      break;
    }
    r.out = out;
    ct_http_body_sink s = {sink, &r};
    ct_http_client_request_options o = {0};
    o.method = method;
    o.url = url;
    o.headers = &headers;
    o.body = data;
    o.body_len = data ? strlen(data) : 0;
    o.sink = &s;
    ct_deferred *d = ct_http_client_request_ex(client, &o);
    r.done = 0;
    ct_deferred_add_both(d, finished, &r);
    if (!r.done)
      ct_reactor_run(reactor);
    ct_deferred_unref(d);
    status = r.status;
  }
  if (verbose && !r.failed)
    fprintf(stderr, "ct-http: %d, %zu open connection(s)\n", status,
            ct_http_client_connections(client));
  /* Let the connections finish closing before the reactor goes. */
  ct_deferred *closed = ct_http_client_close(client);
  if (closed != NULL && !ct_deferred_called(closed)) {
    ct_deferred_add_both(closed, closed_cb, reactor);
    ct_reactor_run(reactor);
  }
  ct_deferred_unref(closed);
  ct_reactor_free(reactor);
  ct_http_headers_clear(&headers);
  if (out != NULL && out != stdout)
    fclose(out);
  else
    fflush(stdout);
  if (r.failed)
    return 3;
  return status >= 400 ? 1 : 0;
}
