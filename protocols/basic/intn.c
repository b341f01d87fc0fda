/*
 * intn.c: strings prefixed by their length as a 1, 2 or 4 byte big-endian
 * unsigned integer (Twisted's Int8/Int16/Int32StringReceiver).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "protocols/basic/internal.h"

#define IR(p) ((ct_intn_receiver *)(void *)(p))
#define IOPS(p) ((const ct_intn_receiver_ops *)(const void *)(p)->ops)

static unsigned prefix_of(const ct_protocol *p) {
  unsigned b = IOPS(p)->prefix_bytes;
  return (b == 1 || b == 2) ? b : 4;
}

static void ensure_config(ct_intn_receiver *ir) {
  if (ir->st.inited)
    return;
  const ct_intn_receiver_ops *ops = IOPS(&ir->base);
  if (ir->max_length == 0) {
    size_t m = ops ? ops->max_length : 0;
    ir->max_length = (m == 0 || m > CT_BASIC_MAX_LENGTH_LIMIT)
                         ? CT_INTN_MAX_LENGTH_DEFAULT
                         : m;
  }
  if (ops != NULL)
    ir->st.deadline = ops->frame_deadline;
  ir->st.inited = 1;
}

static inline size_t read_prefix(const unsigned char *u, unsigned pb) {
  switch (pb) {
  case 1:
    return u[0];
  case 2:
    return ((size_t)u[0] << 8) | u[1];
  default:
    return ((size_t)u[0] << 24) | ((size_t)u[1] << 16) | ((size_t)u[2] << 8) |
           u[3];
  }
}

static size_t intn_parse(ct_protocol *p, const char *d, size_t n,
                         size_t *hint) {
  ct_intn_receiver *ir = IR(p);
  const ct_intn_receiver_ops *ops = IOPS(p);
  const unsigned pb = prefix_of(p);
  const size_t max = ir->max_length;
  size_t pos = 0;
  while (n - pos >= pb) {
    size_t len = read_prefix((const unsigned char *)d + pos, pb);
    if (len > max) {
      if (ops->length_limit_exceeded != NULL)
        ops->length_limit_exceeded(ir, (uint64_t)len);
      ct__basic_fail(p, &ir->st,
                     ct_failure_new(CT_ETOOBIG,
                                    "int%u string length %zu is "
                                    "over the limit of %zu bytes",
                                    pb * 8, len, max));
      return n;
    }
    if (n - pos - pb < len) {
      *hint = pb + len - (n - pos);
      return pos;
    }
    if (ops->string_received != NULL)
      ops->string_received(ir, d + pos + pb, len);
    pos += pb + len;
    if (ct__basic_stopped(p, &ir->st))
      return pos;
  }
  if (pos < n)
    *hint = pb - (n - pos);
  return pos;
}

static const ct__basic_kind intn_kind = {intn_parse, NULL};

void ct_intn_receiver_init(ct_intn_receiver *ir,
                           const ct_intn_receiver_ops *ops) {
  if (ir == NULL)
    return;
  memset(ir, 0, sizeof *ir);
  ct_protocol_init(&ir->base, ops ? &ops->base : NULL);
  ensure_config(ir);
}

int ct_intn_receiver_set_max_length(ct_intn_receiver *ir, size_t max_length) {
  if (ir == NULL || max_length > CT_BASIC_MAX_LENGTH_LIMIT)
    return CT_EINVAL;
  ensure_config(ir);
  ir->max_length = max_length ? max_length : CT_INTN_MAX_LENGTH_DEFAULT;
  return 0;
}

int ct_intn_receiver_send_string(ct_intn_receiver *ir, const char *s,
                                 size_t len) {
  if (ir == NULL || (s == NULL && len > 0))
    return CT_EINVAL;
  const unsigned pb = prefix_of(&ir->base);
  if ((uint64_t)len >> (pb * 8) != 0)
    return CT_EMSGSIZE;
  if (ir->base.transport == NULL)
    return CT_ECLOSED;
  unsigned char head[4];
  for (unsigned i = 0; i < pb; i++)
    head[i] = (unsigned char)((uint64_t)len >> (8 * (pb - 1 - i)));
  struct iovec iov[2] = {{head, pb}, {(void *)(uintptr_t)s, len}};
  return ct_transport_writev(ir->base.transport, iov, 2);
}

void ct_intn_receiver_pause(ct_intn_receiver *ir) {
  if (ir != NULL)
    ct__basic_pause(&ir->base, &ir->st);
}

void ct_intn_receiver_resume(ct_intn_receiver *ir) {
  if (ir == NULL)
    return;
  ensure_config(ir);
  ct__basic_resume(&ir->base, &ir->st, &intn_kind);
}

const ct_failure *ct_intn_receiver_failure(const ct_intn_receiver *ir) {
  return ir ? ir->st.failure : NULL;
}

void ct_intn_receiver_proto_made(ct_protocol *p, ct_transport *t) {
  (void)t;
  ensure_config(IR(p));
  if (IOPS(p)->connection_made != NULL)
    IOPS(p)->connection_made(IR(p));
}

void ct_intn_receiver_proto_data(ct_protocol *p, const char *data, size_t len) {
  ensure_config(IR(p));
  ct__basic_feed(p, &IR(p)->st, &intn_kind, data, len);
}

int ct_intn_receiver_proto_eof(ct_protocol *p) {
  return IOPS(p)->eof_received ? IOPS(p)->eof_received(IR(p)) : 0;
}

void ct_intn_receiver_proto_lost(ct_protocol *p, const ct_failure *reason) {
  ct_intn_receiver *ir = IR(p);
  ct__basic_stop_timer(&ir->st);
  if (IOPS(p)->connection_lost != NULL)
    IOPS(p)->connection_lost(ir, ir->st.failure ? ir->st.failure : reason);
}

void ct_intn_receiver_proto_free(ct_protocol *p) {
  ct_intn_receiver *ir = IR(p);
  const ct_intn_receiver_ops *ops = IOPS(p);
  ct__basic_release(&ir->st);
  if (ops != NULL && ops->free != NULL)
    ops->free(ir);
  else if (p->flags & CT_PROTOCOL_HEAP)
    free(p);
}
