/*
 * Unix stream sockets: bulk echo with hash check, refused abstract names,
 * over-long paths, non-socket files in the way, SO_REUSEPORT on TCP.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "test_transport_util.h"

TU_REACTOR_FIXTURE

TestSuite(unix_socket, .init = setup, .fini = teardown, .timeout = 60);

Test(unix_socket, bulk_echo_hash) {
  char ep[96];
  snprintf(ep, sizeof ep, "unix:/tmp/ct-test-unix-bulk-%d.sock", (int)getpid());
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  sf.user = &sst;
  char cep[128];
  ct_listening_port *port = tu_listen_ep(R, ep, &sf, cep, sizeof cep);
  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_transport *t = ct_transport_ref(tu_connect_ok(R, cep, &cf, &cst, &res));
  cr_assert_str_eq(ct_transport_kind(t), "unix");
  size_t total = 8u * 1024u * 1024u;
  char *data = malloc(total);
  for (size_t i = 0; i < total; i++)
    data[i] = (char)(i ^ (i >> 9));
  cr_assert_eq(ct_transport_write(t, data, total), 0);
  /* Half-close: our output is flushed then shut down; we keep reading
   * the echo; the server flushes it and closes on our EOF. */
  cr_assert_eq(ct_transport_half_close(t), 0);
  tu_want_len w = {&cst, total};
  cr_assert(tu_spin(R, tu_got_len_any, &w, 30));
  cr_assert(tu_spin(R, tu_server_lost, &sst, 30));
  cr_assert_eq(sst.last_lost_code, CT_ECONNDONE);
  cr_assert_eq(tu_client_len(&cst), total);
  if (cst.last != NULL)
    cr_assert_eq(tu_fnv(cst.last->buf, cst.last->len), tu_fnv(data, total));
  else
    cr_assert_eq(cst.final_hash, tu_fnv(data, total));
  free(data);
  ct_transport_unref(t);
  tu_server_stats_release(&sst);
  tu_stop_port(port);
  tu_turns(R, 5);
}

Test(unix_socket, abstract_refused) {
  ct_client_factory cf;
  tu_client_stats cst;
  tu_client_factory_init(&cf, &cst);
  char ep[96];
  snprintf(ep, sizeof ep, "unix:path=@ct-test-nobody-%d", (int)getpid());
  tu_conn_result res;
  tu_connect(R, ep, &cf, &res);
  cr_assert(res.failure != NULL);
  cr_assert_eq(res.failure->code, CT_ECONNREFUSED);
  char msg[512];
  ct_failure_format(res.failure, msg, sizeof msg);
  cr_assert(strstr(msg, "@ct-test-nobody") != NULL, "%s", msg);
  ct_failure_free(res.failure);
}

Test(unix_socket, path_errors) {
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_failure *err = NULL;
  char ep[400] = "unix:/tmp/";
  memset(ep + 10, 'x', 300);
  ep[310] = '\0';
  cr_assert_null(ct_listen(R, ep, &sf, &err));
  cr_assert(err != NULL);
  ct_failure_free(err);
  /* A regular file where the socket should go is not replaced. */
  char path[80], fep[120];
  snprintf(path, sizeof path, "/tmp/ct-test-notsock-%d", (int)getpid());
  snprintf(fep, sizeof fep, "unix:%s:lockfile=0", path);
  int fd = open(path, O_CREAT | O_WRONLY, 0600);
  cr_assert(fd >= 0);
  close(fd);
  cr_assert_null(ct_listen(R, fep, &sf, &err));
  cr_assert_eq(err->code, CT_EADDRINUSE);
  ct_failure_free(err);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  unlink(path);
  /* A directory that does not exist. */
  cr_assert_null(
      ct_listen(R, "unix:/nonexistent-dir/x.sock:lockfile=0", &sf, &err));
  cr_assert_eq(err->code, CT_ENOENT, "%s", ct_err_name(err->code));
  ct_failure_free(err);
  cr_assert_eq(sf.users, 0);
}

Test(unix_socket, tcp_reuseport_shares_a_port) {
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_listening_port *a =
      tu_listen(R, "tcp:0:interface=127.0.0.1:reuseport=1", &sf);
  ct_address addr;
  ct_listening_port_address(a, &addr);
  char ep[96];
  snprintf(ep, sizeof ep, "tcp:%d:interface=127.0.0.1:reuseport=1",
           ct_address_port(&addr));
  ct_listening_port *b = tu_listen(R, ep, &sf);
  cr_assert_eq(sf.users, 2);
  cr_assert(ct_listening_port_fileno(b) >= 0);
  tu_stop_port(b);
  tu_stop_port(a);
  cr_assert_eq(sf.users, 0);
}
