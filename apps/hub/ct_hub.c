/*
 * ct-hub: the seed's ip_server, finished.  A message server (message.h)
 * that keeps the roster of connected filers and relays their messages.
 *
 *   ct-hub --listen tcp:7000:interface=127.0.0.1 [--broadcast-interval 5]
 *
 * - Each member says `hello` (name, listening endpoint, report interval)
 *   and then `report`s on its interval; the hub keeps id, name, endpoint,
 *   last report.
 * - `list` is answered with the roster; `send`, `multicast` and
 *   `broadcast` are relayed as `message` frames (the header is encoded
 *   once and large content shared between the recipients).
 * - Every broadcast interval a LoopingCall sends the roster to everyone.
 * - A member that misses 3 report intervals is dropped (an idle timer per
 *   member, reset by its reports).
 * - Slow consumers: each connection's queued output is capped (hard limit:
 *   disconnect at once; soft limit held for a duration: disconnect), the
 *   library's slow-consumer policy; drops are logged and counted in
 *   `stats`.
 * - Joins and leaves are logged with the number of members still alive
 *   (the seed's client_close_callback(client, alive_client_num)).
 *
 * Message types: docs/hub.md.  Prints "listening on ADDRESS" and "ready"
 * on stdout once it accepts connections; SIGINT/SIGTERM stop it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctwist/ctwist.h"
#include "ctwist/message.h"
#include "ctwist/policies.h"
#include "hub_common.h"

/* Members missing this many report intervals are dropped. */
#define HUB_MISSED_REPORTS 3

typedef struct hub hub;

typedef struct member {
  struct member *prev, *next; /* joined members, oldest first */
  hub *h;
  ct_messenger *m; /* borrowed: valid until on_close */
  uint64_t id;
  int joined; /* said hello */
  char name[HUB_NAME_MAX + 1];
  char listen[HUB_ENDPOINT_MAX + 1];
  double report_interval; /* seconds */
  double joined_at, last_report;
  uint64_t reports;
  char status[256]; /* the last report's "status" field */
  ct_idle_timeout idle;
} member;

struct hub {
  ct_reactor *r;
  ct_msg_server *server;
  ct_looping_call *roster_loop;
  member members; /* list head */
  size_t joined;
  double broadcast_interval, default_report_interval;
  ct_messenger **scratch; /* recipient lists, room for every member */
  size_t scratch_cap;
  /* stats */
  uint64_t joins, leaves, silent_drops, relayed, relayed_bytes, bad_requests;
};

/* ------------------------------------------------------------- roster */

static member *find_member(hub *h, uint64_t id) {
  for (member *x = h->members.next; x != &h->members; x = x->next)
    if (x->id == id)
      return x;
  return NULL;
}

/* Room for a recipient list of every member; NULL if memory runs out. */
static ct_messenger **scratch(hub *h) {
  if (h->scratch_cap < h->joined + 1) {
    size_t cap = 2 * (h->joined + 1);
    ct_messenger **p = realloc(h->scratch, cap * sizeof *p);
    if (p == NULL)
      return NULL;
    h->scratch = p;
    h->scratch_cap = cap;
  }
  return h->scratch;
}

/* Every open member but `skip` (may be NULL) into `list`; returns n. */
static size_t members_except(hub *h, member *skip, ct_messenger **list) {
  size_t n = 0;
  for (member *y = h->members.next; y != &h->members; y = y->next)
    if (y != skip && ct_messenger_is_open(y->m)) /* not one being closed */
      list[n++] = y->m;
  return n;
}

/* The roster as a JSON array (content of `members`). */
static char *roster_json(hub *h, size_t *len) {
  json_t *a = json_array();
  double now = ct_reactor_seconds(h->r);
  for (member *x = h->members.next; x != &h->members; x = x->next) {
    json_t *o =
        json_pack("{s:I,s:s,s:s,s:I,s:I,s:s}", "id", (json_int_t)x->id, "name",
                  x->name, "listen", x->listen, "last-report-ms",
                  (json_int_t)((now - x->last_report) * 1000), "reports",
                  (json_int_t)x->reports, "status", x->status);
    if (o != NULL)
      json_array_append_new(a, o);
  }
  char *s = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  *len = s != NULL ? strlen(s) : 0;
  return s;
}

static void send_roster(hub *h, ct_messenger *to, int64_t req) {
  size_t len;
  char *js = roster_json(h, &len);
  ct_msg_header *hd = hub_header("members", req);
  if (js == NULL || hd == NULL) {
    free(js);
    ct_msg_header_free(hd);
    return;
  }
  ct_msg_header_set_int(hd, "count", (int64_t)h->joined);
  if (to != NULL) {
    ct_messenger_send(to, hd, js, len);
  } else {
    ct_messenger **list = scratch(h);
    if (list != NULL)
      ct_msg_server_multicast(h->server, list, members_except(h, NULL, list),
                              hd, js, len);
  }
  ct_msg_header_free(hd);
  free(js);
}

static int roster_tick(ct_looping_call *lc, uint64_t count, void *arg) {
  (void)lc;
  (void)count;
  hub *h = arg;
  if (h->joined > 0)
    send_roster(h, NULL, 0);
  return 0;
}

/* ------------------------------------------------------------ members */

static void member_silent(ct_idle_timeout *it, void *arg) {
  (void)it;
  member *x = arg;
  hub *h = x->h;
  h->silent_drops++;
  if (x->joined)
    ct_log(CT_LOG_WARN, "hub",
           "dropping member %llu (%s): no report for %.3g s (%d intervals)",
           (unsigned long long)x->id, x->name,
           HUB_MISSED_REPORTS * x->report_interval, HUB_MISSED_REPORTS);
  else
    ct_log(CT_LOG_WARN, "hub", "dropping connection %llu from %s: no hello",
           (unsigned long long)x->id, ct_messenger_peer_str(x->m));
  ct_messenger_abort(x->m);
}

static void on_connect(ct_messenger *m, void *arg) {
  hub *h = arg;
  member *x = calloc(1, sizeof *x);
  if (x == NULL) {
    ct_messenger_abort(m);
    return;
  }
  x->h = h;
  x->m = m;
  x->id = ct_messenger_id(m);
  x->report_interval = h->default_report_interval;
  x->prev = x->next = x; /* not in the roster until hello */
  ct_idle_timeout_init(&x->idle, h->r, NULL, member_silent, x);
  ct_idle_timeout_set(&x->idle, HUB_MISSED_REPORTS * x->report_interval);
  ct_messenger_set_user(m, x);
}

static void bad_request(member *x, int64_t req, const char *code,
                        const char *fmt, const char *arg) {
  char text[256];
  snprintf(text, sizeof text, fmt, arg);
  x->h->bad_requests++;
  ct_log_emit_limited(x->h->r, CT_LOG_WARN, "hub", __FILE__, __LINE__,
                      "member %llu (%s): %s", (unsigned long long)x->id,
                      x->joined ? x->name : "-", text);
  hub_send_error(x->m, req, code, text);
}

static void do_hello(member *x, const ct_msg_header *hd, int64_t req) {
  hub *h = x->h;
  const char *name = NULL, *listen = "";
  int64_t interval_ms = 0;
  if (x->joined) {
    bad_request(x, req, "ESTATE", "%s", "hello sent twice");
    return;
  }
  if (ct_msg_header_get_str(hd, "name", &name) != 0 || !hub_valid_name(name)) {
    bad_request(x, req, "EINVAL", "%s",
                "hello needs a name of 1 to 63 printable characters");
    return;
  }
  int rc = ct_msg_header_get_str(hd, "listen", &listen);
  if ((rc != 0 && rc != CT_ENOTFOUND) || strlen(listen) > HUB_ENDPOINT_MAX) {
    bad_request(x, req, "EINVAL", "%s", "hello: bad listen endpoint");
    return;
  }
  rc = ct_msg_header_get_int(hd, "report-interval-ms", &interval_ms);
  if (rc == 0 && (interval_ms < 1 || interval_ms > 86400000)) {
    bad_request(x, req, "EINVAL", "%s",
                "hello: report-interval-ms must be 1..86400000");
    return;
  }
  if (rc == 0)
    x->report_interval = (double)interval_ms / 1000.0;
  snprintf(x->name, sizeof x->name, "%s", name);
  snprintf(x->listen, sizeof x->listen, "%s", listen);
  x->joined = 1;
  x->joined_at = x->last_report = ct_reactor_seconds(h->r);
  x->next = &h->members;
  x->prev = h->members.prev;
  h->members.prev->next = x;
  h->members.prev = x;
  h->joined++;
  h->joins++;
  ct_idle_timeout_set(&x->idle, HUB_MISSED_REPORTS * x->report_interval);
  ct_log(CT_LOG_INFO, "hub",
         "join: member %llu (%s) from %s listening on %s; "
         "%zu alive",
         (unsigned long long)x->id, x->name, ct_messenger_peer_str(x->m),
         x->listen[0] ? x->listen : "-", h->joined);
  ct_msg_header *w = hub_header("welcome", req);
  if (w != NULL) {
    ct_msg_header_set_int(w, "id", (int64_t)x->id);
    ct_msg_header_set_int(w, "broadcast-interval-ms",
                          (int64_t)(h->broadcast_interval * 1000));
    ct_messenger_send(x->m, w, NULL, 0);
    ct_msg_header_free(w);
  }
  send_roster(h, NULL, 0); /* everyone learns of the newcomer at once */
}

/* The relayed frame: {"type":"message","from":ID,"from-name":N,"kind":K}. */
static ct_msg_header *relay_header(member *x, const char *kind) {
  ct_msg_header *hd = hub_header("message", 0);
  if (hd == NULL)
    return NULL;
  ct_msg_header_set_int(hd, "from", (int64_t)x->id);
  ct_msg_header_set_str(hd, "from-name", x->name);
  ct_msg_header_set_str(hd, "kind", kind);
  return hd;
}

static void relay(member *x, const char *kind, ct_messenger **list, size_t n,
                  const char *content, size_t len) {
  hub *h = x->h;
  ct_msg_header *hd = relay_header(x, kind);
  if (hd == NULL)
    return;
  size_t ok = ct_msg_server_multicast(h->server, list, n, hd, content, len);
  ct_msg_header_free(hd);
  h->relayed += ok;
  h->relayed_bytes += ok * len;
}

static void do_send(member *x, const ct_msg_header *hd, int64_t req,
                    const char *content, size_t len) {
  int64_t to;
  if (ct_msg_header_get_int(hd, "to", &to) != 0) {
    bad_request(x, req, "EINVAL", "%s", "send needs an integer \"to\"");
    return;
  }
  member *dst = find_member(x->h, (uint64_t)to);
  if (dst == NULL) {
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)to);
    bad_request(x, req, "ENOTFOUND", "no member %s", id);
    return;
  }
  relay(x, "send", &dst->m, 1, content, len);
}

static void do_multicast(member *x, const ct_msg_header *hd, int64_t req,
                         const char *content, size_t len) {
  const char *to;
  if (ct_msg_header_get_str(hd, "to", &to) != 0) {
    bad_request(x, req, "EINVAL", "%s",
                "multicast needs \"to\": a list of ids like \"1,2,5\"");
    return;
  }
  ct_messenger **list = scratch(x->h);
  size_t n = 0;
  const char *p = to;
  if (list == NULL)
    return;
  while (*p) {
    char *end;
    unsigned long long id = strtoull(p, &end, 10);
    if (end == p || (*end != ',' && *end != '\0')) {
      bad_request(x, req, "EINVAL", "multicast: bad id list \"%.64s\"", to);
      return;
    }
    member *dst = find_member(x->h, id);
    if (dst == NULL) {
      char s[32];
      snprintf(s, sizeof s, "%llu", id);
      bad_request(x, req, "ENOTFOUND", "no member %s", s);
      return;
    }
    int dup = 0;
    for (size_t i = 0; i < n; i++)
      dup |= list[i] == dst->m;
    if (!dup) /* at most one per member: fits */
      list[n++] = dst->m;
    p = *end ? end + 1 : end;
  }
  relay(x, "multicast", list, n, content, len);
}

static void do_broadcast(member *x, const char *content, size_t len) {
  hub *h = x->h;
  ct_messenger **list = scratch(h);
  if (list != NULL)
    relay(x, "broadcast", list, members_except(h, x, list), content, len);
}

static void do_stats(member *x, int64_t req) {
  hub *h = x->h;
  ct_msg_header *s = hub_header("stats", req);
  if (s == NULL)
    return;
  ct_factory *f = ct_msg_server_factory(h->server);
  ct_msg_header_set_int(s, "members", (int64_t)h->joined);
  ct_msg_header_set_int(s, "connections",
                        (int64_t)ct_msg_server_count(h->server));
  ct_msg_header_set_int(s, "joins", (int64_t)h->joins);
  ct_msg_header_set_int(s, "leaves", (int64_t)h->leaves);
  ct_msg_header_set_int(s, "silent-drops", (int64_t)h->silent_drops);
  ct_msg_header_set_int(s, "slow-consumer-drops",
                        (int64_t)f->slow_consumer_drops);
  ct_msg_header_set_int(s, "relayed", (int64_t)h->relayed);
  ct_msg_header_set_int(s, "relayed-bytes", (int64_t)h->relayed_bytes);
  ct_msg_header_set_int(s, "bad-requests", (int64_t)h->bad_requests);
  ct_messenger_send(x->m, s, NULL, 0);
  ct_msg_header_free(s);
}

static void on_message(ct_messenger *m, const ct_msg_header *hd,
                       const char *content, size_t len, void *arg) {
  (void)arg;
  member *x = ct_messenger_user(m);
  if (x == NULL)
    return;
  const char *type = NULL;
  int64_t req = 0;
  ct_msg_header_get_int(hd, "req", &req);
  if (ct_msg_header_get_str(hd, "type", &type) != 0) {
    bad_request(x, req, "EINVAL", "%s", "message without a string \"type\"");
    return;
  }
  if (strcmp(type, "hello") == 0) {
    do_hello(x, hd, req);
    return;
  }
  if (!x->joined) {
    bad_request(x, req, "ESTATE", "\"%.32s\" before hello", type);
    return;
  }
  if (strcmp(type, "report") == 0) {
    const char *status;
    x->last_report = ct_reactor_seconds(x->h->r);
    x->reports++;
    if (ct_msg_header_get_str(hd, "status", &status) == 0)
      snprintf(x->status, sizeof x->status, "%s", status);
    ct_idle_timeout_reset(&x->idle);
  } else if (strcmp(type, "list") == 0) {
    send_roster(x->h, m, req);
  } else if (strcmp(type, "send") == 0) {
    do_send(x, hd, req, content, len);
  } else if (strcmp(type, "multicast") == 0) {
    do_multicast(x, hd, req, content, len);
  } else if (strcmp(type, "broadcast") == 0) {
    do_broadcast(x, content, len);
  } else if (strcmp(type, "stats") == 0) {
    do_stats(x, req);
  } else {
    bad_request(x, req, "EINVAL", "unknown message type \"%.32s\"", type);
  }
}

static void on_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)alive;
  hub *h = arg;
  member *x = ct_messenger_user(m);
  if (x == NULL)
    return;
  ct_messenger_set_user(m, NULL);
  ct_idle_timeout_cancel(&x->idle);
  if (reason != NULL && reason->code == CT_ESLOWCONSUMER)
    ct_log(CT_LOG_WARN, "hub",
           "slow consumer: member %llu (%s) disconnected (%s); %lu so far",
           (unsigned long long)x->id, x->joined ? x->name : "-",
           reason->message,
           ct_msg_server_factory(h->server)->slow_consumer_drops);
  if (x->joined) {
    x->prev->next = x->next;
    x->next->prev = x->prev;
    h->joined--;
    h->leaves++;
    ct_log(CT_LOG_INFO, "hub", "leave: member %llu (%s): %s; %zu alive",
           (unsigned long long)x->id, x->name,
           reason != NULL ? reason->message : "closed", h->joined);
  }
  free(x);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: ct-hub --listen ENDPOINT [options]\n"
          "The messaging hub of ct-filer members (docs/hub.md): keeps the\n"
          "roster, answers list, relays send/multicast/broadcast.\n"
          "  --listen ENDPOINT          e.g. tcp:7000:interface=127.0.0.1\n"
          "  --broadcast-interval S     send the member list to everyone "
          "every S s (5)\n"
          "  --report-interval S        report interval assumed for members\n"
          "                             that do not announce one (10); a "
          "member\n"
          "                             missing 3 intervals is dropped\n"
          "  --output-hard-limit SIZE   disconnect a member as soon as this "
          "much\n"
          "                             output waits for it (64M)\n"
          "  --output-soft-limit SIZE   ... or when this much waits for\n"
          "  --output-soft-seconds S    this long (16M for 10 s)\n"
          "  --log-level LEVEL          debug, info, warn, error (info)\n"
          "  -h, --help                 this text\n"
          "Prints \"listening on ADDRESS\" and \"ready\"; SIGINT/SIGTERM "
          "stop it.\n");
}

int main(int argc, char **argv) {
  const char *listen = NULL;
  hub h;
  memset(&h, 0, sizeof h);
  h.members.next = h.members.prev = &h.members;
  h.broadcast_interval = 5;
  h.default_report_interval = 10;
  size_t hard = 0, soft = 0;
  double soft_seconds = 0;
  for (int i = 1; i < argc; i++) {
    int missing = 0;
    const char *v;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if ((v = ctapp_opt(argc, argv, &i, "--listen", &missing))) {
      listen = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--broadcast-interval",
                              &missing))) {
      if (hub_parse_seconds(v, &h.broadcast_interval) != 0)
        goto bad_value;
    } else if ((v = ctapp_opt(argc, argv, &i, "--report-interval", &missing))) {
      if (hub_parse_seconds(v, &h.default_report_interval) != 0)
        goto bad_value;
    } else if ((v = ctapp_opt(argc, argv, &i, "--output-hard-limit",
                              &missing))) {
      if (hub_parse_size(v, &hard) != 0)
        goto bad_value;
    } else if ((v = ctapp_opt(argc, argv, &i, "--output-soft-limit",
                              &missing))) {
      if (hub_parse_size(v, &soft) != 0)
        goto bad_value;
    } else if ((v = ctapp_opt(argc, argv, &i, "--output-soft-seconds",
                              &missing))) {
      if (hub_parse_seconds(v, &soft_seconds) != 0)
        goto bad_value;
    } else if ((v = ctapp_opt(argc, argv, &i, "--log-level", &missing))) {
      ct_log_level lvl;
      if (ct_log_level_parse(v, &lvl) != 0)
        goto bad_value;
      ct_log_set_default_level(lvl);
    } else {
      fprintf(stderr, "ct-hub: %s '%s'\n",
              missing ? "missing value for" : "unknown option", argv[i]);
      usage(stderr);
      return 2;
    }
    continue;
  bad_value:
    fprintf(stderr, "ct-hub: bad value '%s' for %s\n", v, argv[i - 1]);
    return 2;
  }
  if (listen == NULL) {
    fprintf(stderr, "ct-hub: --listen ENDPOINT is required\n");
    usage(stderr);
    return 2;
  }
  /* Unset limits take the library's defaults (CT_OUTPUT_*_DEFAULT). */
  if (hard == 0)
    hard = CT_OUTPUT_HARD_LIMIT_DEFAULT;
  if (soft == 0)
    soft = hard < CT_OUTPUT_SOFT_LIMIT_DEFAULT ? hard
                                               : CT_OUTPUT_SOFT_LIMIT_DEFAULT;
  if (soft_seconds == 0)
    soft_seconds = CT_OUTPUT_SOFT_SECONDS_DEFAULT;
  if (soft > hard) {
    fprintf(stderr, "ct-hub: --output-soft-limit is above the hard limit\n");
    return 2;
  }

  h.r = ct_reactor_new();
  if (h.r == NULL)
    return 1;
  ct_msg_callbacks cb = {.on_connect = on_connect,
                         .on_message = on_message,
                         .on_close = on_close,
                         .arg = &h};
  ct_msg_options opts = {.no_delay = 1};
  ct_failure *err = NULL;
  h.server = ct_msg_server_new(h.r, &cb, &opts);
  if (h.server == NULL) {
    ct_reactor_free(h.r);
    return 1;
  }
  ct_factory *f = ct_msg_server_factory(h.server);
  f->output_hard_limit = hard;
  f->output_soft_limit = soft;
  f->output_soft_seconds = soft_seconds;
  ct_listening_port *port = ct_listen(h.r, listen, f, &err);
  if (port == NULL) {
    fprintf(stderr, "ct-hub: cannot listen on %s: %s\n", listen,
            err != NULL ? err->message : "out of memory");
    ct_failure_free(err);
    ct_msg_server_free(h.server);
    ct_reactor_free(h.r);
    return 1;
  }
  h.roster_loop = ct_looping_call_new(h.r, roster_tick, &h);
  if (h.roster_loop == NULL ||
      ct_looping_call_start(h.roster_loop, h.broadcast_interval, 0) != 0) {
    fprintf(stderr, "ct-hub: cannot start the broadcast loop\n");
    return 1;
  }
  ct_address addr;
  char abuf[128] = "?";
  if (ct_listening_port_address(port, &addr) == 0)
    ct_address_format(&addr, abuf, sizeof abuf);
  printf("listening on %s\nready\n", abuf);
  fflush(stdout);
  ct_log(CT_LOG_INFO, "hub",
         "listening on %s; broadcast every %g s; slow consumers: hard %zu "
         "bytes, soft %zu bytes for %g s",
         abuf, h.broadcast_interval, hard, soft, soft_seconds);
  ct_reactor_run(h.r);

  ct_looping_call_free(h.roster_loop);
  ct_deferred_unref(ct_listening_port_stop(port));
  /* Members' memory goes with their on_close; the server frees without
   * callbacks, so release the roster here. */
  for (member *x = h.members.next; x != &h.members;) {
    member *nx = x->next;
    ct_idle_timeout_cancel(&x->idle);
    ct_messenger_set_user(x->m, NULL);
    free(x);
    x = nx;
  }
  size_t n = ct_msg_server_messengers(h.server, NULL, 0);
  ct_messenger **all = calloc(n + 1, sizeof *all);
  n = all != NULL ? ct_msg_server_messengers(h.server, all, n) : 0;
  for (size_t i = 0; i < n; i++) {
    member *x = ct_messenger_user(all[i]);
    if (x != NULL) { /* connected, no hello yet */
      ct_idle_timeout_cancel(&x->idle);
      ct_messenger_set_user(all[i], NULL);
      free(x);
    }
  }
  free(all);
  free(h.scratch);
  ct_msg_server_free(h.server);
  ct_reactor_iterate(h.r);
  ct_reactor_free(h.r);
  return 0;
}
