/*
 * basic_peer: the ctwist side of the framing interop tests
 * (test_basic_*.py), as a server or a client for one framing.
 *
 *   basic_peer server FRAMING MAX OUT
 *     Listen on 127.0.0.1, port 0; print "PORT <n>" on stdout; serve ONE
 *     connection: echo every message back and record it in OUT; exit when
 *     that connection ends (status 0 on a clean close).
 *   basic_peer client FRAMING MAX PORT IN OUT
 *     Connect to 127.0.0.1:PORT, send every message of IN, record every
 *     message received in OUT; close once as many came back as were sent.
 *
 * FRAMING is line, netstring or int32; MAX the receiver's maximum length.
 * IN and OUT hold messages as <u32 big-endian length><bytes>.  A watchdog
 * stops the peer after 60 s (status 2); a failure of the receiver (bad
 * input) is printed and gives status 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/basic.h"
#include "ctwist/log.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

enum { LINE, NETSTRING, INT32 };

typedef struct peer {
  ct_reactor *r;
  int framing, client;
  FILE *out;
  char *in; /* the messages to send (client) */
  size_t in_len;
  size_t sent, received;
  int status; /* exit status */
  int done;
} peer;

static peer P; /* one per process: this is a test program */

static void record(const char *s, size_t len) {
  unsigned char h[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                        (unsigned char)(len >> 8), (unsigned char)len};
  if (fwrite(h, 1, 4, P.out) != 4 || fwrite(s, 1, len, P.out) != len) {
    perror("write output");
    exit(1);
  }
}

static int send_msg(ct_protocol *p, const char *s, size_t len) {
  switch (P.framing) {
  case LINE:
    return ct_line_receiver_send_line((ct_line_receiver *)p, s, len);
  case NETSTRING:
    return ct_netstring_receiver_send_string((ct_netstring_receiver *)p, s,
                                             len);
  default:
    return ct_intn_receiver_send_string((ct_intn_receiver *)p, s, len);
  }
}

static void got(ct_protocol *p, const char *s, size_t len) {
  record(s, len);
  P.received++;
  if (!P.client) {
    int rc = send_msg(p, s, len);
    if (rc != 0)
      fprintf(stderr, "basic_peer: echo failed: %s\n", ct_strerror(rc));
  } else if (P.received == P.sent) {
    ct_transport_lose_connection(p->transport);
  }
}

static void made(ct_protocol *p) {
  if (!P.client)
    return;
  /* Send everything at once: the transport buffers what the kernel does
   * not take yet. */
  size_t off = 0;
  while (off + 4 <= P.in_len) {
    const unsigned char *u = (const unsigned char *)P.in + off;
    size_t len = ((size_t)u[0] << 24) | ((size_t)u[1] << 16) |
                 ((size_t)u[2] << 8) | u[3];
    if (off + 4 + len > P.in_len)
      break;
    int rc = send_msg(p, P.in + off + 4, len);
    if (rc != 0) {
      fprintf(stderr, "basic_peer: send failed: %s\n", ct_strerror(rc));
      P.status = 1;
    }
    P.sent++;
    off += 4 + len;
  }
  if (P.sent == 0)
    ct_transport_lose_connection(p->transport);
}

static void lost(ct_protocol *p, const ct_failure *reason) {
  (void)p;
  if (reason->code != CT_ECONNDONE) {
    fprintf(stderr, "basic_peer: connection lost: %s (%s)\n",
            reason->message ? reason->message : "", ct_err_name(reason->code));
    /* A peer that closes right after its last echo may reset. */
    if (!(P.client && P.received == P.sent && reason->code == CT_ECONNRESET))
      P.status = 1;
  }
  P.done = 1;
  ct_reactor_stop(P.r);
}

/* Each receiver's callbacks forward to made / got / lost: PRE_made,
 * PRE_RECV and PRE_lost for receiver type TYPE. */
#define PEER_ADAPTERS(PRE, TYPE, RECV)                                         \
  static void PRE##_made(TYPE *x) {                                            \
    made(&x->base);                                                            \
  }                                                                            \
  static void PRE##_##RECV(TYPE *x, const char *s, size_t n) {                 \
    got(&x->base, s, n);                                                       \
  }                                                                            \
  static void PRE##_lost(TYPE *x, const ct_failure *f) {                       \
    lost(&x->base, f);                                                         \
  }

PEER_ADAPTERS(l, ct_line_receiver, line)
PEER_ADAPTERS(n, ct_netstring_receiver, string)
PEER_ADAPTERS(i, ct_intn_receiver, string)

/* Not const: the maximum length comes from the command line. */
static ct_line_receiver_ops line_ops = {
    CT_LINE_RECEIVER_BASE("interop-line",
                          CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER),
    .connection_made = l_made,
    .line_received = l_line,
    .connection_lost = l_lost,
};
static ct_netstring_receiver_ops ns_ops = {
    CT_NETSTRING_RECEIVER_BASE("interop-netstring",
                               CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER),
    .connection_made = n_made,
    .string_received = n_string,
    .connection_lost = n_lost,
};
static ct_intn_receiver_ops int32_ops = {
    CT_INT32_RECEIVER_BASE("interop-int32",
                           CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER),
    .connection_made = i_made,
    .string_received = i_string,
    .connection_lost = i_lost,
};

static void watchdog(void *arg) {
  (void)arg;
  fprintf(stderr, "basic_peer: timed out (sent %zu, received %zu)\n", P.sent,
          P.received);
  P.status = 2;
  ct_reactor_stop(P.r);
}

static ct_step conn_ok(ct_value v, void *arg) {
  (void)v;
  (void)arg;
  return ct_pass(CT_NONE);
}

static ct_step conn_err(ct_failure *f, void *arg) {
  (void)arg;
  fprintf(stderr, "basic_peer: connect failed: %s\n",
          f->message ? f->message : ct_strerror(f->code));
  ct_failure_free(f);
  P.status = 1;
  ct_reactor_stop(P.r);
  return ct_pass(CT_NONE);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc(n > 0 ? (size_t)n : 1);
  if (buf == NULL || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
    perror(path);
    exit(1);
  }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static int usage(void) {
  fprintf(stderr, "usage: basic_peer server line|netstring|int32 MAX OUT\n"
                  "       basic_peer client line|netstring|int32 MAX PORT "
                  "IN OUT\n");
  return 64;
}

int main(int argc, char **argv) {
  if (argc < 5)
    return usage();
  P.client = strcmp(argv[1], "client") == 0;
  if (!P.client && strcmp(argv[1], "server") != 0)
    return usage();
  if (P.client ? argc != 7 : argc != 5)
    return usage();
  const char *fr = argv[2];
  P.framing = strcmp(fr, "line") == 0        ? LINE
              : strcmp(fr, "netstring") == 0 ? NETSTRING
              : strcmp(fr, "int32") == 0     ? INT32
                                             : -1;
  if (P.framing < 0)
    return usage();
  size_t max = (size_t)strtoul(argv[3], NULL, 10);
  line_ops.max_length = ns_ops.max_length = int32_ops.max_length = max;
  const ct_protocol_ops *ops = P.framing == LINE        ? &line_ops.base
                               : P.framing == NETSTRING ? &ns_ops.base
                                                        : &int32_ops.base;
  size_t size = P.framing == LINE        ? sizeof(ct_line_receiver)
                : P.framing == NETSTRING ? sizeof(ct_netstring_receiver)
                                         : sizeof(ct_intn_receiver);
  const char *out = argv[P.client ? 6 : 4];
  P.out = fopen(out, "wb");
  if (P.out == NULL) {
    perror(out);
    return 1;
  }
  P.r = ct_reactor_new();
  if (P.r == NULL)
    return 1;
  ct_delayed_call *wd =
      ct_delayed_call_ref(ct_call_later(P.r, 60.0, watchdog, NULL));
  ct_listening_port *port = NULL;
  ct_client_factory cf;
  memset(&cf, 0, sizeof cf);
  ct_factory sf = CT_FACTORY_INIT(ops, size);
  if (P.client) {
    P.in = slurp(argv[5], &P.in_len);
    ct_factory_init(&cf.base, NULL, ops, size, NULL);
    char ep[128];
    snprintf(ep, sizeof ep, "tcp:host=127.0.0.1:port=%s", argv[4]);
    ct_deferred *d = ct_connect(P.r, ep, &cf);
    if (d == NULL)
      return 1;
    ct_deferred_add_callbacks(d, conn_ok, conn_err, NULL);
    ct_deferred_unref(d);
  } else {
    ct_failure *err = NULL;
    port = ct_listen(P.r, "tcp:0:interface=127.0.0.1", &sf, &err);
    if (port == NULL) {
      fprintf(stderr, "basic_peer: listen: %s\n", err->message);
      ct_failure_free(err);
      return 1;
    }
    ct_address a;
    ct_listening_port_address(port, &a);
    printf("PORT %d\n", ct_address_port(&a));
    fflush(stdout);
  }
  ct_reactor_run(P.r);
  ct_delayed_call_cancel(wd); /* an error code if it fired: fine */
  ct_delayed_call_unref(wd);
  if (port != NULL) {
    ct_deferred *d = ct_listening_port_stop(port);
    ct_deferred_unref(d);
  }
  /* Let closes finish before freeing. */
  for (int i = 0; i < 10; i++)
    ct_reactor_iterate(P.r);
  ct_reactor_free(P.r);
  if (fclose(P.out) != 0) {
    perror(out);
    return 1;
  }
  free(P.in);
  fprintf(stderr, "basic_peer %s %s: sent %zu, received %zu, status %d\n",
          argv[1], fr, P.sent, P.received, P.status);
  return P.status;
}
