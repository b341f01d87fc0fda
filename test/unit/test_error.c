/* Error codes and failures: names, messages, the cause chain, copying,
 * formatting (with truncation), printing. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/error.h"

Test(error, codes_names_and_messages) {
  cr_assert_eq(CT_EINVAL, -EINVAL);
  cr_assert_eq(CT_EALREADY_CALLED, -4001);
  cr_assert_str_eq(ct_err_name(CT_EALREADY_CANCELLED), "EALREADY_CANCELLED");
  cr_assert_str_eq(ct_err_name(CT_ECONNREFUSED), "ECONNREFUSED");
  cr_assert_str_eq(ct_err_name(0), "OK");
  cr_assert_str_eq(ct_err_name(-3999), "UNKNOWN");
  cr_assert_str_eq(ct_strerror(0), "success");
  cr_assert_str_eq(ct_strerror(CT_ETIMEDOUT), "timed out");
  cr_assert_str_eq(ct_strerror(CT_ENOTRUNNING), "reactor is not running");
  /* An errno not in the list still gets the C library's text. */
  cr_assert_str_eq(ct_strerror(-ENOTDIR), strerror(ENOTDIR));
  cr_assert_str_eq(ct_strerror(-4999), "unknown error");
  cr_assert_str_eq(ct_strerror(5), "unknown error");
}

Test(error, every_listed_code_is_unique_and_named) {
  static const int codes[] = {
#define X(name, value, msg) value,
      CT_ERRNO_MAP(X)
#undef X
  };
  size_t n = sizeof(codes) / sizeof(codes[0]);
  for (size_t i = 0; i < n; i++) {
    cr_assert_lt(codes[i], 0);
    cr_assert_str_neq(ct_err_name(codes[i]), "UNKNOWN");
    cr_assert_str_neq(ct_strerror(codes[i]), "unknown error");
    for (size_t j = i + 1; j < n; j++)
      cr_assert_neq(codes[i], codes[j], "duplicate value %d", codes[i]);
  }
}

Test(error, failure_fields_and_check) {
  ct_failure *inner = ct_failure_errno(CT_ECONNREFUSED, "connect");
  ct_failure *f =
      ct_failure_wrap("tcp", CT_ECONNLOST, inner, "to %s:%d", "127.0.0.1", 1);
  cr_assert_eq(f->code, CT_ECONNLOST);
  cr_assert_str_eq(f->domain, "tcp");
  cr_assert_str_eq(f->message, "to 127.0.0.1:1");
  cr_assert_eq(f->cause, inner);
  cr_assert_str_eq(inner->domain, "os");
  cr_assert_str_eq(inner->message, "connect: connection refused");
  cr_assert_not_null(strstr(f->file, "test_error.c"));
  cr_assert_gt(f->line, 0);
  cr_assert(ct_failure_check(f, CT_ECONNREFUSED));
  cr_assert(ct_failure_check(f, CT_ECONNLOST));
  cr_assert_not(ct_failure_check(f, CT_EINVAL));
  cr_assert_not(ct_failure_check(NULL, CT_EINVAL));
  ct_failure_free(f);
  ct_failure_free(NULL);
}

Test(error, format_chain) {
  ct_failure *f = ct_failure_wrap(
      "rpc", CT_ETIMEDOUT,
      ct_failure_wrap("tcp", CT_ECONNLOST, ct_failure_new(CT_EPIPE, "%s", ""),
                      "peer went away"),
      "call %d", 7);
  char buf[512];
  size_t need = ct_failure_format(f, buf, sizeof(buf));
  cr_assert_eq(need, strlen(buf));
  /* One line per link; an empty message shows the code's text. */
  cr_assert_not_null(strstr(buf, "[rpc] ETIMEDOUT: call 7 (test_error.c:"));
  cr_assert_not_null(strstr(
      buf, "\n  caused by: [tcp] ECONNLOST: peer went away (test_error.c:"));
  cr_assert_not_null(
      strstr(buf, "\n  caused by: [ctwist] EPIPE: broken pipe (test_error.c:"));
  cr_assert_eq(strncmp(buf, "[rpc]", 5), 0);

  /* Truncation: always terminated, returns the full length. */
  char small[16];
  cr_assert_eq(ct_failure_format(f, small, sizeof(small)), need);
  cr_assert_eq(strlen(small), sizeof(small) - 1);
  cr_assert_eq(strncmp(small, buf, sizeof(small) - 1), 0);
  cr_assert_eq(ct_failure_format(f, NULL, 0), need);
  char one[1];
  cr_assert_eq(ct_failure_format(f, one, 1), need);
  cr_assert_eq(one[0], '\0');
  cr_assert_eq(ct_failure_format(NULL, small, sizeof(small)), 0);
  cr_assert_str_eq(small, "");
  ct_failure_free(f);
}

Test(error, copy_is_deep_and_independent) {
  ct_failure *f = ct_failure_wrap(
      "a", CT_EUSER, ct_failure_new(CT_EINVAL, "inner %d", 1), "outer");
  ct_failure *c = ct_failure_copy(f);
  cr_assert_neq(c, f);
  cr_assert_neq(c->cause, f->cause);
  cr_assert_neq(c->message, f->message);
  char a[256], b[256];
  ct_failure_format(f, a, sizeof(a));
  ct_failure_format(c, b, sizeof(b));
  cr_assert_str_eq(a, b);
  ct_failure_free(f);
  cr_assert_str_eq(c->cause->message, "inner 1");
  ct_failure_free(c);
  cr_assert_null(ct_failure_copy(NULL));
}

Test(error, long_chains_do_not_recurse) {
  ct_failure *f = NULL;
  for (int i = 0; i < 200000; i++)
    f = ct_failure_wrap("x", CT_EUSER, f, "%d", i);
  ct_failure *c = ct_failure_copy(f);
  cr_assert(ct_failure_check(c, CT_EUSER));
  ct_failure_free(f);
  ct_failure_free(c);
}

Test(error, print_long_message) {
  char *big = malloc(3000);
  memset(big, 'z', 2999);
  big[2999] = '\0';
  ct_failure *f = ct_failure_new(CT_ETOOBIG, "%s", big);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  ct_failure_print(f, out);
  fclose(out);
  cr_assert_not_null(strstr(text, big));
  cr_assert_eq(text[len - 1], '\n');
  free(text);
  free(big);
  ct_failure_free(f);
}
