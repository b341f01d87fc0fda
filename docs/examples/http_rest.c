/*
 * A REST service on ctwist's HTTP server: a counter resource with JSON in
 * and out, one synchronous and one asynchronous handler, and static files.
 *
 *   http_rest [PORT] [DIR]
 *   curl http://127.0.0.1:8080/api/counter            -> {"count": 0}
 *   curl -d '{"add": 5}' http://127.0.0.1:8080/api/counter
 *   curl http://127.0.0.1:8080/api/slow?delay=0.5     (answers later)
 *   curl http://127.0.0.1:8080/files/                 (DIR's listing)
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/ctwist.h"

typedef struct counter {
  long count;
} counter;

/* GET returns the count; POST {"add": N} adds N.  Anything else: 405. */
static ct_http_reply counter_handler(ct_http_request *req, void *arg) {
  counter *c = arg;
  if (strcmp(req->method, "POST") == 0) {
    ct_failure *err = NULL;
    json_t *in = ct_http_request_json(req, &err);
    if (in == NULL) {
      ct_http_response *r = ct_http_response_json_error(400, err->message);
      ct_failure_free(err);
      return ct_http_reply_now(r);
    }
    json_t *add = json_object_get(in, "add");
    if (!json_is_integer(add)) {
      json_decref(in);
      return ct_http_reply_now(
          ct_http_response_json_error(422, "\"add\" must be an integer"));
    }
    c->count += (long)json_integer_value(add);
    json_decref(in);
  } else if (strcmp(req->method, "GET") != 0) {
    return ct_http_reply_now(ct_http_response_json_error(405, "GET or POST"));
  }
  return ct_http_reply_now(
      ct_http_response_json(200, json_pack("{s:i}", "count", (int)c->count)));
}

/* An asynchronous handler: the reply is a Deferred fired by a timer. */
static void answer(void *arg) {
  ct_deferred *d = arg;
  ct_http_response *r =
      ct_http_response_json(200, json_pack("{s:s}", "status", "done"));
  ct_deferred_callback(d,
                       ct_value_of(r, (void (*)(void *))ct_http_response_free));
  ct_deferred_unref(d);
}

static ct_http_reply slow_handler(ct_http_request *req, void *arg) {
  (void)arg;
  const char *delay = ct_http_request_param(req, "delay");
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  /* One reference for the timer, one handed to the server.  (A real
   * handler would also give the Deferred a canceller that cancels the
   * timer: the server cancels the Deferred if the client goes away.) */
  ct_call_later(req->reactor, delay ? atof(delay) : 0.1, answer,
                ct_deferred_ref(d));
  return ct_http_reply_later(d);
}

int main(int argc, char **argv) {
  char endpoint[64];
  snprintf(endpoint, sizeof endpoint, "tcp:%s:interface=127.0.0.1",
           argc > 1 ? argv[1] : "8080");
  ct_reactor *reactor = ct_reactor_new();
  ct_http_site *site = ct_http_site_new(reactor);
  counter c = {0};
  ct_http_site_route(site, "/api/counter", counter_handler, &c);
  ct_http_site_route(site, "/api/slow", slow_handler, NULL);
  ct_failure *err = NULL;
  ct_http_static *files =
      ct_http_static_new(argc > 2 ? argv[2] : ".", NULL, &err);
  if (files == NULL) {
    ct_failure_print(err, stderr);
    return 1;
  }
  ct_http_site_route(site, "/files", ct_http_static_handler, files);
  ct_http_site_set_access_log(site, stdout);
  ct_listening_port *port =
      ct_listen(reactor, endpoint, ct_http_site_factory(site), &err);
  if (port == NULL) {
    ct_failure_print(err, stderr);
    return 1;
  }
  ct_reactor_run(reactor); /* until SIGINT/SIGTERM */
  ct_deferred_unref(ct_listening_port_stop(port));
  ct_http_static_free(files);
  ct_http_site_free(site);
  ct_reactor_free(reactor);
  return 0;
}
