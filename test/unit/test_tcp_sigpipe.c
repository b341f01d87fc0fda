/* With SIGPIPE at its default disposition (the library does not touch it),
 * writing to a TCP peer that has gone away is an error of that connection,
 * not a signal that kills the process: every socket write passes
 * MSG_NOSIGNAL. */
#include <signal.h>
#include <sys/socket.h>

#include "test_transport_util.h"

TU_REACTOR_FIXTURE

TestSuite(tcp_sigpipe, .init = setup, .fini = teardown, .timeout = 60);

static int has_conn(void *arg) {
  return ((tu_server_stats *)arg)->made > 0;
}

Test(tcp_sigpipe, write_to_a_reset_peer_is_an_error_not_a_signal) {
  signal(SIGPIPE, SIG_DFL);
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  sf.user = &sst;
  ct_listening_port *port = tu_listen(R, "tcp:0:interface=127.0.0.1", &sf);
  ct_address a;
  ct_listening_port_address(port, &a);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_eq(connect(fd, &a.u.sa, a.len), 0);
  cr_assert(tu_spin(R, has_conn, &sst, 10));
  /* Reset: the server's next writes fail with EPIPE/ECONNRESET. */
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  static char chunk[65536];
  for (int i = 0; i < 64 && sst.lost == 0; i++) {
    ct_transport_write(sst.last, chunk, sizeof chunk);
    ct_reactor_iterate(R);
  }
  cr_assert(tu_spin(R, tu_server_lost, &sst, 10));
  cr_assert_neq(sst.last_lost_code, 0);
  tu_server_stats_release(&sst);
  tu_stop_port(port);
}
