/*
 * The ctwist side of bench/http's "hello" shape: a site with one handler
 * answering "hello world\n" (text/plain) at /hello.  Prints "listening on
 * ADDR" once ready; stops on SIGINT/SIGTERM.
 *
 *   http_hello_server PORT
 */
#include <stdio.h>
#include <stdlib.h>

#include "ctwist/ctwist.h"

static ct_http_reply hello(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  ct_http_response *r = ct_http_response_new(200);
  if (r != NULL) {
    ct_http_headers_add(&r->headers, "Content-Type", "text/plain");
    ct_http_response_set_body(r, "hello world\n", 12);
  }
  return ct_http_reply_now(r);
}

int main(int argc, char **argv) {
  char ep[64];
  snprintf(ep, sizeof ep, "tcp:%s:interface=127.0.0.1",
           argc > 1 ? argv[1] : "0");
  ct_reactor *r = ct_reactor_new();
  ct_http_site *site = ct_http_site_new(r);
  ct_http_site_route(site, "/hello", hello, NULL);
  ct_failure *err = NULL;
  ct_listening_port *port = ct_listen(r, ep, ct_http_site_factory(site), &err);
  if (port == NULL) {
    ct_failure_print(err, stderr);
    return 1;
  }
  ct_address a;
  char buf[CT_ADDRESS_STRLEN];
  ct_listening_port_address(port, &a);
  ct_address_format(&a, buf, sizeof buf);
  printf("listening on %s\n", buf);
  fflush(stdout);
  ct_reactor_run(r);
  ct_deferred_unref(ct_listening_port_stop(port));
  ct_http_site_free(site);
  ct_reactor_free(r);
  return 0;
}
