/*
 * libFuzzer target for the JSON-RPC server and client.  The input after
 * its first byte is one frame's content.  The server gets it as a request
 * (with a deadline-ms header when the first byte is odd), on a string
 * transport: every reply it writes must be a well-formed frame whose
 * content is valid JSON, with one answer per id-carrying request.  Then a
 * client gets the same content as a response on its own connection while
 * a call is pending: nothing may crash, and freeing everything must leave
 * no leak (ASan builds).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/jsonrpc.h"
#include "ctwist/testing.h"

static ct_step echo(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)arg;
  return ct_pass(ct_rpc_value(params ? json_incref(params) : NULL));
}

/* An async method that never finishes by itself (cancelled at the end). */
static ct_step hang(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)params;
  (void)arg;
  return ct_wait(ct_deferred_new(NULL, NULL));
}

static ct_step boom(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)params;
  (void)arg;
  return ct_raise(ct_rpc_error_new(-1, json_pack("[i]", 1), "boom"));
}

static int check_reply(void *arg, const ct_msg_header *h, const char *content,
                       size_t len) {
  (void)h;
  int *n = arg;
  json_t *j = json_loadb(content ? content : "", len, 0, NULL);
  if (j == NULL)
    abort();
  json_decref(j);
  (*n)++;
  return 0;
}

static void frame(ct_string_transport *st, const uint8_t *data, size_t size,
                  int deadline) {
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "content-type", "application/json");
  if (deadline)
    ct_msg_header_set_int(h, CT_RPC_DEADLINE_KEY, 5);
  char *f;
  size_t fl;
  if (ct_msg_encode(h, data, size, &f, &fl) == 0) {
    ct_string_transport_feed(st, f, fl);
    free(f);
  }
  ct_msg_header_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  int deadline = data[0] & 1;
  data++;
  size--;
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  ct_rpc_server_options so = {.max_batch = 16, .max_depth = 16};
  ct_rpc_server *s = ct_rpc_server_new(r, &so);
  ct_rpc_server_register(s, "echo", echo, NULL);
  ct_rpc_server_register(s, "hang", hang, NULL);
  ct_rpc_server_register(s, "boom", boom, NULL);

  ct_string_transport *st = ct_string_transport_new(r);
  ct_string_transport_connect(st,
                              ct_factory_build(ct_rpc_server_factory(s), NULL));
  frame(st, data, size, deadline);
  ct_clock_advance(clk, 1.0); /* deadlines pass */
  size_t len;
  const char *out = ct_string_transport_value(st, &len);
  int replies = 0;
  ct_msg_decoder *dec = ct_msg_decoder_new(NULL, check_reply, &replies);
  if (ct_msg_decoder_feed(dec, out, len, NULL) != 0 ||
      ct_msg_decoder_buffered(dec) != 0)
    abort(); /* the server wrote a broken frame */
  ct_msg_decoder_free(dec);

  /* The same bytes as a response to a pending call. */
  ct_rpc_client *c = ct_rpc_client_new(r, NULL);
  ct_string_transport *ct = ct_string_transport_new(r);
  ct_string_transport_connect(ct,
                              ct_factory_build(ct_rpc_client_factory(c), NULL));
  ct_deferred *d = ct_rpc_call(c, "x", NULL);
  frame(ct, data, size, 0);
  ct_deferred_cancel(d);
  ct_deferred_unref(d);

  ct_rpc_client_free(c);
  ct_string_transport_free(ct);
  ct_rpc_server_free(s);
  ct_string_transport_free(st);
  ct_reactor_free(r);
  ct_clock_free(clk);
  return 0;
}
