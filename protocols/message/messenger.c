/* Messengers (one message connection each) and the two owners that keep
 * them: ct_msg_server (a listening port) and ct_msg_client (outgoing
 * connections).  Both owners are the same "hub": a list of live
 * messengers, the callbacks, the options and a factory.
 *
 * Lifetime.  A hub is reference counted: its owner object holds one
 * reference, every messenger holds one until its protocol is released (the
 * transport still reads the factory, embedded in the hub, until then), a
 * pending connection attempt holds one, and a stopping port holds one until
 * it is closed.  A messenger is reference counted too: the connection holds
 * one until the transport releases the protocol, users may add their own,
 * so a messenger kept past on_close answers CT_ECLOSED instead of crashing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "ctwist/log.h"
#include "protocols/message/internal.h"
#include "protocols/policies/frame.h"
#include "reactor/internal.h"

/* A broadcast shares content of this size or more between its recipients
 * (one ct_bytes, a reference per connection) instead of copying it. */
#define CT__MSG_SHARE (4u * 1024u)

typedef struct hub hub;
typedef struct attempt attempt;

struct ct_messenger {
  ct_protocol base; /* first: the transport knows us as a protocol */
  unsigned refs;
  hub *hub;
  ct_messenger *prev, *next;
  int linked;
  int lost;
  uint64_t id;
  ct_address peer;
  char peer_str[CT_ADDRESS_STRLEN];
  double recv_time, send_time;
  uint64_t nrecv, nsent;
  size_t max_content, max_header;
  void *user;
  ct_msg_decoder dec;
  ct_failure *proto_err; /* the decode error reported by on_close */
  ct__frame_timer frame; /* frame deadline, then the error-close deadline */
};

struct attempt {
  hub *h;
  char *endpoint;
  ct_deferred *connect_d;
  ct_deferred *user_d; /* may be NULL */
  attempt *prev, *next;
};

struct hub {
  ct_client_factory cf; /* first; cf.base is the server's factory too */
  unsigned refs;
  int closed; /* the owner was freed: no more callbacks */
  int server; /* owned by a ct_msg_server (not a client) */
  ct_reactor *r;
  ct_msg_callbacks cb;
  ct_msg_options opts;
  ct_messenger *head, *tail;
  size_t count;
  uint64_t next_id;
  ct_listening_port *port;
  attempt *attempts;
};

struct ct_msg_server {
  hub h;
};
struct ct_msg_client {
  hub h;
};

static void hub_unref(hub *h) {
  if (h != NULL && --h->refs == 0)
    free(h);
}

/* ------------------------------------------------------------- messenger */

ct_messenger *ct_messenger_ref(ct_messenger *m) {
  if (m != NULL)
    m->refs++;
  return m;
}

void ct_messenger_unref(ct_messenger *m) {
  if (m == NULL || --m->refs > 0)
    return;
  ct__msg_decoder_clear(&m->dec);
  ct_failure_free(m->proto_err);
  free(m);
}

static ct_transport *open_transport(const ct_messenger *m) {
  ct_transport *t = m->base.transport;
  if (t == NULL || m->lost || ct_transport_is_closing(t))
    return NULL;
  return t;
}

int ct_messenger_is_open(const ct_messenger *m) {
  return m != NULL && open_transport(m) != NULL;
}
uint64_t ct_messenger_id(const ct_messenger *m) {
  return m ? m->id : 0;
}
const ct_address *ct_messenger_peer(const ct_messenger *m) {
  return m ? &m->peer : NULL;
}
const char *ct_messenger_peer_str(const ct_messenger *m) {
  return m ? m->peer_str : "";
}
double ct_messenger_recv_time(const ct_messenger *m) {
  return m ? m->recv_time : 0.0;
}
double ct_messenger_send_time(const ct_messenger *m) {
  return m ? m->send_time : 0.0;
}
uint64_t ct_messenger_received(const ct_messenger *m) {
  return m ? m->nrecv : 0;
}
uint64_t ct_messenger_sent(const ct_messenger *m) {
  return m ? m->nsent : 0;
}
ct_transport *ct_messenger_transport(const ct_messenger *m) {
  return m ? open_transport(m) : NULL;
}
void ct_messenger_set_user(ct_messenger *m, void *user) {
  if (m != NULL)
    m->user = user;
}
void *ct_messenger_user(const ct_messenger *m) {
  return m ? m->user : NULL;
}

int ct_messenger_close(ct_messenger *m) {
  ct_transport *t = m ? open_transport(m) : NULL;
  if (t == NULL)
    return CT_ECLOSED;
  return ct_transport_lose_connection(t);
}

int ct_messenger_abort(ct_messenger *m) {
  if (m == NULL || m->lost || m->base.transport == NULL)
    return CT_ECLOSED;
  return ct_transport_abort(m->base.transport);
}

/* A send failed: the connection cannot be trusted any more.  Log, abort
 * (on_close follows on a later turn) and hand the code back. */
static int send_failed(ct_messenger *m, int rc) {
  ct_log_limited(m->base.transport != NULL ? m->base.transport->reactor : NULL,
                 CT_LOG_WARN, "message",
                 "send to %s (messenger %llu) failed: %s; "
                 "closing the connection",
                 m->peer_str, (unsigned long long)m->id, ct_strerror(rc));
  if (!m->lost && m->base.transport != NULL &&
      !ct_transport_is_closing(m->base.transport))
    ct_transport_abort(m->base.transport);
  return rc;
}

/*
 * Sending.  Every frame goes straight to the transport, which gathers the
 * writes of one dispatch into one send() and flushes writes made elsewhere
 * before the reactor waits (docs/transports.md): a batch of pipelined
 * requests costs one write, not one per reply.  Large content leaves
 * uncopied (a write of 16 KiB or more goes out at once); content shared by
 * a broadcast is one ct_bytes that every recipient's transport references.
 * What a peer does not read stays queued in its transport, bounded by the
 * slow-consumer limits (CT_OUTPUT_*), which close a peer that falls too far
 * behind instead of letting it grow the process.
 */

/* Encode the frame head (length prefix + header JSON) for `len` bytes of
 * content into `b`, checking the header limit.  0, CT_EINVAL or
 * CT_ENOMEM. */
static int encode_head(const ct_messenger *m, const ct_msg_header *h,
                       size_t len, ct__buf *b) {
  int rc = ct__msg_encode_head(h, len, b);
  if (rc == 0 && ct__buf_len(b) - 4 > m->max_header)
    rc = CT_EINVAL;
  return rc;
}

/* Write one encoded frame: the head, then the content (from `shared` when
 * given, without a copy). */
static int write_frame(ct_messenger *m, const ct__buf *head,
                       const void *content, size_t len, ct_bytes *shared) {
  ct_transport *t = open_transport(m);
  if (t == NULL)
    return send_failed(m, CT_ECLOSED);
  int rc;
  if (shared != NULL) {
    rc = ct_transport_write(t, ct__buf_head(head), ct__buf_len(head));
    if (rc == 0)
      rc = ct_transport_write_bytes(t, shared, 0, len);
  } else {
    struct iovec iov[2] = {{ct__buf_head(head), ct__buf_len(head)},
                           {(void *)content, len}};
    rc = ct_transport_writev(t, iov, len > 0 ? 2 : 1);
  }
  if (rc != 0)
    return send_failed(m, rc);
  m->nsent++;
  m->send_time = ct__reactor_turn_seconds(t->reactor);
  return 0;
}

/* Encode and write one frame (content shared when `shared` is given). */
static int send_frame(ct_messenger *m, const ct_msg_header *h,
                      const void *content, size_t len, ct_bytes *shared) {
  if (open_transport(m) == NULL)
    return send_failed(m, CT_ECLOSED);
  char stack[512];
  ct__buf b;
  ct__buf_init_storage(&b, stack, sizeof stack);
  int rc = encode_head(m, h, len, &b);
  if (rc == 0)
    rc = write_frame(m, &b, content, len, shared);
  else if (rc == CT_ENOMEM)
    rc = send_failed(m, rc);
  ct__buf_free(&b);
  return rc;
}

int ct_messenger_send(ct_messenger *m, const ct_msg_header *h,
                      const void *content, size_t len) {
  if (m == NULL || (content == NULL && len > 0) || len > m->max_content)
    return CT_EINVAL;
  return send_frame(m, h, content, len, NULL);
}

int ct_messenger_send_bytes(ct_messenger *m, const ct_msg_header *h,
                            ct_bytes *content) {
  size_t len = ct_bytes_len(content);
  if (m == NULL || content == NULL || len > m->max_content)
    return CT_EINVAL;
  return send_frame(m, h, NULL, len, len > 0 ? content : NULL);
}

/* --------------------------------------------------------------- protocol */

static int on_frame(void *arg, const ct_msg_header *h, const char *content,
                    size_t len) {
  ct_messenger *m = arg;
  ct_transport *t = m->base.transport;
  (void)t;
  m->nrecv++;
  m->recv_time = ct__reactor_turn_seconds(m->base.transport->reactor);
  hub *hb = m->hub;
  if (!hb->closed && hb->cb.on_message != NULL)
    hb->cb.on_message(m, h, content, len, hb->cb.arg);
  /* Stop if the callback closed the connection. */
  return open_transport(m) == NULL ? 1 : 0;
}

static void frame_late(ct__frame_timer *ft, void *arg);

static void msg_connection_made(ct_protocol *p, ct_transport *t) {
  ct_messenger *m = (ct_messenger *)p;
  hub *hb = m->hub;
  if (ct_transport_get_peer(t, &m->peer) == 0)
    ct_address_format(&m->peer, m->peer_str, sizeof m->peer_str);
  else
    snprintf(m->peer_str, sizeof m->peer_str, "unknown");
  m->recv_time = m->send_time = ct_reactor_seconds(t->reactor);
  if (hb->opts.no_delay)
    (void)ct_transport_set_tcp_nodelay(t, 1);
  ct__frame_timer_init(&m->frame, t, &hb->opts.frame_deadline, frame_late, m);
  m->prev = hb->tail;
  m->next = NULL;
  if (hb->tail != NULL)
    hb->tail->next = m;
  else
    hb->head = m;
  hb->tail = m;
  m->linked = 1;
  hb->count++;
  if (hb->closed) {
    ct_transport_lose_connection(t);
    return;
  }
  if (hb->cb.on_connect != NULL)
    hb->cb.on_connect(m, hb->cb.arg);
}

/* The peer broke the protocol (or was too slow): it gets the replies to
 * its valid frames (written, or gathered by the transport), then one error
 * frame naming the problem, then the close, which flushes.  Only a peer
 * that does not read is aborted: see ct__frame_error_close(). */
static void protocol_error(ct_messenger *m, ct_failure *f) {
  char what[CT_ADDRESS_STRLEN + 64];
  snprintf(what, sizeof what, "closing connection from %s (messenger %llu)",
           m->peer_str, (unsigned long long)m->id);
  ct_log_failure_limited(m->base.transport != NULL ? m->base.transport->reactor
                                                   : NULL,
                         CT_LOG_WARN, "message", what, f);
  ct_failure_free(m->proto_err);
  m->proto_err = f;
  ct_transport *t = open_transport(m);
  if (t == NULL)
    return;
  char stack[512];
  ct__buf b;
  ct__buf_init_storage(&b, stack, sizeof stack);
  if (ct__msg_encode_error(ct_err_name(f->code),
                           f->message ? f->message : ct_strerror(f->code),
                           &b) == 0)
    (void)ct_transport_write(t, ct__buf_head(&b), ct__buf_len(&b));
  ct__buf_free(&b);
  ct__frame_error_close(&m->frame, t);
}

static void frame_late(ct__frame_timer *ft, void *arg) {
  ct_messenger *m = arg;
  protocol_error(
      m, ct_failure_new_at(__FILE__, __LINE__, "message", CT_ETIMEDOUT, NULL,
                           "message frame not completed within %g s of its "
                           "first byte (%zu bytes of it buffered; minimum "
                           "rate %g bytes/s)",
                           ft->deadline - ft->start,
                           ct_msg_decoder_buffered(&m->dec), ft->min_rate));
}

static void msg_data_received(ct_protocol *p, const char *data, size_t len) {
  ct_messenger *m = (ct_messenger *)p;
  if (open_transport(m) == NULL)
    return;
  ct_failure *f = NULL;
  uint64_t frames = m->nrecv;
  int rc = ct_msg_decoder_feed(&m->dec, data, len, &f);
  if (rc >= 0) {
    ct__frame_timer_update(&m->frame, len, m->nrecv != frames,
                           ct__msg_decoder_partial(&m->dec));
    return;
  }
  if (f == NULL)
    f = ct_failure_new(rc, "message decoder failed");
  protocol_error(m, f);
}

static void msg_connection_lost(ct_protocol *p, const ct_failure *reason) {
  ct_messenger *m = (ct_messenger *)p;
  hub *hb = m->hub;
  m->lost = 1;
  ct__frame_timer_cancel(&m->frame);
  if (m->linked) {
    if (m->prev != NULL)
      m->prev->next = m->next;
    else
      hb->head = m->next;
    if (m->next != NULL)
      m->next->prev = m->prev;
    else
      hb->tail = m->prev;
    m->prev = m->next = NULL;
    m->linked = 0;
    hb->count--;
    if (!hb->closed && hb->cb.on_close != NULL)
      hb->cb.on_close(m, hb->count,
                      m->proto_err != NULL ? m->proto_err : reason, hb->cb.arg);
  }
  ct__msg_decoder_clear(&m->dec);
}

static void msg_free(ct_protocol *p) {
  ct_messenger *m = (ct_messenger *)p;
  hub *hb = m->hub;
  m->hub = NULL;
  m->lost = 1;
  /* The transport no longer reads our factory: drop the hub. */
  hub_unref(hb);
  ct_messenger_unref(m);
}

static const ct_protocol_ops msg_protocol_ops = {
    .name = "message",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = msg_connection_made,
    .data_received = msg_data_received,
    .connection_lost = msg_connection_lost,
    .free = msg_free,
};

static ct_protocol *hub_build(ct_factory *f, const ct_address *peer) {
  hub *hb = f->user;
  if (hb->closed)
    return NULL;
  ct_messenger *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  ct_protocol_init(&m->base, &msg_protocol_ops);
  m->refs = 1;
  m->hub = hb;
  hb->refs++;
  m->id = ++hb->next_id;
  m->max_content = hb->opts.limits.max_content;
  m->max_header = hb->opts.limits.max_header;
  if (peer != NULL) {
    m->peer = *peer;
    ct_address_format(peer, m->peer_str, sizeof m->peer_str);
  }
  ct__msg_decoder_init(&m->dec, &hb->opts.limits, on_frame, m);
  return &m->base;
}

static const ct_factory_ops hub_factory_ops = {.name = "message",
                                               .build_protocol = hub_build};

static hub *hub_new(size_t size, ct_reactor *r, const ct_msg_callbacks *cb,
                    const ct_msg_options *opts) {
  hub *hb = calloc(1, size);
  if (hb == NULL)
    return NULL;
  hb->refs = 1;
  hb->r = r;
  if (cb != NULL)
    hb->cb = *cb;
  if (opts != NULL)
    hb->opts = *opts;
  ct__msg_limits_fill(&hb->opts.limits, opts != NULL ? &opts->limits : NULL);
  ct_factory_init(&hb->cf.base, &hub_factory_ops, &msg_protocol_ops,
                  sizeof(ct_messenger), hb);
  hb->cf.base.write_high_water = hb->opts.write_high_water;
  hb->cf.base.write_low_water = hb->opts.write_low_water;
  return hb;
}

static size_t hub_list(const hub *hb, ct_messenger **out, size_t max) {
  size_t i = 0;
  for (ct_messenger *m = hb->head; m != NULL; m = m->next, i++)
    if (out != NULL && i < max)
      out[i] = m;
  return i;
}

/*
 * Fan-out: the frame head is encoded once, and content of CT__MSG_SHARE
 * bytes or more is copied once into a ct_bytes that every recipient's
 * transport references, so a broadcast of a 4 MiB message to 1,000 peers
 * holds one 4 MiB copy, however slowly they read.  `list` NULL: every live
 * messenger of the hub.  Returns how many sends succeeded.
 */
static size_t hub_fanout(hub *hb, ct_messenger *const *list, size_t n,
                         const ct_msg_header *h, const void *content,
                         size_t len) {
  if ((content == NULL && len > 0) || len > hb->opts.limits.max_content ||
      hb->head == NULL)
    return 0;
  char stack[512];
  ct__buf b;
  ct__buf_init_storage(&b, stack, sizeof stack);
  if (encode_head(hb->head, h, len, &b) != 0) {
    ct__buf_free(&b);
    return 0;
  }
  ct_bytes *shared = NULL;
  if (len >= CT__MSG_SHARE && (shared = ct_bytes_new(content, len)) == NULL) {
    ct__buf_free(&b);
    return 0;
  }
  size_t ok = 0;
  /* Sends never run callbacks synchronously, so the list is stable. */
  if (list == NULL) {
    for (ct_messenger *m = hb->head; m != NULL; m = m->next)
      ok += write_frame(m, &b, content, len, shared) == 0;
  } else {
    for (size_t i = 0; i < n; i++)
      if (list[i] != NULL && list[i]->hub == hb)
        ok += write_frame(list[i], &b, content, len, shared) == 0;
  }
  ct_bytes_unref(shared);
  ct__buf_free(&b);
  return ok;
}

static size_t hub_broadcast(hub *hb, const ct_msg_header *h,
                            const void *content, size_t len) {
  return hub_fanout(hb, NULL, 0, h, content, len);
}

static size_t hub_multicast(hub *hb, ct_messenger *const *list, size_t n,
                            const ct_msg_header *h, const void *content,
                            size_t len) {
  return list != NULL ? hub_fanout(hb, list, n, h, content, len) : 0;
}

static int hub_send(hub *hb, ct_messenger *m, const ct_msg_header *h,
                    const void *content, size_t len) {
  if (m == NULL || (m->hub != hb && m->hub != NULL))
    return CT_EINVAL;
  return ct_messenger_send(m, h, content, len);
}

/* Close every connection and drop the owner's reference. */
static void hub_close(hub *hb) {
  hb->closed = 1;
  for (ct_messenger *m = hb->head; m != NULL; m = m->next)
    (void)ct_messenger_close(m); /* flushes gathered output first */
  hub_unref(hb);
}

/* ----------------------------------------------------------------- server */

ct_msg_server *ct_msg_server_new(ct_reactor *r, const ct_msg_callbacks *cb,
                                 const ct_msg_options *opts) {
  if (r == NULL)
    return NULL;
  hub *hb = hub_new(sizeof(ct_msg_server), r, cb, opts);
  if (hb != NULL)
    hb->server = 1;
  return (ct_msg_server *)hb;
}

ct_msg_server *ct_msg_server_of_factory(ct_factory *f) {
  if (f == NULL || f->ops != &hub_factory_ops)
    return NULL;
  hub *hb = f->user;
  return hb->server && !hb->closed ? (ct_msg_server *)hb : NULL;
}

ct_msg_server *ct_messenger_server(const ct_messenger *m) {
  if (m == NULL || m->hub == NULL || !m->hub->server || m->hub->closed)
    return NULL;
  return (ct_msg_server *)m->hub;
}

ct_factory *ct_msg_server_factory(ct_msg_server *s) {
  return s != NULL ? &s->h.cf.base : NULL;
}

ct_factory *ct_msg_client_factory(ct_msg_client *c) {
  return c != NULL ? &c->h.cf.base : NULL;
}

ct_msg_server *ct_msg_server_listen(ct_reactor *r, const char *endpoint,
                                    const ct_msg_callbacks *cb,
                                    const ct_msg_options *opts,
                                    ct_failure **err) {
  if (r == NULL || endpoint == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL, "ct_msg_server_listen: reactor and "
                                       "endpoint are required");
    return NULL;
  }
  ct_msg_server *s = ct_msg_server_new(r, cb, opts);
  if (s == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "ct_msg_server_listen: out of memory");
    return NULL;
  }
  s->h.port = ct_listen(r, endpoint, &s->h.cf.base, err);
  if (s->h.port == NULL) {
    free(s);
    return NULL;
  }
  return s;
}

int ct_msg_server_address(const ct_msg_server *s, ct_address *out) {
  if (s == NULL || out == NULL || s->h.port == NULL)
    return CT_ECLOSED;
  return ct_listening_port_address(s->h.port, out);
}

int ct_msg_server_port(const ct_msg_server *s) {
  ct_address a;
  if (ct_msg_server_address(s, &a) != 0)
    return -1;
  return ct_address_port(&a);
}

size_t ct_msg_server_count(const ct_msg_server *s) {
  return s ? s->h.count : 0;
}
size_t ct_msg_server_messengers(const ct_msg_server *s, ct_messenger **out,
                                size_t max) {
  return s ? hub_list(&s->h, out, max) : 0;
}
size_t ct_msg_server_broadcast(ct_msg_server *s, const ct_msg_header *h,
                               const void *content, size_t len) {
  return s ? hub_broadcast(&s->h, h, content, len) : 0;
}
size_t ct_msg_server_multicast(ct_msg_server *s, ct_messenger *const *list,
                               size_t n, const ct_msg_header *h,
                               const void *content, size_t len) {
  return s ? hub_multicast(&s->h, list, n, h, content, len) : 0;
}
int ct_msg_server_send(ct_msg_server *s, ct_messenger *m,
                       const ct_msg_header *h, const void *content,
                       size_t len) {
  return s ? hub_send(&s->h, m, h, content, len) : CT_EINVAL;
}

static ct_step port_stopped(ct_result res, void *arg) {
  ct_value_free(res.value);
  ct_failure_free(res.failure);
  hub_unref(arg);
  return ct_pass(CT_NONE);
}

void ct_msg_server_free(ct_msg_server *s) {
  if (s == NULL)
    return;
  hub *hb = &s->h;
  if (hb->port != NULL) {
    /* The port reads the factory until it is closed: keep the hub. */
    hb->refs++;
    ct_deferred *d = ct_listening_port_stop(hb->port);
    hb->port = NULL;
    if (d == NULL || ct_deferred_add_both(d, port_stopped, hb) != 0)
      hb->refs--; /* cannot track it; the port is already closed then */
    ct_deferred_unref(d);
  }
  hub_close(hb);
}

/* ----------------------------------------------------------------- client */

ct_msg_client *ct_msg_client_new(ct_reactor *r, const ct_msg_callbacks *cb,
                                 const ct_msg_options *opts) {
  if (r == NULL)
    return NULL;
  return (ct_msg_client *)hub_new(sizeof(ct_msg_client), r, cb, opts);
}

static ct_step attempt_done(ct_result res, void *arg) {
  attempt *a = arg;
  hub *hb = a->h;
  if (a->prev != NULL)
    a->prev->next = a->next;
  else
    hb->attempts = a->next;
  if (a->next != NULL)
    a->next->prev = a->prev;
  if (res.failure == NULL) {
    ct_messenger *m = res.value.ptr; /* borrowed protocol pointer */
    if (a->user_d != NULL)
      ct_deferred_callback(a->user_d, ct_value_of(m, NULL));
  } else {
    if (!hb->closed && hb->cb.on_connect_failed != NULL)
      hb->cb.on_connect_failed(a->endpoint, res.failure, hb->cb.arg);
    if (a->user_d != NULL)
      ct_deferred_errback(a->user_d, res.failure);
    else
      ct_failure_free(res.failure);
  }
  ct_deferred_unref(a->user_d);
  ct_deferred_unref(a->connect_d);
  free(a->endpoint);
  free(a);
  hub_unref(hb);
  return ct_pass(CT_NONE);
}

static int client_start(ct_msg_client *c, const char *endpoint,
                        ct_deferred **out) {
  if (c == NULL || endpoint == NULL || c->h.closed)
    return CT_EINVAL;
  hub *hb = &c->h;
  attempt *a = calloc(1, sizeof *a);
  if (a == NULL)
    return CT_ENOMEM;
  a->endpoint = strdup(endpoint);
  if (out != NULL)
    a->user_d = ct_deferred_new(NULL, NULL);
  if (a->endpoint == NULL || (out != NULL && a->user_d == NULL)) {
    free(a->endpoint);
    ct_deferred_unref(a->user_d);
    free(a);
    return CT_ENOMEM;
  }
  a->h = hb;
  hb->refs++;
  a->next = hb->attempts;
  if (hb->attempts != NULL)
    hb->attempts->prev = a;
  hb->attempts = a;
  if (out != NULL)
    *out = ct_deferred_ref(a->user_d);
  a->connect_d = ct_connect(hb->r, endpoint, &hb->cf);
  if (a->connect_d == NULL ||
      ct_deferred_add_both(a->connect_d, attempt_done, a) != 0) {
    ct_result res = {CT_NONE, ct_failure_new(CT_ENOMEM,
                                             "connect to %s: out "
                                             "of memory",
                                             endpoint)};
    ct_deferred *cd = a->connect_d;
    a->connect_d = NULL;
    attempt_done(res, a);
    if (cd != NULL)
      ct_deferred_cancel(cd);
    ct_deferred_unref(cd);
    return 0; /* reported through the callbacks / Deferred */
  }
  return 0;
}

ct_deferred *ct_msg_client_add_connection(ct_msg_client *c,
                                          const char *endpoint) {
  ct_deferred *d = NULL;
  if (client_start(c, endpoint, &d) != 0)
    return NULL;
  return d;
}

int ct_msg_client_connect(ct_msg_client *c, const char *endpoint) {
  return client_start(c, endpoint, NULL);
}

size_t ct_msg_client_count(const ct_msg_client *c) {
  return c ? c->h.count : 0;
}
size_t ct_msg_client_messengers(const ct_msg_client *c, ct_messenger **out,
                                size_t max) {
  return c ? hub_list(&c->h, out, max) : 0;
}
size_t ct_msg_client_broadcast(ct_msg_client *c, const ct_msg_header *h,
                               const void *content, size_t len) {
  return c ? hub_broadcast(&c->h, h, content, len) : 0;
}
size_t ct_msg_client_multicast(ct_msg_client *c, ct_messenger *const *list,
                               size_t n, const ct_msg_header *h,
                               const void *content, size_t len) {
  return c ? hub_multicast(&c->h, list, n, h, content, len) : 0;
}
int ct_msg_client_send(ct_msg_client *c, ct_messenger *m,
                       const ct_msg_header *h, const void *content,
                       size_t len) {
  return c ? hub_send(&c->h, m, h, content, len) : CT_EINVAL;
}

void ct_msg_client_free(ct_msg_client *c) {
  if (c == NULL)
    return;
  hub *hb = &c->h;
  hb->closed = 1;
  /* Cancelling fires attempt_done at once, which unlinks the attempt. */
  attempt *a = hb->attempts;
  while (a != NULL) {
    attempt *next = a->next;
    ct_deferred_cancel(a->connect_d);
    a = next;
  }
  hub_close(hb);
}
