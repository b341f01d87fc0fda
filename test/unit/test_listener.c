/*
 * Listeners under load: 1,000 concurrent connections opened and closed
 * with no descriptor leak, and survival of EMFILE (descriptor exhaustion,
 * with RLIMIT_NOFILE lowered in a forked child): one log line per episode,
 * the pending connection accepted-and-closed, accepting resumes.
 */
#include <errno.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "ctwist/log.h"
#include "test_transport_util.h"

TU_REACTOR_FIXTURE

TestSuite(listener, .init = setup, .fini = teardown, .timeout = 120);

#define NCONN 1000

typedef struct many {
  tu_conn_result res[NCONN];
  ct_transport *t[NCONN];
  int done;
} many;

static int all_connected(void *arg) {
  many *m = arg;
  for (int i = 0; i < NCONN; i++)
    if (!m->res[i].done)
      return 0;
  return 1;
}

static size_t echoed_total;
static int echo_lost;
static void count_data(ct_protocol *p, const char *d, size_t n) {
  (void)p;
  (void)d;
  echoed_total += n;
}
static void count_lost(ct_protocol *p, const ct_failure *f) {
  (void)p;
  (void)f;
  echo_lost++;
}
static const ct_protocol_ops counting_client_ops = {.name = "counting",
                                                    .data_received = count_data,
                                                    .connection_lost =
                                                        count_lost};

static int all_echoed(void *arg) {
  (void)arg;
  return echoed_total >= 2 * NCONN;
}

static int server_all_lost(void *arg) {
  tu_server_stats *st = arg;
  return st->lost == NCONN && echo_lost == NCONN;
}

Test(listener, thousand_connections_no_fd_leak) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2 * NCONN + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  cr_assert(rl.rlim_cur >= 2 * NCONN + 64, "RLIMIT_NOFILE too low");
  int fds0 = tu_count_fds();
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  sf.user = &sst;
  char ep[128];
  ct_listening_port *port = tu_listen_ep(
      R, "tcp:0:interface=127.0.0.1:backlog=1024", &sf, ep, sizeof ep);
  ct_client_factory cf;
  memset(&cf, 0, sizeof cf);
  ct_factory_init(&cf.base, NULL, &counting_client_ops, sizeof(ct_protocol),
                  NULL);
  static many m;
  memset(&m, 0, sizeof m);
  echoed_total = 0;
  echo_lost = 0;
  for (int i = 0; i < NCONN; i++) {
    ct_deferred *d = ct_connect(R, ep, &cf);
    cr_assert(d != NULL);
    ct_deferred_add_callbacks(d, tu_conn_ok, tu_conn_err, &m.res[i]);
    ct_deferred_unref(d);
  }
  cr_assert(tu_spin(R, all_connected, &m, 60));
  for (int i = 0; i < NCONN; i++) {
    cr_assert(m.res[i].failure == NULL, "connection %d failed", i);
    m.t[i] = m.res[i].protocol->transport;
    cr_assert_eq(ct_transport_write(m.t[i], "hi", 2), 0);
  }
  cr_assert(tu_spin(R, all_echoed, NULL, 60));
  cr_assert_eq(echoed_total, 2 * NCONN);
  cr_assert_eq(tu_count_fds(), fds0 + 2 * NCONN + 2 /* listener+reserve */);
  for (int i = 0; i < NCONN; i++)
    cr_assert_eq(ct_transport_lose_connection(m.t[i]), 0);
  cr_assert(tu_spin(R, server_all_lost, &sst, 60));
  cr_assert_eq(sst.made, NCONN);
  cr_assert_eq(ct_listening_port_accepted(port), NCONN);
  cr_assert_eq(cf.base.users, 0);
  tu_server_stats_release(&sst);
  tu_stop_port(port);
  cr_assert_eq(tu_count_fds(), fds0);
}

/* ----------------------------------------------------------------- EMFILE */

static int warn_lines;
static void count_warn(const ct_log_event *ev, void *arg) {
  (void)arg;
  if (ev->level >= CT_LOG_WARN && strcmp(ev->module, "tcp") == 0 &&
      strstr(ev->message, "accept") != NULL)
    warn_lines++;
}

/* Clients whose connection the listener has closed (EOF or reset). */
static int clients_closed(const int *clients, int nc) {
  int closed = 0;
  for (int i = 0; i < nc; i++) {
    char b;
    ssize_t n = recv(clients[i], &b, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN))
      closed++;
  }
  return closed;
}

/* Turn the loop until `want` clients are closed (bounded: a safety net,
 * not a timing); returns the count. */
static int turn_until_closed(ct_reactor *r, const int *clients, int nc,
                             int want) {
  double end = tu_now() + 10;
  int closed;
  while ((closed = clients_closed(clients, nc)) < want && tu_now() < end)
    ct_reactor_iterate(r);
  return closed;
}

/* Runs in a forked child; returns the exit status to report.  The reactor
 * runs on a fake clock, so the listener's back-off retries happen exactly
 * when the test advances it: each retry is one accept attempt that fails
 * with EMFILE and closes one pending client with the reserve descriptor.
 * The test counts attempts (closed clients), not wall time. */
static int emfile_child(void) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  if (r == NULL)
    return 10;
  ct_log_observer *obs = ct_log_add_observer(CT_LOG_WARN, count_warn, NULL);
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  sf.user = &sst;
  ct_listening_port *port =
      ct_listen(r, "tcp:0:interface=127.0.0.1", &sf, NULL);
  if (port == NULL)
    return 11;
  ct_address a;
  ct_listening_port_address(port, &a);
  /* Leave room for exactly a few descriptors, then eat them all with
   * client sockets so that accept() fails with EMFILE. */
  int top = dup(0);
  close(top);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = (rlim_t)top + 8;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 12;
  int clients[64], nc = 0;
  for (;;) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
      break;
    connect(fd, &a.u.sa, a.len);
    clients[nc++] = fd;
    if (nc == 64)
      return 13;
  }
  if (nc < 4)
    return 14;
  /* One episode of several attempts: the first fails at once, each later
   * one after the clock reaches the back-off (at most 1 s). */
  int attempts = 3;
  for (int k = 1; k <= attempts; k++) {
    if (turn_until_closed(r, clients, nc, k) < k)
      return 15;
    ct_clock_advance(clk, 1.0);
  }
  /* Several failed accepts, one warning: logged per episode. */
  if (warn_lines != 1)
    return 20 + (warn_lines > 9 ? 9 : warn_lines);
  if (sst.made != 0)
    return 30;
  /* Free descriptors: the listener accepts again at its next retry. */
  for (int i = 0; i < nc; i++)
    close(clients[i]);
  rl.rlim_cur = (rlim_t)top + 64;
  setrlimit(RLIMIT_NOFILE, &rl);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  connect(fd, &a.u.sa, a.len);
  ct_clock_advance(clk, 1.0);
  double end = tu_now() + 10;
  while (sst.made == 0 && tu_now() < end)
    ct_reactor_iterate(r);
  if (sst.made < 1)
    return 50;
  if (warn_lines != 1)
    return 60;
  close(fd);
  end = tu_now() + 10;
  while (sst.lost < sst.made && tu_now() < end)
    ct_reactor_iterate(r);
  tu_server_stats_release(&sst);
  ct_deferred_unref(ct_listening_port_stop(port));
  ct_log_remove_observer(obs);
  ct_reactor_iterate(r);
  ct_reactor_free(r);
  ct_clock_free(clk);
  return 0;
}

Test(listener, survives_emfile) {
  fflush(NULL);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0)
    _exit(emfile_child());
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status), "child crashed (status %d)", status);
  cr_assert_eq(WEXITSTATUS(status), 0, "child failed at step %d",
               WEXITSTATUS(status));
}
