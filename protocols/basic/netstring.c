/*
 * netstring.c: the netstring receiver (`LEN:DATA,`), strict: no leading
 * zeros, digits only, a colon after the length, a comma after the data,
 * and a length over the limit is refused as soon as its digits show it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "protocols/basic/internal.h"

#define NR(p) ((ct_netstring_receiver *)(void *)(p))
#define NOPS(p) ((const ct_netstring_receiver_ops *)(const void *)(p)->ops)

static void ensure_config(ct_netstring_receiver *nr) {
  if (nr->st.inited)
    return;
  const ct_netstring_receiver_ops *ops = NOPS(&nr->base);
  if (nr->max_length == 0) {
    size_t m = ops ? ops->max_length : 0;
    nr->max_length = (m == 0 || m > CT_BASIC_MAX_LENGTH_LIMIT)
                         ? CT_NETSTRING_MAX_LENGTH_DEFAULT
                         : m;
  }
  if (ops != NULL)
    nr->st.deadline = ops->frame_deadline;
  nr->st.inited = 1;
}

static size_t fail(ct_protocol *p, ct_failure *f, size_t n) {
  ct__basic_fail(p, &NR(p)->st, f);
  return n;
}

static size_t ns_parse(ct_protocol *p, const char *d, size_t n, size_t *hint) {
  ct_netstring_receiver *nr = NR(p);
  const ct_netstring_receiver_ops *ops = NOPS(p);
  const size_t max = nr->max_length;
  size_t pos = 0;
  while (pos < n) {
    size_t i = pos, len = 0;
    if (d[i] < '0' || d[i] > '9')
      return fail(p,
                  ct_failure_new(CT_EPARSE,
                                 "netstring does not start "
                                 "with a length (byte 0x%02x)",
                                 (unsigned char)d[i]),
                  n);
    if (d[i] == '0' && i + 1 < n && d[i + 1] >= '0' && d[i + 1] <= '9')
      return fail(
          p, ct_failure_new(CT_EPARSE, "netstring length has a leading zero"),
          n);
    while (i < n && d[i] >= '0' && d[i] <= '9') {
      /* max <= 1 GiB, so this cannot overflow before the check fires. */
      len = len * 10 + (size_t)(d[i] - '0');
      if (len > max)
        return fail(
            p,
            ct_failure_new(
                CT_ETOOBIG,
                "netstring length %zu%s is "
                "over the limit of %zu bytes",
                len,
                i + 1 < n && d[i + 1] >= '0' && d[i + 1] <= '9' ? "..." : "",
                max),
            n);
      i++;
    }
    if (i == n) {
      *hint = 0; /* the length is still arriving */
      return pos;
    }
    if (d[i] != ':')
      return fail(p,
                  ct_failure_new(CT_EPARSE,
                                 "netstring length is not "
                                 "followed by ':' (byte 0x%02x)",
                                 (unsigned char)d[i]),
                  n);
    i++;
    size_t total = (i - pos) + len + 1;
    if (n - pos < total) {
      *hint = total - (n - pos);
      return pos;
    }
    if (d[pos + total - 1] != ',')
      return fail(p,
                  ct_failure_new(CT_EPARSE,
                                 "netstring is not terminated "
                                 "by a comma (byte 0x%02x)",
                                 (unsigned char)d[pos + total - 1]),
                  n);
    if (ops->string_received != NULL)
      ops->string_received(nr, d + i, len);
    pos += total;
    if (ct__basic_stopped(p, &nr->st))
      return pos;
  }
  return pos;
}

static const ct__basic_kind ns_kind = {ns_parse, NULL};

void ct_netstring_receiver_init(ct_netstring_receiver *nr,
                                const ct_netstring_receiver_ops *ops) {
  if (nr == NULL)
    return;
  memset(nr, 0, sizeof *nr);
  ct_protocol_init(&nr->base, ops ? &ops->base : NULL);
  ensure_config(nr);
}

int ct_netstring_receiver_set_max_length(ct_netstring_receiver *nr,
                                         size_t max_length) {
  if (nr == NULL || max_length > CT_BASIC_MAX_LENGTH_LIMIT)
    return CT_EINVAL;
  ensure_config(nr);
  nr->max_length = max_length ? max_length : CT_NETSTRING_MAX_LENGTH_DEFAULT;
  return 0;
}

int ct_netstring_receiver_send_string(ct_netstring_receiver *nr, const char *s,
                                      size_t len) {
  if (nr == NULL || (s == NULL && len > 0))
    return CT_EINVAL;
  if (nr->base.transport == NULL)
    return CT_ECLOSED;
  char head[24];
  int hl = snprintf(head, sizeof head, "%zu:", len);
  struct iovec iov[3] = {{head, (size_t)hl},
                         {(void *)(uintptr_t)s, len},
                         {(void *)(uintptr_t) ",", 1}};
  return ct_transport_writev(nr->base.transport, iov, 3);
}

void ct_netstring_receiver_pause(ct_netstring_receiver *nr) {
  if (nr != NULL)
    ct__basic_pause(&nr->base, &nr->st);
}

void ct_netstring_receiver_resume(ct_netstring_receiver *nr) {
  if (nr == NULL)
    return;
  ensure_config(nr);
  ct__basic_resume(&nr->base, &nr->st, &ns_kind);
}

const ct_failure *
ct_netstring_receiver_failure(const ct_netstring_receiver *nr) {
  return nr ? nr->st.failure : NULL;
}

void ct_netstring_receiver_proto_made(ct_protocol *p, ct_transport *t) {
  (void)t;
  ensure_config(NR(p));
  if (NOPS(p)->connection_made != NULL)
    NOPS(p)->connection_made(NR(p));
}

void ct_netstring_receiver_proto_data(ct_protocol *p, const char *data,
                                      size_t len) {
  ensure_config(NR(p));
  ct__basic_feed(p, &NR(p)->st, &ns_kind, data, len);
}

int ct_netstring_receiver_proto_eof(ct_protocol *p) {
  return NOPS(p)->eof_received ? NOPS(p)->eof_received(NR(p)) : 0;
}

void ct_netstring_receiver_proto_lost(ct_protocol *p,
                                      const ct_failure *reason) {
  ct_netstring_receiver *nr = NR(p);
  ct__basic_stop_timer(&nr->st);
  if (NOPS(p)->connection_lost != NULL)
    NOPS(p)->connection_lost(nr, nr->st.failure ? nr->st.failure : reason);
}

void ct_netstring_receiver_proto_free(ct_protocol *p) {
  ct_netstring_receiver *nr = NR(p);
  const ct_netstring_receiver_ops *ops = NOPS(p);
  ct__basic_release(&nr->st);
  if (ops != NULL && ops->free != NULL)
    ops->free(nr);
  else if (p->flags & CT_PROTOCOL_HEAP)
    free(p);
}
