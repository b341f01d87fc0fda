/*
 * wire.c: Echo, Discard, Chargen, Daytime and QOTD (Twisted's
 * twisted.protocols.wire).
 *
 * The only interesting one is Chargen.  A naive version writes in a loop or
 * from a timer and lets the output buffer absorb the difference between its
 * speed and the peer's; against a peer that never reads, that is unbounded
 * memory.  Like Twisted's, ours is a pull producer: the transport calls
 * resume_producing only once its output buffer is empty, and each call
 * writes one chunk.  The pace is then exactly the consumer's.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "ctwist/transport.h"
#include "ctwist/wire.h"

/* ------------------------------------------------------------------ echo */

static void echo_data(ct_protocol *p, const char *data, size_t len) {
  ct_transport_write(p->transport, data, len);
}

const ct_protocol_ops ct_echo_protocol_ops = {
    .name = "echo",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .data_received = echo_data,
};

/* --------------------------------------------------------------- discard */

const ct_protocol_ops ct_discard_protocol_ops = {
    .name = "discard",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
};

/* --------------------------------------------------------------- chargen */

/* The chunk is a compile-time constant shared by every connection: the
 * noise repeated 58 times, so no connection copies or allocates it. */
#define N1 CT_CHARGEN_NOISE
#define N2 N1 N1
#define N8 N2 N2 N2 N2
#define N32 N8 N8 N8 N8
static const char chargen_chunk[] = N32 N8 N8 N8 N2; /* 58 x 71 bytes */
#undef N1
#undef N2
#undef N8
#undef N32

_Static_assert(sizeof chargen_chunk - 1 == CT_CHARGEN_CHUNK,
               "chargen chunk size");

static void chargen_resume(void *arg) {
  ct_protocol *p = arg;
  if (p->transport != NULL)
    ct_transport_write(p->transport, chargen_chunk, CT_CHARGEN_CHUNK);
}

static const ct_producer_ops chargen_producer = {
    .resume_producing = chargen_resume,
};

static void chargen_made(ct_protocol *p, ct_transport *t) {
  /* A pull producer: the transport asks for the first chunk on a later
   * loop turn and for each next one when the previous has drained. */
  ct_transport_register_producer(t, &chargen_producer, p, 0);
}

const ct_protocol_ops ct_chargen_protocol_ops = {
    .name = "chargen",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = chargen_made,
};

/* --------------------------------------------------------------- daytime */

size_t ct_daytime_format(double when, char *buf, size_t len) {
  if (buf == NULL || len < 25 || !isfinite(when))
    return 0;
  time_t t = (time_t)when;
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL)
    return 0;
  /* asctime's layout, "%a %b %e %H:%M:%S %Y" (day padded with a space). */
  size_t n = strftime(buf, len, "%a %b %e %H:%M:%S %Y", &tm);
  if (n == 0)
    buf[0] = '\0';
  return n;
}

static void daytime_made(ct_protocol *p, ct_transport *t) {
  (void)p;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts); /* display only */
  char buf[64];
  size_t n = ct_daytime_format((double)ts.tv_sec, buf, sizeof buf - 2);
  memcpy(buf + n, "\r\n", 2);
  ct_transport_write(t, buf, n + 2);
  ct_transport_lose_connection(t);
}

const ct_protocol_ops ct_daytime_protocol_ops = {
    .name = "daytime",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = daytime_made,
};

/* ------------------------------------------------------------------ qotd */

static void qotd_made(ct_protocol *p, ct_transport *t) {
  const char *quote = p->factory != NULL && p->factory->user != NULL
                          ? (const char *)p->factory->user
                          : CT_QOTD_DEFAULT_QUOTE;
  struct iovec iov[2] = {{(void *)(uintptr_t)quote, strlen(quote)},
                         {(void *)(uintptr_t) "\r\n", 2}};
  ct_transport_writev(t, iov, 2);
  ct_transport_lose_connection(t);
}

const ct_protocol_ops ct_qotd_protocol_ops = {
    .name = "qotd",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = qotd_made,
};

/* ------------------------------------------------------------- factories */

static const struct {
  const char *name;
  const ct_protocol_ops *ops;
} kinds[] = {
    [CT_WIRE_ECHO] = {"echo", &ct_echo_protocol_ops},
    [CT_WIRE_DISCARD] = {"discard", &ct_discard_protocol_ops},
    [CT_WIRE_CHARGEN] = {"chargen", &ct_chargen_protocol_ops},
    [CT_WIRE_DAYTIME] = {"daytime", &ct_daytime_protocol_ops},
    [CT_WIRE_QOTD] = {"qotd", &ct_qotd_protocol_ops},
};

#define NKINDS (sizeof kinds / sizeof kinds[0])

int ct_wire_factory_init(ct_factory *f, ct_wire_kind kind) {
  if (f == NULL || (unsigned)kind >= NKINDS)
    return CT_EINVAL;
  ct_factory_init(f, NULL, kinds[kind].ops, sizeof(ct_protocol), NULL);
  return 0;
}

int ct_wire_kind_parse(const char *name, ct_wire_kind *out) {
  if (name == NULL || out == NULL)
    return CT_EINVAL;
  for (size_t i = 0; i < NKINDS; i++) {
    if (strcmp(name, kinds[i].name) == 0) {
      *out = (ct_wire_kind)i;
      return 0;
    }
  }
  return CT_EINVAL;
}

const char *ct_wire_kind_name(ct_wire_kind kind) {
  return (unsigned)kind < NKINDS ? kinds[kind].name : "?";
}

void ct_echo_factory_init(ct_factory *f) {
  ct_wire_factory_init(f, CT_WIRE_ECHO);
}

void ct_discard_factory_init(ct_factory *f) {
  ct_wire_factory_init(f, CT_WIRE_DISCARD);
}

void ct_chargen_factory_init(ct_factory *f) {
  ct_wire_factory_init(f, CT_WIRE_CHARGEN);
}

void ct_daytime_factory_init(ct_factory *f) {
  ct_wire_factory_init(f, CT_WIRE_DAYTIME);
}

void ct_qotd_factory_init(ct_factory *f, const char *quote) {
  if (ct_wire_factory_init(f, CT_WIRE_QOTD) == 0)
    f->user = (void *)(uintptr_t)quote;
}
