/*
 * ct-echo-server / ct-echo: the echo protocol over any stream endpoint.
 *
 *   ct-echo-server --listen tcp:8000:interface=127.0.0.1 [--nodelay]
 *   ct-echo --connect tcp:host=127.0.0.1:port=8000 [--count N] [--size S]
 *   ct-echo --connect unix:path=/tmp/echo.sock --message hello
 *
 * The server prints "listening on ADDRESS" and then "ready" on stdout once
 * it accepts connections (scripts wait for "ready"), and stops cleanly on
 * SIGINT/SIGTERM.  The client sends N messages of S bytes one at a time,
 * checks every echo, and prints a summary; with --message it prints the
 * echo of the text instead.  Exit status 0 on success, 1 on failure, 2 on
 * bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctwist/ctwist.h"
#include "ctwist/transport.h"

/* ------------------------------------------------------ the echo server */

/* The whole echo protocol: write back what arrives.  Back-pressure makes
 * it safe against clients that never read: reading pauses while more than
 * the high watermark waits to be sent. */
static void echo_data_received(ct_protocol *p, const char *data, size_t len) {
  ct_transport_write(p->transport, data, len);
}

static int nodelay;

/* Live server connections, so that a shutdown can close them cleanly
 * (flushing what they still have to send) before the reactor goes. */
typedef struct echo_conn {
  ct_protocol base;
  struct echo_conn *prev, *next;
} echo_conn;

static echo_conn live; /* list head */
static ct_phase_hold *drain_hold;

static void echo_connection_made(ct_protocol *p, ct_transport *t) {
  echo_conn *c = (echo_conn *)p;
  c->next = live.next;
  c->prev = &live;
  live.next->prev = c;
  live.next = c;
  if (nodelay)
    ct_transport_set_tcp_nodelay(t, 1);
}

static void echo_connection_lost(ct_protocol *p, const ct_failure *reason) {
  (void)reason;
  echo_conn *c = (echo_conn *)p;
  c->prev->next = c->next;
  c->next->prev = c->prev;
  if (live.next == &live && drain_hold != NULL) {
    ct_phase_hold_release(drain_hold);
    drain_hold = NULL;
  }
}

static const ct_protocol_ops echo_ops = {
    .name = "echo",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = echo_connection_made,
    .data_received = echo_data_received,
    .connection_lost = echo_connection_lost,
};

static ct_listening_port *server_port;

static void stop_listening(void *arg) {
  ct_reactor *r = arg;
  if (server_port != NULL) {
    ct_deferred_unref(ct_listening_port_stop(server_port));
    server_port = NULL;
  }
  if (r == NULL || live.next == &live)
    return;
  /* Close every connection (pending output is flushed first) and keep the
   * shutdown waiting until the last one is gone. */
  drain_hold = ct_reactor_hold_phase(r);
  for (echo_conn *c = live.next; c != &live; c = c->next)
    ct_transport_lose_connection(c->base.transport);
}

static int run_server(const char *endpoint) {
  ct_reactor *r = ct_reactor_new();
  if (r == NULL) {
    fprintf(stderr, "ct-echo-server: cannot create the reactor\n");
    return 1;
  }
  live.next = live.prev = &live;
  static ct_factory factory = CT_FACTORY_INIT(&echo_ops, sizeof(echo_conn));
  ct_failure *err = NULL;
  server_port = ct_listen(r, endpoint, &factory, &err);
  if (server_port == NULL) {
    fprintf(stderr, "ct-echo-server: ");
    ct_failure_print(err, stderr);
    ct_failure_free(err);
    ct_reactor_free(r);
    return 1;
  }
  ct_address a;
  char buf[CT_ADDRESS_STRLEN];
  ct_listening_port_address(server_port, &a);
  ct_address_format(&a, buf, sizeof buf);
  printf("listening on %s\nready\n", buf);
  fflush(stdout);
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, stop_listening, r);
  ct_reactor_run(r);
  stop_listening(NULL);
  ct_reactor_free(r);
  return 0;
}

/* ------------------------------------------------------ the echo client */

typedef struct client {
  ct_protocol base;
  ct_reactor *reactor;
  char *msg;        /* the message being echoed */
  size_t size;      /* its length */
  size_t got;       /* bytes of its echo received */
  long count, sent; /* messages to send, messages sent */
  int print;        /* --message: print the echo */
  int failed;
  double start, end;
} client;

static client *the_client;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void send_next(client *c) {
  if (c->sent == c->count) {
    c->end = now();
    ct_transport_lose_connection(c->base.transport);
    return;
  }
  if (!c->print)
    for (size_t i = 0; i < c->size; i++)
      c->msg[i] = (char)('a' + (c->sent + (long)i) % 26);
  c->got = 0;
  c->sent++;
  ct_transport_write(c->base.transport, c->msg, c->size);
}

static void client_made(ct_protocol *p, ct_transport *t) {
  (void)t;
  client *c = (client *)p;
  c->start = now();
  send_next(c);
}

static void client_data(ct_protocol *p, const char *data, size_t len) {
  client *c = (client *)p;
  if (c->got + len > c->size || memcmp(c->msg + c->got, data, len) != 0) {
    fprintf(stderr, "ct-echo: the echo differs from what was sent\n");
    c->failed = 1;
    ct_transport_abort(p->transport);
    return;
  }
  if (c->print)
    fwrite(data, 1, len, stdout);
  c->got += len;
  if (c->got == c->size)
    send_next(c);
}

static void client_lost(ct_protocol *p, const ct_failure *reason) {
  client *c = (client *)p;
  if (reason->code != CT_ECONNDONE || c->sent < c->count ||
      (c->count > 0 && c->got < c->size)) {
    if (!c->failed) {
      fprintf(stderr, "ct-echo: connection lost early: ");
      ct_failure_print(reason, stderr);
    }
    c->failed = 1;
  }
  ct_reactor_stop(c->reactor);
}

static void client_free(ct_protocol *p) {
  (void)p; /* static, see main */
}

static const ct_protocol_ops client_ops = {
    .name = "echo-client",
    .connection_made = client_made,
    .data_received = client_data,
    .connection_lost = client_lost,
    .free = client_free,
};

static ct_protocol *build_client(ct_factory *f, const ct_address *peer) {
  (void)f;
  (void)peer;
  return &the_client->base;
}

static void connect_failed(ct_client_factory *cf, const ct_failure *reason) {
  client *c = cf->base.user;
  fprintf(stderr, "ct-echo: ");
  ct_failure_print(reason, stderr);
  c->failed = 1;
  ct_reactor_stop(c->reactor);
}

static int run_client(const char *endpoint, long count, size_t size,
                      const char *message) {
  ct_reactor *r = ct_reactor_new();
  if (r == NULL)
    return 1;
  static client c;
  memset(&c, 0, sizeof c);
  ct_protocol_init(&c.base, &client_ops);
  c.reactor = r;
  if (message != NULL) {
    c.size = strlen(message);
    c.count = 1;
    c.print = 1;
    c.msg = strdup(message);
  } else {
    c.size = size;
    c.count = count;
    c.msg = malloc(size > 0 ? size : 1);
  }
  if (c.msg == NULL)
    return 1;
  the_client = &c;
  static const ct_factory_ops fops = {.name = "echo-client",
                                      .build_protocol = build_client};
  ct_client_factory cf;
  memset(&cf, 0, sizeof cf);
  ct_factory_init(&cf.base, &fops, NULL, 0, &c);
  cf.connection_failed = connect_failed;
  ct_deferred *d = ct_connect(r, endpoint, &cf);
  if (d == NULL)
    return 1;
  ct_reactor_run(r);
  /* Consume a failure the errback path may still hold. */
  ct_result res;
  if (ct_deferred_take_result(d, &res) == 0) {
    ct_value_free(res.value);
    ct_failure_free(res.failure);
  }
  ct_deferred_unref(d);
  ct_reactor_free(r);
  if (message != NULL && !c.failed)
    printf("\n");
  if (!c.failed && message == NULL) {
    double t = c.end - c.start;
    printf("echoed %ld messages of %zu bytes in %.3f s (%.0f msg/s)\n", c.sent,
           c.size, t, t > 0 ? (double)c.sent / t : 0.0);
  }
  free(c.msg);
  return c.failed ? 1 : 0;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *out) {
  fprintf(out, "usage: ct-echo-server --listen ENDPOINT [--nodelay]\n"
               "       ct-echo --connect ENDPOINT [--count N] [--size BYTES] "
               "[--message TEXT]\n"
               "  ENDPOINT: tcp:PORT[:interface=ADDR], unix:PATH (servers),\n"
               "            tcp:host=H:port=P, unix:path=PATH (clients)\n");
}

int main(int argc, char **argv) {
  const char *listen_ep = NULL, *connect_ep = NULL, *message = NULL;
  long count = 1;
  long size = 64;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--nodelay") == 0) {
      nodelay = 1;
    } else if (v == NULL) {
      usage(stderr);
      return 2;
    } else if (strcmp(a, "--listen") == 0) {
      listen_ep = v, i++;
    } else if (strcmp(a, "--connect") == 0) {
      connect_ep = v, i++;
    } else if (strcmp(a, "--message") == 0) {
      message = v, i++;
    } else if (strcmp(a, "--count") == 0) {
      count = strtol(v, NULL, 10), i++;
    } else if (strcmp(a, "--size") == 0) {
      size = strtol(v, NULL, 10), i++;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if ((listen_ep != NULL) == (connect_ep != NULL) || count < 0 || size < 1 ||
      size > 64L * 1024 * 1024 || (message != NULL && message[0] == '\0')) {
    usage(stderr);
    return 2;
  }
  if (listen_ep != NULL)
    return run_server(listen_ep);
  return run_client(connect_ep, count, (size_t)size, message);
}
