/* ct_failure as Deferreds use it: creation site, cause chains, copies,
 * formatting of the whole chain, and the codes the deferred layer adds. */
#include "test_deferred_common.h"

DTEST(failure, new_records_code_domain_message_and_site) {
  int line = __LINE__ + 1;
  ct_failure *f = ct_failure_new(CT_EPROTO, "bad %s #%d", "frame", 7);
  cr_assert_eq(f->code, CT_EPROTO);
  cr_assert_str_eq(f->domain, "ctwist");
  cr_assert_str_eq(f->message, "bad frame #7");
  cr_assert_null(f->cause);
  cr_assert_not_null(strstr(f->file, "test_failure_chain.c"));
  cr_assert_eq(f->line, line);
  ct_failure_free(f);
}

DTEST(failure, wrap_builds_a_cause_chain) {
  ct_failure *root = ct_failure_errno(-ECONNREFUSED, "connect");
  ct_failure *mid = ct_failure_wrap("tcp", CT_ECONNLOST, root, "lost");
  ct_failure *top = ct_failure_wrap("rpc", CT_EUSER, mid, "call failed");
  cr_assert_eq(top->cause, mid);
  cr_assert_eq(mid->cause, root);
  cr_assert(ct_failure_check(top, CT_ECONNREFUSED));
  cr_assert(ct_failure_check(top, CT_ECONNLOST));
  cr_assert_not(ct_failure_check(top, CT_ETIMEDOUT));
  cr_assert_not_null(strstr(root->message, "connection refused"));
  ct_failure_free(top); /* frees the whole chain */
}

DTEST(failure, format_renders_whole_chain) {
  ct_failure *f =
      ct_failure_wrap("tcp", CT_ECONNRESET,
                      ct_failure_new(CT_EPIPE, "root cause"), "peer reset");
  char buf[512];
  size_t need = ct_failure_format(f, buf, sizeof(buf));
  cr_assert_eq(need, strlen(buf));
  cr_assert_not_null(strstr(buf, "[tcp] ECONNRESET: peer reset"));
  cr_assert_not_null(strstr(buf, "caused by: [ctwist] EPIPE: root cause"));
  cr_assert_not_null(strstr(buf, "test_failure_chain.c"));
  /* Truncation: still NUL-terminated, returns the full length. */
  char small[16];
  cr_assert_eq(ct_failure_format(f, small, sizeof(small)), need);
  cr_assert_eq(strlen(small), sizeof(small) - 1);
  ct_failure_free(f);
}

DTEST(failure, copy_is_deep_and_independent) {
  ct_failure *f = ct_failure_wrap("x", CT_EUSER,
                                  ct_failure_new(CT_EPROTO, "inner"), "outer");
  ct_failure *c = ct_failure_copy(f);
  cr_assert_neq(c, f);
  cr_assert_neq(c->cause, f->cause);
  cr_assert_str_eq(c->message, "outer");
  cr_assert_str_eq(c->cause->message, "inner");
  cr_assert_eq(c->line, f->line);
  ct_failure_free(f);
  cr_assert_eq(c->cause->code, CT_EPROTO);
  ct_failure_free(c);
  cr_assert_null(ct_failure_copy(NULL));
  ct_failure_free(NULL);
}

DTEST(failure, deferred_codes_have_names_and_messages) {
  cr_assert_str_eq(ct_err_name(CT_EALREADY_CALLED), "EALREADY_CALLED");
  cr_assert_str_eq(ct_err_name(CT_ECANCELLED), "ECANCELLED");
  cr_assert_str_eq(ct_err_name(CT_EFIRST_ERROR), "EFIRST_ERROR");
  cr_assert_str_eq(ct_strerror(CT_EFIRST_ERROR),
                   "first error in a deferred list");
  cr_assert_str_eq(ct_strerror(CT_EQUEUEFULL), "queue is full");
}

DTEST(failure, travels_through_deferred_unchanged) {
  ct_failure *f = ct_failure_new(CT_EPROTO, "original");
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_errback(d, eb_record, &(rec){0});
  ct_deferred_errback(d, f);
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0);
  cr_assert_eq(r.failure, f, "the same object, owned by whoever holds it");
  ct_failure_free(r.failure);
  ct_deferred_unref(d);
}

DTEST(failure, print_writes_chain) {
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  ct_failure *f = ct_failure_wrap("a", CT_EUSER, ct_failure_new(CT_EPROTO, "b"),
                                  "a failed");
  ct_failure_print(f, out);
  fclose(out);
  cr_assert_not_null(strstr(buf, "a failed"));
  cr_assert_not_null(strstr(buf, "caused by"));
  free(buf);
  ct_failure_free(f);
}
