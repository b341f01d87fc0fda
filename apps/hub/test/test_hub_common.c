/* Unit tests of the helpers shared by ct-hub and ct-filer (hub_common.h):
 * option values, sizes, seconds, member names, request headers. */
#include <criterion/criterion.h>
#include <string.h>

#include "hub_common.h"

Test(hub_common, option_values) {
  char *argv[] = {"prog",  "--name",  "alice", "--listen=tcp:7000",
                  "--hub", "--named", "x",     "--dir"};
  int argc = 8, missing = 0, i = 1;
  cr_assert_str_eq(ctapp_opt(argc, argv, &i, "--name", &missing), "alice");
  cr_assert_eq(i, 2);
  i = 3;
  cr_assert_str_eq(ctapp_opt(argc, argv, &i, "--listen", &missing), "tcp:7000");
  cr_assert_eq(i, 3);
  i = 5; /* --named is not --name */
  cr_assert_null(ctapp_opt(argc, argv, &i, "--name", &missing));
  cr_assert_eq(missing, 0);
  i = 7; /* --dir without a value */
  cr_assert_null(ctapp_opt(argc, argv, &i, "--dir", &missing));
  cr_assert_eq(missing, 1);
}

Test(hub_common, sizes) {
  size_t v = 0;
  cr_assert_eq(hub_parse_size("0", &v), 0);
  cr_assert_eq(v, 0);
  cr_assert_eq(hub_parse_size("64M", &v), 0);
  cr_assert_eq(v, 64u << 20);
  cr_assert_eq(hub_parse_size("8mib", &v), 0);
  cr_assert_eq(v, 8u << 20);
  cr_assert_eq(hub_parse_size("512KB", &v), 0);
  cr_assert_eq(v, 512u << 10);
  cr_assert_eq(hub_parse_size("1G", &v), 0);
  cr_assert_eq(v, 1u << 30);
  const char *bad[] = {"", "-1", "12X", "1MM", "M", "99999999999999999999G"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(hub_parse_size(bad[i], &v), -1, "%s accepted", bad[i]);
}

Test(hub_common, seconds) {
  double s = 0;
  cr_assert_eq(hub_parse_seconds("0.25", &s), 0);
  cr_assert_float_eq(s, 0.25, 1e-12);
  const char *bad[] = {"", "0", "-1", "nan", "inf", "1e9", "2s"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(hub_parse_seconds(bad[i], &s), -1, "%s accepted", bad[i]);
}

Test(hub_common, names) {
  cr_assert(hub_valid_name("alice"));
  cr_assert(hub_valid_name("a-b_c.1"));
  cr_assert_not(hub_valid_name(""));
  cr_assert_not(hub_valid_name("two words"));
  cr_assert_not(hub_valid_name("tab\there"));
  cr_assert_not(hub_valid_name("\x1b[31m"));
  char longname[HUB_NAME_MAX + 2];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  cr_assert_not(hub_valid_name(longname));
  longname[HUB_NAME_MAX] = '\0';
  cr_assert(hub_valid_name(longname));
}

Test(hub_common, request_headers) {
  ct_msg_header *h = hub_header("list", 7);
  cr_assert_not_null(h);
  const char *type;
  int64_t req;
  cr_assert_eq(ct_msg_header_get_str(h, "type", &type), 0);
  cr_assert_str_eq(type, "list");
  cr_assert_eq(ct_msg_header_get_int(h, "req", &req), 0);
  cr_assert_eq(req, 7);
  ct_msg_header_free(h);
  h = hub_header("report", 0); /* no req */
  cr_assert_eq(ct_msg_header_get_int(h, "req", &req), CT_ENOTFOUND);
  cr_assert_eq(ct_msg_header_count(h), 1);
  ct_msg_header_free(h);
}
