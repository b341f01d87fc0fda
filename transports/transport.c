/*
 * transport.c: the ct_transport wrappers and the machinery every transport
 * kind shares -- watermarks, producers, the reading switch and the
 * connection_lost sequence.
 *
 * Reading can be paused for two independent reasons: the user asked
 * (ct_transport_pause_reading) or back-pressure did (output above the high
 * watermark, for protocols that opt in).  The kind's raw pause/resume ops
 * only see the combination, so neither reason can undo the other.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "transports/internal.h"

/* ------------------------------------------------------------- helpers */

void ct__transport_init(ct_transport *t, const ct_transport_ops *ops,
                        ct_reactor *r) {
  memset(t, 0, sizeof *t);
  t->ops = ops;
  t->reactor = r;
  t->refs = 1;
  t->high_water = CT_WRITE_HIGH_WATER_DEFAULT;
  t->low_water = CT_WRITE_LOW_WATER_DEFAULT;
  t->out_hard_limit = CT_OUTPUT_HARD_LIMIT_DEFAULT;
  t->out_soft_limit = CT_OUTPUT_SOFT_LIMIT_DEFAULT;
  t->out_soft_seconds = CT_OUTPUT_SOFT_SECONDS_DEFAULT;
}

/* ------------------------------------------------- slow-consumer policy */

static void soft_timer_stop(ct_transport *t) {
  if (t->soft_timer != NULL) {
    ct_delayed_call_cancel(t->soft_timer);
    t->soft_timer = NULL;
    ct_transport_unref(t); /* the timer's reference */
  }
}

/* Abort `t` as a slow consumer; connection_lost reports `why`. */
static void slow_drop(ct_transport *t, ct_failure *why) {
  soft_timer_stop(t);
  if (t->flags & CT__T_CLOSED) {
    ct_failure_free(why);
    return;
  }
  ct_failure_free(t->close_reason);
  t->close_reason = why;
  ct_factory *f = t->protocol != NULL ? t->protocol->factory : NULL;
  if (f != NULL)
    f->slow_consumer_drops++;
  ct_log(CT_LOG_WARN, ct_transport_kind(t), "closing a connection: %s",
         why->message);
  ct_transport_abort(t);
}

static void soft_expired(void *arg) {
  ct_transport *t = arg;
  t->soft_timer = NULL;
  size_t b = ct_transport_buffered(t);
  if (!(t->flags & CT__T_CLOSED) && b > t->out_soft_limit)
    slow_drop(t, ct_failure_new_at(
                     __FILE__, __LINE__, "transport", CT_ESLOWCONSUMER, NULL,
                     "slow consumer: output stayed over the soft limit of "
                     "%zu bytes for %g s (%zu bytes queued)",
                     t->out_soft_limit, t->out_soft_seconds, b));
  ct_transport_unref(t); /* the timer's reference */
}

/* Output went over the soft limit (or a soft timer runs). */
static void check_limits(ct_transport *t, size_t buffered) {
  if (t->flags & CT__T_CLOSED)
    return;
  if (buffered > t->out_hard_limit) {
    slow_drop(t, ct_failure_new_at(__FILE__, __LINE__, "transport",
                                   CT_ESLOWCONSUMER, NULL,
                                   "slow consumer: %zu bytes of output "
                                   "queued, over the hard limit of %zu bytes",
                                   buffered, t->out_hard_limit));
  } else if (buffered > t->out_soft_limit) {
    if (t->soft_timer == NULL) {
      t->soft_timer =
          ct_call_later(t->reactor, t->out_soft_seconds, soft_expired, t);
      if (t->soft_timer != NULL)
        ct_transport_ref(t);
    }
  } else {
    soft_timer_stop(t);
  }
}

int ct_transport_set_output_limits(ct_transport *t, size_t hard, size_t soft,
                                   double soft_seconds) {
  if (t == NULL || !(soft_seconds >= 0))
    return CT_EINVAL;
  if (hard == 0 && soft == 0 && soft_seconds == 0) {
    hard = CT_OUTPUT_HARD_LIMIT_DEFAULT;
    soft = CT_OUTPUT_SOFT_LIMIT_DEFAULT;
    soft_seconds = CT_OUTPUT_SOFT_SECONDS_DEFAULT;
  }
  if (hard == 0)
    hard = SIZE_MAX;
  if (soft == 0)
    soft = SIZE_MAX;
  if (soft != SIZE_MAX && soft > hard)
    return CT_EINVAL;
  t->out_hard_limit = hard;
  t->out_soft_limit = soft;
  t->out_soft_seconds = soft_seconds;
  soft_timer_stop(t); /* a new duration starts now */
  ct__transport_buffer_changed(t, ct_transport_buffered(t));
  return 0;
}

/* Make the raw reading state match the two pause reasons. */
static void update_reading(ct_transport *t) {
  if (t->flags & CT__T_CLOSED)
    return;
  int want_paused = (t->flags & (CT__T_USER_PAUSED | CT__T_BP_PAUSED)) != 0;
  int is_paused = (t->flags & CT__T_READ_PAUSED) != 0;
  if (want_paused == is_paused)
    return;
  if (want_paused) {
    t->flags |= CT__T_READ_PAUSED;
    if (t->ops->pause_reading != NULL)
      t->ops->pause_reading(t);
  } else {
    t->flags &= ~(unsigned)CT__T_READ_PAUSED;
    if (t->ops->resume_reading != NULL)
      t->ops->resume_reading(t);
  }
}

static int protocol_pauses_on_high(const ct_transport *t) {
  const ct_protocol *p = t->protocol;
  if (p == NULL)
    return 0;
  unsigned f = p->flags | (p->ops != NULL ? p->ops->flags : 0);
  return (f & CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER) != 0;
}

void ct__transport_make_connection(ct_transport *t, ct_protocol *p) {
  t->protocol = p;
  p->transport = t;
  if (p->factory != NULL && p->factory->write_high_water > 0) {
    size_t high = p->factory->write_high_water;
    size_t low = p->factory->write_low_water;
    t->high_water = high;
    t->low_water = low <= high ? low : high;
  }
  if (p->factory != NULL && (p->factory->output_hard_limit != 0 ||
                             p->factory->output_soft_limit != 0 ||
                             p->factory->output_soft_seconds != 0))
    (void)ct_transport_set_output_limits(t, p->factory->output_hard_limit,
                                         p->factory->output_soft_limit,
                                         p->factory->output_soft_seconds);
  t->flags |= CT__T_CONNECTED;
  if (p->ops != NULL && p->ops->connection_made != NULL)
    p->ops->connection_made(p, t);
}

void ct__transport_buffer_changed(ct_transport *t, size_t buffered) {
  if (__builtin_expect(buffered > t->out_soft_limit ||
                           buffered > t->out_hard_limit ||
                           t->soft_timer != NULL,
                       0)) {
    check_limits(t, buffered);
    if (t->flags & CT__T_CLOSED)
      return;
  }
  if (!(t->flags & CT__T_ABOVE_HIGH)) {
    if (buffered <= t->high_water)
      return;
    t->flags |= CT__T_ABOVE_HIGH;
    if (t->producer != NULL && (t->flags & CT__T_STREAMING) &&
        !(t->flags & CT__T_PRODUCER_PAUSED)) {
      t->flags |= CT__T_PRODUCER_PAUSED;
      if (t->producer->pause_producing != NULL)
        t->producer->pause_producing(t->producer_arg);
    }
    if (protocol_pauses_on_high(t)) {
      t->flags |= CT__T_BP_PAUSED;
      update_reading(t);
    }
    return;
  }
  if (buffered > t->low_water)
    return;
  t->flags &= ~(unsigned)CT__T_ABOVE_HIGH;
  if (t->flags & CT__T_BP_PAUSED) {
    t->flags &= ~(unsigned)CT__T_BP_PAUSED;
    update_reading(t);
  }
  if (t->producer != NULL && (t->flags & CT__T_PRODUCER_PAUSED)) {
    t->flags &= ~(unsigned)CT__T_PRODUCER_PAUSED;
    if (t->producer->resume_producing != NULL)
      t->producer->resume_producing(t->producer_arg);
  }
}

void ct__transport_output_drained(ct_transport *t) {
  if (t->producer == NULL || (t->flags & CT__T_STREAMING) ||
      !(t->flags & CT__T_PULL_PENDING) || (t->flags & CT__T_CLOSED))
    return;
  t->flags &= ~(unsigned)CT__T_PULL_PENDING;
  if (t->producer->resume_producing != NULL)
    t->producer->resume_producing(t->producer_arg);
}

void ct__protocol_discard(ct_protocol *p) {
  if (p != NULL) {
    p->transport = NULL;
    ct_protocol_release(p);
  }
}

void ct__transport_deliver_lost(ct_transport *t, ct_failure *reason) {
  if (t->flags & CT__T_LOST) {
    ct_failure_free(reason);
    return;
  }
  t->flags |= CT__T_LOST | CT__T_CLOSED;
  /* Hold the transport over the callbacks: a protocol may drop references
   * it took. */
  t->refs++;
  soft_timer_stop(t);
  if (t->close_reason != NULL) {
    /* The policy that closed it says why, not the kind's "aborted". */
    ct_failure_free(reason);
    reason = t->close_reason;
    t->close_reason = NULL;
  }
  if (t->producer != NULL) {
    const ct_producer_ops *po = t->producer;
    void *arg = t->producer_arg;
    t->producer = NULL;
    t->producer_arg = NULL;
    if (po->stop_producing != NULL)
      po->stop_producing(arg);
  }
  ct_protocol *p = t->protocol;
  if (p != NULL && (t->flags & CT__T_CONNECTED) && p->ops != NULL &&
      p->ops->connection_lost != NULL)
    p->ops->connection_lost(p, reason);
  ct_client_factory *cf = t->client_factory;
  t->client_factory = NULL;
  if (cf != NULL) {
    if (cf->connection_lost != NULL)
      cf->connection_lost(cf, reason);
    ct_factory_do_stop(&cf->base);
  }
  t->protocol = NULL;
  if (p != NULL) {
    p->transport = NULL;
    ct_protocol_release(p);
  }
  ct_failure_free(reason);
  t->refs--;             /* our hold */
  ct_transport_unref(t); /* the connection's reference */
}

/* ------------------------------------------------------------- wrappers */

#define CT_T_CHECK_OPEN(t)                                                     \
  do {                                                                         \
    if ((t) == NULL)                                                           \
      return CT_EINVAL;                                                        \
    if ((t)->flags & CT__T_CLOSED)                                             \
      return CT_ECLOSED;                                                       \
  } while (0)

/* The checks of ct_transport_write() when one of them may fail, in the
 * documented order (closed before bad data before closing). */
static int write_refused(const ct_transport *t, const void *data, size_t len) {
  if (t == NULL)
    return CT_EINVAL;
  if (t->flags & CT__T_CLOSED)
    return CT_ECLOSED;
  if (data == NULL && len > 0)
    return CT_EINVAL;
  if (t->flags & (CT__T_CLOSING | CT__T_WRITE_SHUT))
    return CT_ECLOSED;
  return 0;
}

int ct_transport_write(ct_transport *t, const void *data, size_t len) {
  /* The hot path of every protocol: one flag test and one NULL test
   * decide that nothing is wrong, then a tail call to the kind. */
  if (__builtin_expect(t == NULL || data == NULL ||
                           (t->flags & (CT__T_CLOSED | CT__T_CLOSING |
                                        CT__T_WRITE_SHUT)) != 0,
                       0)) {
    int rc = write_refused(t, data, len);
    if (rc != 0 || len == 0)
      return rc;
  }
  if (len == 0)
    return 0;
  if (t->producer != NULL && !(t->flags & CT__T_STREAMING))
    t->flags |= CT__T_PULL_PENDING;
  if (t->ops->write != NULL)
    return t->ops->write(t, data, len);
  struct iovec iov = {(void *)(uintptr_t)data, len};
  return t->ops->writev != NULL ? t->ops->writev(t, &iov, 1) : CT_ENOSYS;
}

int ct_transport_writev(ct_transport *t, const struct iovec *iov, int iovcnt) {
  CT_T_CHECK_OPEN(t);
  if (iovcnt < 0 || (iov == NULL && iovcnt > 0))
    return CT_EINVAL;
  if (t->flags & (CT__T_CLOSING | CT__T_WRITE_SHUT))
    return CT_ECLOSED;
  if (iovcnt == 0)
    return 0;
  if (t->producer != NULL && !(t->flags & CT__T_STREAMING))
    t->flags |= CT__T_PULL_PENDING;
  if (t->ops->writev != NULL)
    return t->ops->writev(t, iov, iovcnt);
  for (int i = 0; i < iovcnt; i++) {
    int rc = t->ops->write(t, iov[i].iov_base, iov[i].iov_len);
    if (rc < 0)
      return rc;
  }
  return 0;
}

int ct_transport_write_bytes(ct_transport *t, ct_bytes *b, size_t off,
                             size_t len) {
  CT_T_CHECK_OPEN(t);
  if (b == NULL || off > ct_bytes_len(b) || len > ct_bytes_len(b) - off)
    return CT_EINVAL;
  if (t->flags & (CT__T_CLOSING | CT__T_WRITE_SHUT))
    return CT_ECLOSED;
  if (len == 0)
    return 0;
  if (t->producer != NULL && !(t->flags & CT__T_STREAMING))
    t->flags |= CT__T_PULL_PENDING;
  if (t->ops->write_bytes != NULL)
    return t->ops->write_bytes(t, b, off, len);
  return ct_transport_write(t, (const char *)ct_bytes_data(b) + off, len);
}

long long ct_transport_sendfile(ct_transport *t, int fd, long long offset,
                                size_t len) {
  CT_T_CHECK_OPEN(t);
  if (fd < 0 || offset < 0)
    return CT_EINVAL;
  if (t->flags & (CT__T_CLOSING | CT__T_WRITE_SHUT))
    return CT_ECLOSED;
  if (t->ops->sendfile == NULL)
    return CT_ENOSYS;
  if (len == 0)
    return 0;
  if (t->producer != NULL && !(t->flags & CT__T_STREAMING))
    t->flags |= CT__T_PULL_PENDING;
  return t->ops->sendfile(t, fd, offset, len);
}

int ct_transport_get_stats(const ct_transport *t, ct_transport_stats *out) {
  if (t == NULL || out == NULL)
    return CT_EINVAL;
  if (t->ops->get_stats == NULL)
    return CT_ENOSYS;
  return t->ops->get_stats(t, out);
}

int ct_transport_write_str(ct_transport *t, const char *s) {
  if (s == NULL)
    return CT_EINVAL;
  return ct_transport_write(t, s, strlen(s));
}

int ct_transport_lose_connection(ct_transport *t) {
  CT_T_CHECK_OPEN(t);
  if (t->flags & CT__T_CLOSING)
    return 0;
  return t->ops->lose_connection != NULL ? t->ops->lose_connection(t)
                                         : CT_ENOSYS;
}

int ct_transport_abort(ct_transport *t) {
  CT_T_CHECK_OPEN(t);
  return t->ops->abort != NULL ? t->ops->abort(t) : CT_ENOSYS;
}

int ct_transport_half_close(ct_transport *t) {
  CT_T_CHECK_OPEN(t);
  if (t->flags & (CT__T_WRITE_SHUT | CT__T_CLOSING))
    return 0;
  return t->ops->half_close != NULL ? t->ops->half_close(t) : CT_ENOSYS;
}

int ct_transport_pause_reading(ct_transport *t) {
  CT_T_CHECK_OPEN(t);
  t->flags |= CT__T_USER_PAUSED;
  update_reading(t);
  return 0;
}

int ct_transport_resume_reading(ct_transport *t) {
  CT_T_CHECK_OPEN(t);
  t->flags &= ~(unsigned)CT__T_USER_PAUSED;
  update_reading(t);
  return 0;
}

int ct_transport_reading_paused(const ct_transport *t) {
  return t != NULL && (t->flags & CT__T_READ_PAUSED) != 0;
}

int ct_transport_get_peer(ct_transport *t, ct_address *out) {
  CT_T_CHECK_OPEN(t);
  if (out == NULL)
    return CT_EINVAL;
  return t->ops->get_peer != NULL ? t->ops->get_peer(t, out) : CT_ENOSYS;
}

int ct_transport_get_host(ct_transport *t, ct_address *out) {
  CT_T_CHECK_OPEN(t);
  if (out == NULL)
    return CT_EINVAL;
  return t->ops->get_host != NULL ? t->ops->get_host(t, out) : CT_ENOSYS;
}

int ct_transport_set_option(ct_transport *t, ct_transport_option opt,
                            int value) {
  CT_T_CHECK_OPEN(t);
  return t->ops->set_option != NULL ? t->ops->set_option(t, opt, value)
                                    : CT_ENOSYS;
}

int ct_transport_set_tcp_nodelay(ct_transport *t, int on) {
  return ct_transport_set_option(t, CT_OPT_TCP_NODELAY, on ? 1 : 0);
}

int ct_transport_set_keepalive(ct_transport *t, int on) {
  return ct_transport_set_option(t, CT_OPT_KEEPALIVE, on ? 1 : 0);
}

size_t ct_transport_buffered(const ct_transport *t) {
  if (t == NULL || (t->flags & CT__T_CLOSED) || t->ops->buffered == NULL)
    return 0;
  return t->ops->buffered(t);
}

int ct_transport_set_watermarks(ct_transport *t, size_t high, size_t low) {
  if (t == NULL)
    return CT_EINVAL;
  if (high == 0) {
    high = CT_WRITE_HIGH_WATER_DEFAULT;
    low = CT_WRITE_LOW_WATER_DEFAULT;
  }
  if (low > high)
    return CT_EINVAL;
  t->high_water = high;
  t->low_water = low;
  size_t b = ct_transport_buffered(t);
  /* Re-evaluate from scratch: both directions may apply. */
  ct__transport_buffer_changed(t, b);
  if ((t->flags & CT__T_ABOVE_HIGH) && b <= low)
    ct__transport_buffer_changed(t, b);
  return 0;
}

int ct_transport_register_producer(ct_transport *t, const ct_producer_ops *ops,
                                   void *arg, int streaming) {
  CT_T_CHECK_OPEN(t);
  if (ops == NULL)
    return CT_EINVAL;
  if (t->producer != NULL)
    return CT_ESTATE;
  t->producer = ops;
  t->producer_arg = arg;
  t->flags &=
      ~(unsigned)(CT__T_STREAMING | CT__T_PRODUCER_PAUSED | CT__T_PULL_PENDING);
  if (streaming) {
    t->flags |= CT__T_STREAMING;
    if (t->flags & CT__T_ABOVE_HIGH) {
      t->flags |= CT__T_PRODUCER_PAUSED;
      if (ops->pause_producing != NULL)
        ops->pause_producing(arg);
    }
  } else {
    t->flags |= CT__T_PULL_PENDING;
    if (t->ops->want_pull != NULL)
      t->ops->want_pull(t);
  }
  return 0;
}

int ct_transport_unregister_producer(ct_transport *t) {
  if (t == NULL || t->producer == NULL)
    return CT_ENOTFOUND;
  t->producer = NULL;
  t->producer_arg = NULL;
  t->flags &=
      ~(unsigned)(CT__T_STREAMING | CT__T_PRODUCER_PAUSED | CT__T_PULL_PENDING);
  return 0;
}

int ct_transport_is_closing(const ct_transport *t) {
  return t == NULL || (t->flags & (CT__T_CLOSED | CT__T_CLOSING)) != 0;
}

int ct_transport_fileno(const ct_transport *t) {
  if (t == NULL || (t->flags & CT__T_CLOSED) || t->ops->fileno == NULL)
    return -1;
  return t->ops->fileno(t);
}

const char *ct_transport_kind(const ct_transport *t) {
  return t != NULL && t->ops->name != NULL ? t->ops->name : "?";
}

ct_transport *ct_transport_ref(ct_transport *t) {
  if (t != NULL)
    t->refs++;
  return t;
}

void ct_transport_unref(ct_transport *t) {
  if (t == NULL)
    return;
  if (t->refs == 0) {
    ct_log(CT_LOG_ERROR, "transport", "unref of a dead %s transport",
           ct_transport_kind(t));
    return;
  }
  if (--t->refs == 0) {
    ct_failure_free(t->close_reason);
    t->close_reason = NULL;
    if (t->ops->destroy != NULL)
      t->ops->destroy(t);
  }
}
