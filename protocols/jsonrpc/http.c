/* JSON-RPC over HTTP: a ct_http handler in front of ct_rpc_server_handle().
 * The request text and the reply are exactly those of the message-frame
 * transport; HTTP only carries them (docs/rpc.md, "Over HTTP"). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctwist/bytes.h"
#include "protocols/jsonrpc/internal.h"

static ct_http_reply plain_error(int status, const char *detail,
                                 const char *allow) {
  ct_http_response *r = ct_http_response_error(status, detail);
  if (r != NULL && allow != NULL &&
      ct_http_headers_set(&r->headers, "Allow", allow) != 0) {
    ct_http_response_free(r);
    r = NULL;
  }
  return ct_http_reply_now(r);
}

/* "application/json", maybe with parameters ("; charset=utf-8"). */
static int is_json_type(const char *ct) {
  size_t n = strlen("application/json");
  return strncasecmp(ct, "application/json", n) == 0 &&
         (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static void response_free(void *p) {
  ct_http_response_free(p);
}

/* The reply text (a ct_bytes value, or none) as an HTTP response. */
static ct_step to_response(ct_value v, void *arg) {
  (void)arg;
  ct_bytes *b = v.ptr;
  ct_http_response *r = ct_http_response_new(b != NULL ? 200 : 204);
  int rc = r == NULL ? CT_ENOMEM : 0;
  if (rc == 0 && b != NULL) {
    rc = ct_http_headers_set(&r->headers, "Content-Type", "application/json");
    if (rc == 0)
      rc = ct_http_response_set_body(r, ct_bytes_data(b), ct_bytes_len(b));
  }
  ct_value_free(v);
  if (rc != 0) {
    ct_http_response_free(r);
    return ct_raise(ct_failure_new(rc, "cannot build the JSON-RPC reply"));
  }
  return ct_pass(ct_value_of(r, response_free));
}

ct_http_reply ct_rpc_http_handler(ct_http_request *req, void *server) {
  if (strcmp(req->method, "POST") != 0)
    return plain_error(405, "JSON-RPC takes POST", "POST");
  const char *ct = ct_http_request_header(req, "Content-Type");
  if (ct != NULL && !is_json_type(ct))
    return plain_error(415, "JSON-RPC takes application/json", NULL);
  int64_t deadline_ms = -1;
  const char *dl = ct_http_request_header(req, "Deadline-Ms");
  if (dl != NULL) {
    char *end;
    long long v = strtoll(dl, &end, 10);
    if (end == dl || *end != '\0')
      return plain_error(400, "Deadline-Ms is not an integer", NULL);
    deadline_ms = v < 0 ? 0 : v; /* already passed: not started */
  }
  ct_deferred *d =
      ct_rpc_server_handle(server, req->body, req->body_len, deadline_ms);
  if (d == NULL)
    return ct_http_reply_fail(ct_failure_new(CT_ENOMEM, "out of memory"));
  if (ct_deferred_add_callback(d, to_response, NULL) != 0) {
    ct_deferred_cancel(d);
    ct_deferred_unref(d);
    return ct_http_reply_fail(ct_failure_new(CT_ENOMEM, "out of memory"));
  }
  return ct_http_reply_later(d);
}
