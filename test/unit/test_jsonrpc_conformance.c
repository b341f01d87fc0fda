/* JSON-RPC 2.0 conformance: every request/response example of section 7
 * of the specification (https://www.jsonrpc.org/specification#examples),
 * then the edge cases of issue 10, table-driven over the in-memory pump
 * with a fake clock.  All of a table runs on one connection, which must
 * keep serving after every error; each table runs with whole frames and
 * with one-byte chunks. */
#include "ctwist/bytes.h"
#include "test_jsonrpc_common.h"

typedef struct example {
  const char *name;
  const char *request;
  const char *response; /* NULL: no reply at all */
} example;

static const example spec[] = {
    {"positional params",
     "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", "
     "\"params\": [42, 23], \"id\": 1}",
     "{\"jsonrpc\": \"2.0\", \"result\": 19, \"id\": 1}"},
    {"positional params reversed",
     "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": [23, 42], "
     "\"id\": 2}",
     "{\"jsonrpc\": \"2.0\", \"result\": -19, \"id\": 2}"},
    {"named params",
     "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": "
     "{\"subtrahend\": 23, \"minuend\": 42}, \"id\": 3}",
     "{\"jsonrpc\": \"2.0\", \"result\": 19, \"id\": 3}"},
    {"named params reordered",
     "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": "
     "{\"minuend\": 42, \"subtrahend\": 23}, \"id\": 4}",
     "{\"jsonrpc\": \"2.0\", \"result\": 19, \"id\": 4}"},
    {"notification",
     "{\"jsonrpc\": \"2.0\", \"method\": \"update\", \"params\": [1,2,3,4,5]}",
     NULL},
    {"notification without params",
     "{\"jsonrpc\": \"2.0\", \"method\": "
     "\"foobar\"}",
     NULL},
    {"non-existent method",
     "{\"jsonrpc\": \"2.0\", \"method\": \"foobar\", \"id\": \"1\"}",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32601, \"message\": "
     "\"Method not found\"}, \"id\": \"1\"}"},
    {"invalid JSON",
     "{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", "
     "\"baz]",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32700, \"message\": "
     "\"Parse error\"}, \"id\": null}"},
    {"invalid Request object",
     "{\"jsonrpc\": \"2.0\", \"method\": 1, \"params\": \"bar\"}",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request\"}, \"id\": null}"},
    {"batch, invalid JSON",
     "[\n  {\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], "
     "\"id\": \"1\"},\n  {\"jsonrpc\": \"2.0\", \"method\"\n]",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32700, \"message\": "
     "\"Parse error\"}, \"id\": null}"},
    {"empty array", "[]",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request\"}, \"id\": null}"},
    {"invalid batch, not empty", "[1]",
     "[{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request\"}, \"id\": null}]"},
    {"invalid batch", "[1,2,3]",
     "[{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request\"}, \"id\": null},"
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request\"}, \"id\": null},"
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request\"}, \"id\": null}]"},
    {"batch",
     "[{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], "
     "\"id\": \"1\"},"
     "{\"jsonrpc\": \"2.0\", \"method\": \"notify_hello\", \"params\": [7]},"
     "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": [42,23], "
     "\"id\": \"2\"},"
     "{\"foo\": \"boo\"},"
     "{\"jsonrpc\": \"2.0\", \"method\": \"foo.get\", \"params\": {\"name\": "
     "\"myself\"}, \"id\": \"5\"},"
     "{\"jsonrpc\": \"2.0\", \"method\": \"get_data\", \"id\": \"9\"}]",
     "[{\"jsonrpc\": \"2.0\", \"result\": 7, \"id\": \"1\"},"
     "{\"jsonrpc\": \"2.0\", \"result\": 19, \"id\": \"2\"},"
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request\"}, \"id\": null},"
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32601, \"message\": "
     "\"Method not found\"}, \"id\": \"5\"},"
     "{\"jsonrpc\": \"2.0\", \"result\": [\"hello\", 5], \"id\": \"9\"}]"},
    {"batch of notifications",
     "[{\"jsonrpc\": \"2.0\", \"method\": \"notify_sum\", \"params\": "
     "[1,2,4]},"
     "{\"jsonrpc\": \"2.0\", \"method\": \"notify_hello\", \"params\": [7]}]",
     NULL},
};

#define ERR(code, id)                                                          \
  "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": " #code                        \
  ", \"message\": \"Invalid Request\"}, \"id\": " id "}"

static const example edges[] = {
    {"id null is a request, answered",
     "{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1], \"id\": "
     "null}",
     "{\"jsonrpc\": \"2.0\", \"result\": 1, \"id\": null}"},
    {"params a string",
     "{\"jsonrpc\": \"2.0\", \"method\": \"sum\", "
     "\"params\": \"bar\", \"id\": 7}",
     ERR(-32600, "7")},
    {"params a number",
     "{\"jsonrpc\": \"2.0\", \"method\": \"sum\", "
     "\"params\": 3, \"id\": 8}",
     ERR(-32600, "8")},
    {"wrong version",
     "{\"jsonrpc\": \"1.0\", \"method\": \"sum\", "
     "\"params\": [1], \"id\": 9}",
     ERR(-32600, "9")},
    {"no version", "{\"method\": \"sum\", \"params\": [1], \"id\": 10}",
     ERR(-32600, "10")},
    {"id an object",
     "{\"jsonrpc\": \"2.0\", \"method\": \"sum\", "
     "\"params\": [1], \"id\": {}}",
     ERR(-32600, "null")},
    {"a bare number", "1", ERR(-32600, "null")},
    {"a bare string", "\"x\"", ERR(-32600, "null")},
    {"invalid params",
     "{\"jsonrpc\": \"2.0\", \"method\": \"subtract\", \"params\": [1], "
     "\"id\": 11}",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32602, \"message\": "
     "\"Invalid params\"}, \"id\": 11}"},
    {"a failing method answers -32603",
     "{\"jsonrpc\": \"2.0\", \"method\": \"fail\", \"id\": 12}",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32603, \"message\": "
     "\"Internal error\"}, \"id\": 12}"},
    {"application error",
     "{\"jsonrpc\": \"2.0\", \"method\": \"apperr\", "
     "\"id\": 13}",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32000, \"message\": "
     "\"application error\"}, \"id\": 13}"},
    {"reserved rpc. names",
     "{\"jsonrpc\": \"2.0\", \"method\": "
     "\"rpc.nope\", \"id\": 14}",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32601, \"message\": "
     "\"Method not found\"}, \"id\": 14}"},
    {"rpc.cancel of nothing",
     "{\"jsonrpc\": \"2.0\", \"method\": "
     "\"rpc.cancel\", \"params\": {\"id\": 99}, "
     "\"id\": 15}",
     "{\"jsonrpc\": \"2.0\", \"result\": false, \"id\": 15}"},
    {"nesting over the limit",
     "{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [[[[[[[[[[1]]]]]"
     "]]]]], \"id\": 16}",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request: nested deeper than 8 levels\"}, \"id\": null}"},
    {"batch over the limit", "[1,2,3,4,5]",
     "{\"jsonrpc\": \"2.0\", \"error\": {\"code\": -32600, \"message\": "
     "\"Invalid Request: batch of 5 is over 4\"}, \"id\": null}"},
    {"still serving",
     "{\"jsonrpc\": \"2.0\", \"method\": \"sum\", "
     "\"params\": [2, 3], \"id\": 17}",
     "{\"jsonrpc\": \"2.0\", \"result\": 5, \"id\": 17}"},
};

static const ct_rpc_server_options edge_limits = {.max_batch = 4,
                                                  .max_depth = 8};

static void run_table(const example *t, size_t n, size_t chunk,
                      const ct_rpc_server_options *o) {
  rpc_fx fx;
  rpc_fx_init(&fx, o);
  raw_connect(&fx, chunk);
  for (size_t i = 0; i < n; i++) {
    int before = fx.got_raw;
    raw_send(&fx, t[i].request, -1);
    if (t[i].response == NULL) {
      cr_assert_eq(fx.got_raw, before, "%s: expected no reply", t[i].name);
      continue;
    }
    cr_assert_eq(fx.got_raw, before + 1, "%s: expected one reply, got %d",
                 t[i].name, fx.got_raw - before);
    json_t *got = json_array_get(fx.got, json_array_size(fx.got) - 1);
    json_t *want = json_loads(t[i].response, 0, NULL);
    cr_assert_not_null(want, "%s: bad expected JSON", t[i].name);
    strip_data(got);
    char *gs = json_dumps(got, JSON_COMPACT);
    cr_assert(json_same(got, want), "%s: got %s", t[i].name, gs);
    free(gs);
    json_decref(want);
  }
  rpc_fx_free(&fx);
}

Test(jsonrpc_conformance, spec_section_7_examples) {
  run_table(spec, sizeof spec / sizeof spec[0], 0, NULL);
}

/* The same table served through ct_rpc_server_handle() (the HTTP path):
 * the same replies, text for text, without a message frame around them. */
static void run_table_handle(const example *t, size_t n,
                             const ct_rpc_server_options *o) {
  rpc_fx fx;
  rpc_fx_init(&fx, o);
  for (size_t i = 0; i < n; i++) {
    ct_deferred *d =
        ct_rpc_server_handle(fx.s, t[i].request, strlen(t[i].request), -1);
    cr_assert_not_null(d);
    cr_assert(ct_deferred_called(d), "%s: not answered at once", t[i].name);
    ct_result r;
    cr_assert_eq(ct_deferred_take_result(d, &r), 0);
    cr_assert_null(r.failure, "%s: failed", t[i].name);
    ct_bytes *b = r.value.ptr;
    if (t[i].response == NULL) {
      cr_assert_null(b, "%s: expected no reply", t[i].name);
    } else {
      cr_assert_not_null(b, "%s: expected a reply", t[i].name);
      json_t *got = json_loadb(ct_bytes_data(b), ct_bytes_len(b), 0, NULL);
      json_t *want = json_loads(t[i].response, 0, NULL);
      cr_assert_not_null(got, "%s: reply is not JSON", t[i].name);
      strip_data(got);
      cr_assert(json_same(got, want), "%s: got %.*s", t[i].name,
                (int)ct_bytes_len(b), (const char *)ct_bytes_data(b));
      json_decref(got);
      json_decref(want);
    }
    ct_value_free(r.value);
    ct_deferred_unref(d);
  }
  rpc_fx_free(&fx);
}

Test(jsonrpc_conformance, spec_section_7_examples_through_handle) {
  run_table_handle(spec, sizeof spec / sizeof spec[0], NULL);
}

Test(jsonrpc_conformance, edge_cases_through_handle) {
  run_table_handle(edges, sizeof edges / sizeof edges[0], &edge_limits);
}

Test(jsonrpc_conformance, spec_section_7_examples_one_byte_chunks) {
  run_table(spec, sizeof spec / sizeof spec[0], 1, NULL);
}

Test(jsonrpc_conformance, edge_cases) {
  run_table(edges, sizeof edges / sizeof edges[0], 0, &edge_limits);
}

Test(jsonrpc_conformance, edge_cases_one_byte_chunks) {
  run_table(edges, sizeof edges / sizeof edges[0], 1, &edge_limits);
}

/* The details the table strips: a parse error says what is wrong, an
 * application error carries its data. */
Test(jsonrpc_conformance, error_data) {
  rpc_fx fx;
  rpc_fx_init(&fx, NULL);
  raw_connect(&fx, 0);
  raw_send(&fx, "{\"jsonrpc\": \"2.0\", \"method\": \"apperr\", \"id\": 1}",
           -1);
  raw_send(&fx, "{oops", -1);
  cr_assert_eq(fx.got_raw, 2);
  json_t *data = json_object_get(
      json_object_get(json_array_get(fx.got, 0), "error"), "data");
  cr_assert_str_eq(json_string_value(json_object_get(data, "why")), "because");
  data = json_object_get(json_object_get(json_array_get(fx.got, 1), "error"),
                         "data");
  cr_assert(json_is_string(data) && strlen(json_string_value(data)) > 0);
  ct_rpc_server_stats st;
  ct_rpc_server_stats_get(fx.s, &st);
  cr_assert_eq(st.served, 2);
  cr_assert_eq(st.errors, 2);
  cr_assert_eq(st.connections, 1);
  rpc_fx_free(&fx);
}

/* Register refuses reserved names and replaces an existing method. */
Test(jsonrpc_conformance, register_rules) {
  rpc_fx fx;
  rpc_fx_init(&fx, NULL);
  cr_assert_eq(ct_rpc_server_register(fx.s, "rpc.mine", m_sum, &fx), CT_EINVAL);
  cr_assert_eq(ct_rpc_server_register(fx.s, "sum", m_get_data, &fx), 0);
  for (int i = 0; i < 40; i++) { /* grow the table */
    char name[16];
    snprintf(name, sizeof name, "m%d", i);
    cr_assert_eq(ct_rpc_server_register(fx.s, name, m_sum, &fx), 0);
  }
  raw_connect(&fx, 0);
  raw_send(&fx, "{\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"id\": 1}", -1);
  raw_send(&fx,
           "{\"jsonrpc\": \"2.0\", \"method\": \"m39\", \"params\": [4], "
           "\"id\": 2}",
           -1);
  json_t *want =
      json_pack("[{s:s,s:[si],s:i},{s:s,s:i,s:i}]", "jsonrpc", "2.0", "result",
                "hello", 5, "id", 1, "jsonrpc", "2.0", "result", 4, "id", 2);
  cr_assert(json_equal(fx.got, want));
  json_decref(want);
  rpc_fx_free(&fx);
}
