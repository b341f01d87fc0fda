/*
 * UDP ports on 127.0.0.1 / ::1, port 0: echo round trips, connected mode
 * and ICMP port unreachable, broadcast, multicast membership, truncation,
 * stopping from inside a callback, and bad endpoints.
 *
 * The reactor runs until the test's protocols stop it; a 10 s real-time
 * guard stops a hung test (it is a safety net, not a timing assertion).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "ctwist/deferred.h"
#include "ctwist/reactor.h"
#include "ctwist/udp.h"

typedef struct dproto {
  ct_datagram_protocol base;
  ct_reactor *reactor;
  int started, stopped, refused, received;
  char last[256];
  size_t last_len;
  ct_address last_from;
  int echo; /* send every datagram back */
  int stop_reactor_on_receive;
  int stop_port_on_receive;
  ct_deferred *stop_d;
  const char *greeting; /* sent from start_protocol to `target` */
  ct_address target;
} dproto;

static void d_start(ct_datagram_protocol *p, ct_udp_port *port) {
  dproto *d = (dproto *)p;
  d->started++;
  cr_assert_eq(p->port, port);
  if (d->greeting != NULL) {
    cr_assert_eq(
        ct_udp_write_to(port, d->greeting, strlen(d->greeting), &d->target), 0);
  }
}

static void d_recv(ct_datagram_protocol *p, const char *data, size_t len,
                   const ct_address *from) {
  dproto *d = (dproto *)p;
  d->received++;
  d->last_len = len < sizeof(d->last) ? len : sizeof(d->last);
  memcpy(d->last, data, d->last_len);
  d->last_from = *from;
  if (d->echo) {
    cr_assert_eq(ct_udp_write_to(p->port, data, len, from), 0);
  }
  if (d->stop_port_on_receive) {
    d->stop_d = ct_udp_port_stop(p->port);
    cr_assert_not_null(d->stop_d);
    cr_assert(!ct_deferred_called(d->stop_d), "not inside the callback");
    cr_assert_eq(d->stopped, 0);
  }
  if (d->stop_reactor_on_receive) {
    ct_reactor_stop(d->reactor);
  }
}

static void d_refused(ct_datagram_protocol *p) {
  dproto *d = (dproto *)p;
  d->refused++;
  ct_reactor_stop(d->reactor);
}

static void d_stop(ct_datagram_protocol *p) {
  ((dproto *)p)->stopped++;
}

static const ct_datagram_protocol_ops dops = {
    .name = "test",
    .start_protocol = d_start,
    .datagram_received = d_recv,
    .connection_refused = d_refused,
    .stop_protocol = d_stop,
};

static ct_reactor *reactor;

static void guard_cb(void *arg) {
  (void)arg;
  ct_reactor_stop(reactor);
}

static void setup(void) {
  reactor = ct_reactor_new();
  cr_assert_not_null(reactor);
}

static void teardown(void) {
  ct_reactor_free(reactor);
}

static void run(void) {
  ct_delayed_call *guard = ct_call_later(reactor, 10.0, guard_cb, NULL);
  ct_delayed_call_ref(guard);
  ct_reactor_run(reactor);
  ct_delayed_call_cancel(guard);
  ct_delayed_call_unref(guard);
}

static void stop_port(ct_udp_port *u, dproto *d) {
  int before = d->stopped;
  ct_deferred *sd = ct_udp_port_stop(u);
  cr_assert_not_null(sd);
  cr_assert(ct_deferred_called(sd));
  ct_deferred_unref(sd);
  cr_assert_eq(d->stopped, before + 1);
  cr_assert_null(d->base.port);
}

/* A port on 127.0.0.1, any free port, for `d`; asserts success. */
static ct_udp_port *listen_local(dproto *d) {
  ct_udp_port *u =
      ct_listen_udp(reactor, "udp:0:interface=127.0.0.1", &d->base, NULL);
  cr_assert_not_null(u);
  return u;
}

static void init_proto(dproto *d) {
  memset(d, 0, sizeof(*d));
  d->base.ops = &dops;
  d->reactor = reactor;
}

static void echo_round_trip(const char *iface_desc, const char *family_name) {
  dproto server, client;
  init_proto(&server);
  init_proto(&client);
  server.echo = 1;
  ct_failure *err = NULL;
  char desc[64];
  snprintf(desc, sizeof(desc), "udp:0:interface=%s", iface_desc);
  ct_udp_port *sp = ct_listen_udp(reactor, desc, &server.base, &err);
  if (sp == NULL && err != NULL && err->code == CT_EADDRNOTAVAIL) {
    ct_failure_free(err);
    cr_skip_test("%s loopback is not available here", family_name);
  }
  cr_assert_not_null(sp, "%s", err ? err->message : "?");
  cr_assert_eq(server.started, 1);
  cr_assert_eq(ct_udp_get_host(sp, &client.target), 0);
  cr_assert_gt(ct_address_port(&client.target), 0);
  client.greeting = "ping";
  client.stop_reactor_on_receive = 1;
  ct_udp_port *cp = ct_listen_udp(reactor, desc, &client.base, &err);
  cr_assert_not_null(cp);
  run();
  cr_assert_eq(server.received, 1);
  cr_assert_eq(client.received, 1);
  cr_assert_eq(client.last_len, 4);
  cr_assert_eq(memcmp(client.last, "ping", 4), 0);
  cr_assert(ct_address_equal(&client.last_from, &client.target),
            "the echo comes from the server's address");
  ct_address chost;
  cr_assert_eq(ct_udp_get_host(cp, &chost), 0);
  cr_assert(ct_address_equal(&server.last_from, &chost));
  stop_port(cp, &client);
  stop_port(sp, &server);
}

TestSuite(udp_port, .init = setup, .fini = teardown);

Test(udp_port, echo_round_trip_ipv4) {
  echo_round_trip("127.0.0.1", "IPv4");
}

Test(udp_port, echo_round_trip_ipv6) {
  echo_round_trip("\\:\\:1", "IPv6");
}

Test(udp_port, listen_by_port_and_interface) {
  dproto d;
  init_proto(&d);
  ct_udp_port *u = ct_listen_udp_port(reactor, 0, "::1", &d.base, NULL);
  if (u == NULL) {
    u = ct_listen_udp_port(reactor, 0, "127.0.0.1", &d.base, NULL);
  }
  cr_assert_not_null(u);
  ct_address a;
  cr_assert_eq(ct_udp_get_host(u, &a), 0);
  cr_assert_gt(ct_address_port(&a), 0);
  cr_assert_eq(ct_udp_max_packet_size(u), 8192);
  cr_assert_geq(ct_udp_fileno(u), 0);
  stop_port(u, &d);
}

Test(udp_port, connected_mode_and_icmp_refused) {
  /* A port number nobody listens on: bind one, note it, close it. */
  dproto dead, client;
  init_proto(&dead);
  init_proto(&client);
  ct_udp_port *du = listen_local(&dead);
  ct_address gone;
  cr_assert_eq(ct_udp_get_host(du, &gone), 0);
  stop_port(du, &dead);

  ct_udp_port *cp = listen_local(&client);
  cr_assert_eq(ct_udp_write(cp, "x", 1), CT_ENOTCONN);
  cr_assert_eq(ct_udp_is_connected(cp), 0);
  ct_address peer;
  cr_assert_eq(ct_udp_get_peer(cp, &peer), CT_ENOTCONN);
  cr_assert_eq(ct_udp_connect(cp, &gone), 0);
  cr_assert_eq(ct_udp_is_connected(cp), 1);
  cr_assert_eq(ct_udp_get_peer(cp, &peer), 0);
  cr_assert(ct_address_equal(&peer, &gone));
  ct_address other;
  ct_address_from_ip(&other, "127.0.0.1", 9);
  cr_assert_eq(ct_udp_write_to(cp, "x", 1, &other), CT_EINVAL,
               "connected mode talks to its peer only");
  cr_assert_eq(ct_udp_write(cp, "hello?", 6), 0);
  run();
  cr_assert_eq(client.refused, 1,
               "ICMP port unreachable -> connection_refused");
  stop_port(cp, &client);
}

Test(udp_port, connected_mode_round_trip) {
  dproto server, client;
  init_proto(&server);
  init_proto(&client);
  server.echo = 1;
  ct_udp_port *sp = listen_local(&server);
  ct_udp_port *cp = listen_local(&client);
  ct_address sa;
  ct_udp_get_host(sp, &sa);
  cr_assert_eq(ct_udp_connect(cp, &sa), 0);
  client.stop_reactor_on_receive = 1;
  cr_assert_eq(ct_udp_write(cp, "abc", 3), 0);
  run();
  cr_assert_eq(client.received, 1);
  cr_assert_eq(memcmp(client.last, "abc", 3), 0);
  stop_port(cp, &client);
  stop_port(sp, &server);
}

Test(udp_port, broadcast_flag) {
  dproto d;
  init_proto(&d);
  ct_udp_port *u = listen_local(&d);
  cr_assert_eq(ct_udp_get_broadcast(u), 0);
  cr_assert_eq(ct_udp_set_broadcast(u, 1), 0);
  cr_assert_eq(ct_udp_get_broadcast(u), 1);
  cr_assert_eq(ct_udp_set_broadcast(u, 0), 0);
  cr_assert_eq(ct_udp_get_broadcast(u), 0);
  stop_port(u, &d);
}

Test(udp_port, multicast_membership_on_loopback) {
  dproto d;
  init_proto(&d);
  ct_udp_port *u = listen_local(&d);
  cr_assert_eq(ct_udp_join_group(u, "10.0.0.1", "127.0.0.1"), CT_EINVAL,
               "not a multicast address");
  cr_assert_eq(ct_udp_join_group(u, "ff02::1", NULL), CT_EINVAL,
               "wrong family");
  cr_assert_eq(ct_udp_join_group(u, "239.1.2.3", "nonsense"), CT_EINVAL);
  int rc = ct_udp_join_group(u, "239.1.2.3", "127.0.0.1");
  if (rc == -ENODEV || rc == CT_EADDRNOTAVAIL || rc == CT_EPERM) {
    stop_port(u, &d);
    cr_skip_test("multicast join on loopback refused here: %s",
                 ct_strerror(rc));
  }
  cr_assert_eq(rc, 0, "join: %s", ct_strerror(rc));
  cr_assert_eq(ct_udp_set_loopback_mode(u, 1), 0);
  cr_assert_eq(ct_udp_set_ttl(u, 1), 0);
  cr_assert_eq(ct_udp_set_ttl(u, 256), CT_EINVAL);
  cr_assert_eq(ct_udp_leave_group(u, "239.1.2.3", "127.0.0.1"), 0);
  cr_assert_lt(ct_udp_leave_group(u, "239.1.2.3", "127.0.0.1"), 0,
               "not a member any more");
  stop_port(u, &d);
}

Test(udp_port, long_datagrams_are_truncated_to_max_packet_size) {
  dproto server, client;
  init_proto(&server);
  init_proto(&client);
  server.stop_reactor_on_receive = 1;
  ct_udp_port *sp =
      ct_listen_udp(reactor, "udp:0:interface=127.0.0.1:maxPacketSize=16",
                    &server.base, NULL);
  cr_assert_not_null(sp);
  cr_assert_eq(ct_udp_max_packet_size(sp), 16);
  ct_udp_get_host(sp, &client.target);
  client.greeting = "0123456789abcdefghijklmnopqrstuvwxyz";
  ct_udp_port *cp = listen_local(&client);
  run();
  cr_assert_eq(server.received, 1);
  cr_assert_eq(server.last_len, 16);
  cr_assert_eq(memcmp(server.last, "0123456789abcdef", 16), 0);
  stop_port(cp, &client);
  stop_port(sp, &server);
}

Test(udp_port, stop_from_inside_datagram_received) {
  dproto server, client;
  init_proto(&server);
  init_proto(&client);
  server.stop_port_on_receive = 1;
  server.stop_reactor_on_receive = 1;
  ct_udp_port *sp = listen_local(&server);
  ct_udp_get_host(sp, &client.target);
  client.greeting = "bye";
  ct_udp_port *cp = listen_local(&client);
  run();
  cr_assert_eq(server.received, 1);
  cr_assert_eq(server.stopped, 1, "stop_protocol ran after the callback");
  cr_assert_not_null(server.stop_d);
  cr_assert(ct_deferred_called(server.stop_d));
  ct_deferred_unref(server.stop_d);
  cr_assert_null(server.base.port);
  stop_port(cp, &client);
}

Test(udp_port, write_errors) {
  dproto d;
  init_proto(&d);
  ct_udp_port *u = listen_local(&d);
  ct_address v6;
  ct_address_from_ip(&v6, "::1", 9);
  cr_assert_eq(ct_udp_write_to(u, "x", 1, &v6), CT_EINVAL, "family mismatch");
  cr_assert_eq(ct_udp_write_to(u, "x", 1, NULL), CT_EINVAL);
  cr_assert_eq(ct_udp_write_to(u, NULL, 1, &v6), CT_EINVAL);
  cr_assert_eq(ct_udp_connect(u, &v6), CT_EINVAL);
  static char huge[70000];
  ct_address self;
  ct_udp_get_host(u, &self);
  cr_assert_eq(ct_udp_write_to(u, huge, sizeof(huge), &self), CT_EMSGSIZE);
  stop_port(u, &d);
  ct_deferred *again = ct_udp_port_stop(NULL);
  cr_assert(ct_deferred_is_failed(again));
  ct_result res;
  cr_assert_eq(ct_deferred_take_result(again, &res), 0);
  cr_assert_eq(res.failure->code, CT_EINVAL);
  ct_failure_free(res.failure);
  ct_deferred_unref(again);
}

Test(udp_port, bad_endpoints) {
  dproto d;
  init_proto(&d);
  ct_failure *err = NULL;
  cr_assert_null(ct_listen_udp(reactor, "tcp:0", &d.base, &err));
  cr_assert_eq(err->code, CT_EBADENDPOINT);
  cr_assert(strstr(err->message, "is a tcp endpoint") != NULL, "%s",
            err->message);
  ct_failure_free(err);
  cr_assert_null(ct_listen_udp(reactor, "udp:abc", &d.base, &err));
  cr_assert_eq(err->code, CT_EBADENDPOINT);
  cr_assert(strstr(err->message, "port 'abc'") != NULL);
  ct_failure_free(err);
  cr_assert_null(ct_listen_udp(reactor, "udp:0:backlog=5", &d.base, &err));
  cr_assert_eq(err->code, CT_EBADENDPOINT);
  ct_failure_free(err);
  cr_assert_null(ct_listen_udp(reactor, NULL, &d.base, &err));
  cr_assert_eq(err->code, CT_EINVAL);
  ct_failure_free(err);
  cr_assert_null(ct_listen_udp_port(reactor, 70000, NULL, &d.base, &err));
  cr_assert_eq(err->code, CT_EBADENDPOINT);
  ct_failure_free(err);
  cr_assert_null(ct_listen_udp_port(reactor, 0, "localhost", &d.base, &err));
  cr_assert_eq(err->code, CT_EBADENDPOINT);
  ct_failure_free(err);
  cr_assert_eq(d.started, 0);

  /* The same port twice: address in use, and the failure names it. */
  ct_udp_port *u = listen_local(&d);
  ct_address a;
  ct_udp_get_host(u, &a);
  dproto d2;
  init_proto(&d2);
  cr_assert_null(ct_listen_udp_port(reactor, ct_address_port(&a), "127.0.0.1",
                                    &d2.base, &err));
  cr_assert_eq(err->code, CT_EADDRINUSE);
  cr_assert(strstr(err->message, "bind") != NULL);
  ct_failure_free(err);
  cr_assert_eq(d2.started, 0);
  stop_port(u, &d);
}
