/* Hostile peers of the message protocol, on the in-memory transports and a
 * fake clock: a protocol error still delivers the replies owed, then an
 * error frame, then the close; a peer that does not read is aborted; the
 * frame-completion deadline drops a trickling peer and spares a steady
 * one; a declared content length reserves no memory up front, and large
 * frame buffers go back to the system. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/message.h"
#include "ctwist/policies.h"
#include "ctwist/testing.h"
#include "tu_message.h"

/* The frames written to the peer, decoded. */
typedef struct out_frames {
  int n;
  char type[4][32];
  char code[4][32];
  char message[4][512];
} out_frames;

static int collect(void *arg, const ct_msg_header *h, const char *c, size_t n) {
  (void)c;
  (void)n;
  out_frames *o = arg;
  const char *s;
  if (o->n < 4) {
    if (ct_msg_header_get_str(h, "type", &s) == 0)
      snprintf(o->type[o->n], sizeof o->type[0], "%s", s);
    if (ct_msg_header_get_str(h, "code", &s) == 0)
      snprintf(o->code[o->n], sizeof o->code[0], "%s", s);
    if (ct_msg_header_get_str(h, "message", &s) == 0)
      snprintf(o->message[o->n], sizeof o->message[0], "%s", s);
  }
  o->n++;
  return 0;
}

static void decode_output(ct_string_transport *st, out_frames *o) {
  memset(o, 0, sizeof *o);
  size_t len;
  const char *v = ct_string_transport_value(st, &len);
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, collect, o);
  cr_assert_eq(ct_msg_decoder_feed(d, v, len, NULL), 0, "output decodes");
  cr_assert_eq(ct_msg_decoder_buffered(d), 0, "no partial frame written");
  ct_msg_decoder_free(d);
}

static void connect_server(mem_server *m) {
  ct_protocol *p = ct_factory_build(ct_msg_server_factory(m->s), NULL);
  cr_assert_not_null(p);
  cr_assert_eq(ct_string_transport_connect(m->st, p), 0);
}

static ct_string_transport_stats stats_of(ct_string_transport *st) {
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  return s;
}

Test(message_hostile, valid_frame_then_junk_gets_reply_error_frame_close) {
  mem_server m;
  mem_server_init(&m, 1, NULL);
  connect_server(&m);
  char *send = NULL;
  size_t n = 0;
  add_frame(&send, &n, "ping", "hi", 2);
  add_frame(&send, &n, "ping2", NULL, 0);
  send = realloc(send, n + 7);
  memcpy(send + n, "\0\0\0\3[1]", 7); /* junk in the same read */
  cr_assert_eq(ct_string_transport_feed(m.st, send, n + 7), 0);
  free(send);

  out_frames o;
  decode_output(m.st, &o);
  cr_assert_eq(o.n, 3, "two replies and the error frame, got %d", o.n);
  cr_assert_str_eq(o.type[0], "ping");
  cr_assert_str_eq(o.type[1], "ping2");
  cr_assert_str_eq(o.type[2], "error");
  cr_assert_str_eq(o.code[2], "EPROTO");
  cr_assert(strstr(o.message[2], "not a JSON object") != NULL, "%s",
            o.message[2]);
  /* Then a close that flushes: lose_connection, not abort. */
  ct_string_transport_stats s = stats_of(m.st);
  cr_assert_eq(s.lose_connection_calls, 1);
  cr_assert_eq(s.abort_calls, 0);
  ct_string_transport_step(m.st);
  cr_assert_eq(m.sv.closes, 1);
  cr_assert_eq(m.sv.last_code, CT_EPROTO);
  mem_server_free(&m);
}

/* An echo server whose peer reads nothing: watermarks 64/16 bytes, so
 * the echo of the 200-byte frame that *send (n bytes) starts with puts
 * the output above the high watermark. */
static void slow_reader_server(mem_server *m, char **send, size_t *n) {
  ct_msg_options o = {.write_high_water = 64, .write_low_water = 16};
  mem_server_init(m, 1, &o);
  ct_string_transport_set_backpressure(m->st, 1);
  connect_server(m);
  char body[200];
  memset(body, 'b', sizeof body);
  *send = NULL;
  *n = 0;
  add_frame(send, n, "big", body, sizeof body);
}

Test(message_hostile, peer_not_reading_is_aborted_after_an_error) {
  mem_server m;
  char *send;
  size_t n;
  slow_reader_server(&m, &send, &n);
  send = realloc(send, n + 6);
  memcpy(send + n, "\0\0\0\2[]", 6);
  cr_assert_eq(ct_string_transport_feed(m.st, send, n + 6), 0);
  free(send);
  ct_string_transport_stats s = stats_of(m.st);
  cr_assert_eq(s.abort_calls, 1, "output above the high watermark: abort");
  ct_string_transport_step(m.st);
  cr_assert_eq(m.sv.last_code, CT_EPROTO);
  mem_server_free(&m);
}

Test(message_hostile, error_close_is_bounded_when_the_flush_never_ends) {
  mem_server m;
  mem_server_init(&m, 0, NULL);
  connect_server(&m);
  cr_assert_eq(ct_string_transport_feed(m.st, "\0\0\0\2[]", 6), 0);
  cr_assert_eq(stats_of(m.st).lose_connection_calls, 1);
  /* The string transport never completes the close by itself (no step):
   * like a peer that never reads.  The close deadline aborts it. */
  ct_clock_advance(m.clk, CT_ERROR_CLOSE_TIMEOUT - 0.5);
  cr_assert_eq(stats_of(m.st).abort_calls, 0);
  ct_clock_advance(m.clk, 1.0);
  cr_assert_eq(stats_of(m.st).abort_calls, 1);
  mem_server_free(&m);
}

/* A header announcing 64 bytes, of which only the first arrives. */
static const char trickle[] =
    "\0\0\0\x40{\"type\":\"slow\",\"pad\":\"xxxxxxxxxx";

/* Send one byte every `every` seconds until `until`; returns the time the
 * connection started closing, or -1. */
static double trickle_until(mem_server *m, double every, double until) {
  for (size_t i = 0; i < sizeof trickle - 1; i++) {
    if (stats_of(m->st).disconnecting)
      return ct_clock_seconds(m->clk);
    if (ct_clock_seconds(m->clk) >= until)
      return -1;
    cr_assert_eq(ct_string_transport_feed(m->st, trickle + i, 1), 0);
    ct_clock_advance(m->clk, every);
  }
  return stats_of(m->st).disconnecting ? ct_clock_seconds(m->clk) : -1;
}

Test(message_hostile, trickling_peer_is_dropped_at_the_default_deadline) {
  mem_server m;
  mem_server_init(&m, 0, NULL);
  connect_server(&m);
  double at = trickle_until(&m, 3.0, 40.0);
  /* First byte at t=0, deadline 20 s (+2 ms per later byte): closing on
   * the first look after it, at t=21. */
  cr_assert_eq(at, 21.0, "closed at %g", at);
  out_frames o;
  decode_output(m.st, &o);
  cr_assert_eq(o.n, 1);
  cr_assert_str_eq(o.code[0], "ETIMEDOUT");
  ct_string_transport_step(m.st);
  cr_assert_eq(m.sv.closes, 1);
  cr_assert_eq(m.sv.last_code, CT_ETIMEDOUT);
  cr_assert(strstr(m.sv.last_msg, "not completed within") != NULL, "%s",
            m.sv.last_msg);
  mem_server_free(&m);
}

Test(message_hostile, steady_peer_is_not_dropped) {
  mem_server m;
  mem_server_init(&m, 0, NULL);
  connect_server(&m);
  /* 60 KB of content at 1000 bytes/s: a minute for one frame, well above
   * the 500 B/s minimum rate. */
  static char body[60000];
  memset(body, 'c', sizeof body);
  char *send = NULL;
  size_t n = 0;
  for (int k = 0; k < 2; k++)
    add_frame(&send, &n, "steady", body, sizeof body);
  for (size_t off = 0; off < n; off += 1000) {
    size_t c = n - off < 1000 ? n - off : 1000;
    cr_assert_eq(ct_string_transport_feed(m.st, send + off, c), 0,
                 "closed at t=%g", ct_clock_seconds(m.clk));
    ct_clock_advance(m.clk, 1.0);
  }
  free(send);
  cr_assert_eq(m.sv.messages, 2);
  cr_assert_eq(stats_of(m.st).disconnecting, 0);
  ct_clock_advance(m.clk, 3600); /* idle between frames is not a frame */
  cr_assert_eq(stats_of(m.st).disconnecting, 0);
  mem_server_free(&m);
}

Test(message_hostile, deadline_waits_while_we_stop_reading) {
  /* Our output is above the high watermark (the peer is slow to read our
   * replies), so we stop reading: its unfinished frame is not late. */
  mem_server m;
  char *send;
  size_t n;
  slow_reader_server(&m, &send, &n);
  size_t whole = n;
  add_frame(&send, &n, "next", NULL, 0);
  cr_assert_eq(ct_string_transport_feed(m.st, send, whole + 3), 0);
  cr_assert(ct_transport_reading_paused(ct_string_transport_transport(m.st)));
  ct_clock_advance(m.clk, 100.0);
  cr_assert_eq(stats_of(m.st).disconnecting, 0, "not dropped while paused");
  /* The peer reads; its frame completes once it may send again. */
  ct_string_transport_clear(m.st);
  cr_assert_eq(ct_string_transport_feed(m.st, send + whole + 3, n - whole - 3),
               0);
  cr_assert_eq(m.sv.messages, 2);
  cr_assert_eq(stats_of(m.st).disconnecting, 0);
  free(send);
  mem_server_free(&m);
}

Test(message_hostile, deadline_is_configurable_and_can_be_disabled) {
  ct_msg_options o = {.frame_deadline = {.timeout = 5, .min_rate = -1}};
  mem_server m;
  mem_server_init(&m, 0, &o);
  connect_server(&m);
  cr_assert_eq(trickle_until(&m, 1.0, 40.0), 5.0);
  mem_server_free(&m);

  o.frame_deadline.timeout = -1;
  mem_server_init(&m, 0, &o);
  connect_server(&m);
  cr_assert_eq(trickle_until(&m, 3.0, 1e9), -1, "never dropped");
  mem_server_free(&m);
}

Test(message_hostile, frame_deadline_policy_wraps_a_server_factory) {
  mem_server m;
  mem_server_init(&m, 0, NULL);
  ct_frame_deadline dl = {.timeout = 2, .min_rate = -1};
  ct_policy_factory *pf =
      ct_frame_deadline_factory_new(ct_msg_server_factory(m.s), &dl);
  cr_assert_not_null(pf);
  ct_protocol *p = ct_factory_build(ct_policy_factory_base(pf), NULL);
  cr_assert_not_null(p);
  cr_assert_eq(ct_string_transport_connect(m.st, p), 0);
  cr_assert_eq(trickle_until(&m, 1.0, 40.0), 2.0);
  ct_string_transport_step(m.st);
  cr_assert_eq(m.sv.last_code, CT_ETIMEDOUT);
  mem_server_free(&m);
  ct_policy_factory_free(pf);
}

/* ------------------------------------------------------------- memory */

/* A field of /proc/self/status in KiB. */
static long status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  cr_assert_not_null(f);
  char line[256];
  long v = -1;
  size_t fl = strlen(field);
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, field, fl) == 0 && line[fl] == ':')
      v = strtol(line + fl + 1, NULL, 10);
  fclose(f);
  cr_assert_geq(v, 0, "%s in /proc/self/status", field);
  return v;
}

/* The head of a frame declaring `clen` bytes of content. */
static void frame_head(const char *type, size_t clen, char **out, size_t *len) {
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "type", type);
  char *f;
  size_t fl;
  /* Encode with 1 byte of content, then fix the declared length. */
  cr_assert_eq(ct_msg_encode(h, "x", 1, &f, &fl), 0);
  ct_msg_header_free(h);
  char hdr[128];
  int hl = snprintf(hdr, sizeof hdr, "{\"type\":\"%s\",\"content-length\":%zu}",
                    type, clen);
  free(f);
  *out = malloc(4 + (size_t)hl);
  (*out)[0] = 0;
  (*out)[1] = 0;
  (*out)[2] = (char)(hl >> 8);
  (*out)[3] = (char)hl;
  memcpy(*out + 4, hdr, (size_t)hl);
  *len = 4 + (size_t)hl;
}

Test(message_hostile, declared_content_length_reserves_nothing_up_front) {
  enum { CONNS = 50 };
  const size_t big = 16u * 1024 * 1024;
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  side sv = {0};
  ct_msg_callbacks cb = cbs(&sv);
  ct_msg_server *s = ct_msg_server_new(r, &cb, NULL);
  ct_string_transport *st[CONNS];
  char *head;
  size_t hl;
  frame_head("big", big, &head, &hl);
  long vm0 = status_kib("VmSize");
  for (int i = 0; i < CONNS; i++) {
    st[i] = ct_string_transport_new(r);
    ct_protocol *p = ct_factory_build(ct_msg_server_factory(s), NULL);
    cr_assert_eq(ct_string_transport_connect(st[i], p), 0);
    /* The header and the first bytes of content, split so that the
     * content is gathered into the connection's buffer. */
    cr_assert_eq(ct_string_transport_feed(st[i], head, hl), 0);
    cr_assert_eq(ct_string_transport_feed(st[i], "0123456789", 10), 0);
  }
  long grew = status_kib("VmSize") - vm0;
  /* Before: 50 x 16 MiB = 800 MiB of address space reserved. */
  cr_assert_lt(grew, 64 * 1024, "VmSize grew by %ld KiB for %d connections",
               grew, CONNS);
  cr_assert_eq(ct_msg_server_count(s), CONNS);
  for (int i = 0; i < CONNS; i++)
    ct_string_transport_free(st[i]);
  free(head);
  ct_msg_server_free(s);
  ct_reactor_free(r);
  ct_clock_free(clk);
}

Test(message_hostile, rss_returns_to_baseline_after_large_frames) {
  const size_t big = 16u * 1024 * 1024;
  mem_server m;
  mem_server_init(&m, 0, NULL);
  connect_server(&m);
  char *head;
  size_t hl;
  frame_head("big", big, &head, &hl);
  static char chunk[64 * 1024];
  memset(chunk, 'z', sizeof chunk);
  long rss0 = status_kib("VmRSS");
  long peak = 0;
  for (int f = 0; f < 20; f++) {
    cr_assert_eq(ct_string_transport_feed(m.st, head, hl), 0);
    for (size_t off = 0; off < big; off += sizeof chunk) {
      if (off + sizeof chunk == big && f == 0)
        peak = status_kib("VmRSS") - rss0; /* all but the last chunk */
      cr_assert_eq(ct_string_transport_feed(m.st, chunk, sizeof chunk), 0);
    }
  }
  cr_assert_eq(m.sv.messages, 20);
  cr_assert_eq(m.sv.total_len, 20 * big);
  long after = status_kib("VmRSS") - rss0;
  /* The check can fail: the buffer really was resident while gathered. */
  cr_assert_gt(peak, 8 * 1024, "peak growth %ld KiB", peak);
  cr_assert_lt(after, 4 * 1024, "RSS still %ld KiB above the baseline", after);
  free(head);
  mem_server_free(&m);
}
