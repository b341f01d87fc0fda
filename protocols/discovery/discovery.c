/*
 * discovery.c: services on ZooKeeper (ctwist/discovery.h).  Registration
 * writes Curator ServiceInstance JSON into an ephemeral sequential node
 * kept by ct_zk_register(); discovery watches the children of the service
 * and turns their appearance and disappearance into
 * ct_rpc_client_connect() / ct_rpc_client_disconnect() on a client.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctwist/discovery.h"
#include "ctwist/log.h"

#define MODULE "discovery"

/* ------------------------------------------------------------ member JSON */

int ct_service_path(const char *service, char *buf, size_t len) {
  size_t n = service != NULL ? strlen(service) : 0;
  if (n == 0 || n > 100)
    return CT_EINVAL;
  for (size_t i = 0; i < n; i++) {
    char ch = service[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
      return CT_EINVAL;
  }
  if (strcmp(service, ".") == 0 || strcmp(service, "..") == 0)
    return CT_EINVAL;
  int w = snprintf(buf, len, "%s/%s", CT_SERVICES_ROOT, service);
  return w < 0 || (size_t)w >= len ? CT_EINVAL : 0;
}

char *ct_service_member_json(const char *service, const char *id,
                             const char *address, int port,
                             int64_t registered_ms) {
  json_t *j =
      json_pack("{ss ss ss si sn sn sI ss sn sb}", "name", service, "id", id,
                "address", address, "port", port, "sslPort", "payload",
                "registrationTimeUTC", (json_int_t)registered_ms, "serviceType",
                "DYNAMIC", "uriSpec", "enabled", 1);
  if (j == NULL)
    return NULL;
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

int ct_service_member_endpoint(const char *json, size_t len, char *endpoint,
                               size_t endpoint_len, ct_failure **err) {
  json_error_t je;
  json_t *j = json_loadb(json, len, 0, &je);
  const char *problem = NULL;
  json_t *addr = NULL, *port = NULL, *enabled = NULL;
  if (j == NULL || !json_is_object(j)) {
    problem = "not a JSON object";
  } else {
    addr = json_object_get(j, "address");
    port = json_object_get(j, "port");
    enabled = json_object_get(j, "enabled");
    if (!json_is_string(addr) || json_string_length(addr) == 0 ||
        json_string_length(addr) > 255)
      problem = "no \"address\" string";
    else if (!json_is_integer(port) || json_integer_value(port) < 1 ||
             json_integer_value(port) > 65535)
      problem = "no \"port\" in 1..65535";
    else if (json_is_false(enabled))
      problem = "\"enabled\" is false";
  }
  if (problem != NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_EPARSE, "member JSON: %s", problem);
    json_decref(j);
    return CT_EPARSE;
  }
  /* The endpoint syntax separates fields with ':': escape an IPv6
   * address's own. */
  char host[600];
  size_t o = 0;
  for (const char *p = json_string_value(addr); *p != '\0'; p++) {
    if (*p == ':' || *p == '\\' || *p == '=')
      host[o++] = '\\';
    host[o++] = *p;
  }
  host[o] = '\0';
  int w = snprintf(endpoint, endpoint_len, "tcp:host=%s:port=%d", host,
                   (int)json_integer_value(port));
  json_decref(j);
  if (w < 0 || (size_t)w >= endpoint_len) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL, "member endpoint too long");
    return CT_EINVAL;
  }
  return 0;
}

/* ------------------------------------------------------------ registration */

struct ct_service_registration {
  ct_zk_registration *zg;
};

ct_service_registration *ct_service_register(ct_zk *zk, const char *service,
                                             const char *address, int port,
                                             ct_failure **err) {
  char path[256];
  if (ct_service_path(service, path, sizeof path) != 0) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL,
                            "bad service name '%s': 1..100 characters of "
                            "A-Z a-z 0-9 . _ -",
                            service ? service : "(null)");
    return NULL;
  }
  if (address == NULL || address[0] == '\0' || port < 1 || port > 65535) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL, "bad member address %s port %d",
                            address ? address : "(null)", port);
    return NULL;
  }
  ct_service_registration *g = calloc(1, sizeof *g);
  /* One ID per endpoint: the session's GUID and the port.  Curator reads
   * it as the instance id. */
  char id[64];
  snprintf(id, sizeof id, "%s-%d", ct_zk_guid(zk), port);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts); /* Curator's field is wall time */
  char *json =
      ct_service_member_json(service, id, address, port,
                             (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
  if (g != NULL && json != NULL)
    g->zg = ct_zk_register(zk, path, id, json, strlen(json));
  free(json);
  if (g == NULL || g->zg == NULL) {
    free(g);
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "out of memory");
    return NULL;
  }
  ct_log(CT_LOG_INFO, MODULE, "registering %s:%d as a member of %s on %s",
         address, port, service, ct_zk_ensemble(zk));
  return g;
}

ct_zk_registration *
ct_service_registration_zk(const ct_service_registration *g) {
  return g->zg;
}

ct_deferred *ct_service_unregister(ct_service_registration *g) {
  ct_deferred *d = ct_zk_unregister(g->zg);
  free(g);
  return d;
}

/* --------------------------------------------------------------- discovery */

typedef struct member {
  struct member *next;
  char *name;     /* the child's name */
  char *endpoint; /* NULL until its data is read (or when unreadable) */
  int seen;
} member;

typedef struct ready_waiter {
  struct ready_waiter *next;
  ct_deferred *d;
} ready_waiter;

struct ct_rpc_discovery {
  ct_zk *zk;
  ct_rpc_client *c;
  char path[256];
  char service[128];
  ct_zk_watch *watch;
  member *members;
  int listed;  /* a member list was read */
  int pending; /* our callbacks on Deferreds still to run */
  int reads;   /* member reads in flight */
  int freed;
  int unreachable;
  ready_waiter *waiters;
  ct_rpc_discovery_cb cb;
  void *arg;
};

static void maybe_release(ct_rpc_discovery *d) {
  if (d->freed && d->pending == 0)
    free(d);
}

static int endpoint_used(const ct_rpc_discovery *d, const char *ep,
                         const member *except) {
  for (const member *m = d->members; m != NULL; m = m->next)
    if (m != except && m->endpoint != NULL && strcmp(m->endpoint, ep) == 0)
      return 1;
  return 0;
}

/* 1 if `m` is the first member naming its endpoint (duplicates, e.g. an
 * old and a new node of one server, count once). */
static int first_of_endpoint(const ct_rpc_discovery *d, const member *m) {
  if (m->endpoint == NULL)
    return 0;
  const member *k = d->members;
  while (k != m && (k->endpoint == NULL || strcmp(k->endpoint, m->endpoint)))
    k = k->next;
  return k == m;
}

size_t ct_rpc_discovery_members(const ct_rpc_discovery *d) {
  return ct_rpc_discovery_endpoints(d, NULL, 0);
}

size_t ct_rpc_discovery_nodes(const ct_rpc_discovery *d) {
  size_t n = 0;
  for (const member *m = d->members; m != NULL; m = m->next)
    n++;
  return n;
}

size_t ct_rpc_discovery_endpoints(const ct_rpc_discovery *d, const char **out,
                                  size_t max) {
  size_t n = 0;
  for (const member *m = d->members; m != NULL; m = m->next) {
    if (!first_of_endpoint(d, m))
      continue;
    if (n < max)
      out[n] = m->endpoint;
    n++;
  }
  return n;
}

static ct_step consume(ct_result r, void *arg) {
  (void)arg;
  ct_failure_free(r.failure);
  ct_value_free(r.value);
  return ct_pass(CT_NONE);
}

static void fire_ready(ct_rpc_discovery *d, ct_failure *f) {
  ready_waiter *list = d->waiters;
  d->waiters = NULL;
  while (list != NULL) {
    ready_waiter *w = list;
    list = w->next;
    if (f == NULL)
      ct_deferred_callback(w->d, CT_NONE);
    else
      ct_deferred_errback(w->d, ct_failure_copy(f));
    ct_deferred_unref(w->d);
    free(w);
  }
  ct_failure_free(f);
}

static void changed(ct_rpc_discovery *d) {
  if (d->listed && d->reads == 0)
    fire_ready(d, NULL);
  if (d->cb != NULL)
    d->cb(d, ct_rpc_discovery_members(d), d->unreachable, d->arg);
}

static void drop_member(ct_rpc_discovery *d, member *m) {
  if (m->endpoint != NULL && !endpoint_used(d, m->endpoint, m)) {
    int rc = ct_rpc_client_disconnect(d->c, m->endpoint);
    ct_log(CT_LOG_INFO, MODULE, "%s: member %s left%s", d->service, m->endpoint,
           rc == 0 ? "" : " (it was not connected)");
  }
  free(m->name);
  free(m->endpoint);
  free(m);
}

typedef struct member_read {
  ct_rpc_discovery *d;
  char *name;
} member_read;

static ct_step member_read_done(ct_result r, void *arg) {
  member_read *mr = arg;
  ct_rpc_discovery *d = mr->d;
  d->pending--;
  d->reads--;
  member *m = NULL;
  if (!d->freed)
    for (m = d->members; m != NULL && strcmp(m->name, mr->name) != 0;
         m = m->next)
      ;
  if (r.failure != NULL) {
    /* Gone since it was listed, or ZooKeeper went away: the next list
     * (on change or reconnect) decides. */
    if (m != NULL && !ct_failure_check(r.failure, CT_ZK_ENONODE))
      ct_log_failure(CT_LOG_WARN, MODULE, "reading a member", r.failure);
    ct_failure_free(r.failure);
  } else if (m != NULL && m->endpoint == NULL) {
    const ct_zk_node *n = r.value.ptr;
    char ep[700];
    ct_failure *err = NULL;
    if (ct_service_member_endpoint(n->data, n->len, ep, sizeof ep, &err) != 0) {
      ct_log(CT_LOG_WARN, MODULE, "%s: skipping member %s: %s", d->service,
             m->name, err->message);
      ct_failure_free(err);
    } else if ((m->endpoint = strdup(ep)) != NULL && !endpoint_used(d, ep, m)) {
      int rc = ct_rpc_client_connect(d->c, ep);
      if (rc != 0)
        ct_log(CT_LOG_WARN, MODULE, "%s: cannot add member %s: %s", d->service,
               ep, ct_strerror(rc));
      else
        ct_log(CT_LOG_INFO, MODULE, "%s: member %s joined", d->service, ep);
    }
    ct_value_free(r.value);
  } else {
    ct_value_free(r.value);
  }
  free(mr->name);
  free(mr);
  if (!d->freed)
    changed(d);
  maybe_release(d);
  return ct_pass(CT_NONE);
}

static void read_member(ct_rpc_discovery *d, member *m) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", d->path, m->name);
  member_read *mr = calloc(1, sizeof *mr);
  ct_deferred *x = ct_zk_get(d->zk, path);
  if (mr == NULL || x == NULL || (mr->name = strdup(m->name)) == NULL) {
    free(mr);
    if (x != NULL) {
      ct_deferred_add_both(x, consume, NULL);
      ct_deferred_unref(x);
    }
    return;
  }
  mr->d = d;
  d->pending++;
  d->reads++;
  ct_deferred_add_both(x, member_read_done, mr);
  ct_deferred_unref(x);
}

static void log_kept(ct_rpc_discovery *d, const ct_failure *f) {
  char list[1024] = "";
  size_t o = 0;
  for (const member *m = d->members; m != NULL && o < sizeof list - 64;
       m = m->next)
    if (m->endpoint != NULL)
      o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "",
                            m->endpoint);
  ct_log(CT_LOG_WARN, MODULE,
         "%s: ZooKeeper unreachable (%s); keeping the last known %zu "
         "member(s): %s",
         d->service, f->message ? f->message : "?", ct_rpc_discovery_members(d),
         o ? list : "(none)");
}

static void on_children(ct_zk_watch *w, const ct_zk_children *kids,
                        const ct_failure *f, void *arg) {
  (void)w;
  ct_rpc_discovery *d = arg;
  if (f != NULL) {
    if (!d->unreachable) {
      d->unreachable = 1;
      log_kept(d, f);
      if (d->cb != NULL)
        d->cb(d, ct_rpc_discovery_members(d), 1, d->arg);
    }
    return;
  }
  if (d->unreachable)
    ct_log(CT_LOG_INFO, MODULE, "%s: ZooKeeper is back; watching members",
           d->service);
  d->unreachable = 0;
  for (member *m = d->members; m != NULL; m = m->next)
    m->seen = 0;
  for (size_t i = 0; kids != NULL && i < kids->n; i++) {
    member *m = d->members;
    while (m != NULL && strcmp(m->name, kids->names[i]) != 0)
      m = m->next;
    if (m == NULL) {
      m = calloc(1, sizeof *m);
      if (m == NULL || (m->name = strdup(kids->names[i])) == NULL) {
        free(m);
        continue;
      }
      m->next = d->members;
      d->members = m;
      read_member(d, m);
    } else if (m->endpoint == NULL) {
      read_member(d, m); /* an earlier read failed */
    }
    m->seen = 1;
  }
  member **pp = &d->members;
  while (*pp != NULL) {
    member *m = *pp;
    if (!m->seen) {
      *pp = m->next;
      drop_member(d, m);
    } else {
      pp = &m->next;
    }
  }
  d->listed = 1;
  changed(d);
}

ct_rpc_discovery *ct_rpc_discovery_new(ct_zk *zk, const char *service,
                                       ct_rpc_client *client,
                                       ct_failure **err) {
  ct_rpc_discovery *d = calloc(1, sizeof *d);
  if (d == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "out of memory");
    return NULL;
  }
  if (ct_service_path(service, d->path, sizeof d->path) != 0) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL,
                            "bad service name '%s': 1..100 characters of "
                            "A-Z a-z 0-9 . _ -",
                            service ? service : "(null)");
    free(d);
    return NULL;
  }
  snprintf(d->service, sizeof d->service, "%s", service);
  d->zk = zk;
  d->c = client;
  d->watch = ct_zk_watch_children(zk, d->path, on_children, d);
  if (d->watch == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "out of memory");
    free(d);
    return NULL;
  }
  return d;
}

static ct_step connect_failed(ct_failure *f, void *arg) {
  ct_rpc_discovery *d = arg;
  d->pending--;
  if (!d->freed && !d->listed)
    fire_ready(d, f);
  else
    ct_failure_free(f);
  maybe_release(d);
  return ct_pass(CT_NONE);
}

static ct_step connect_ok(ct_value v, void *arg) {
  ct_rpc_discovery *d = arg;
  ct_value_free(v);
  d->pending--;
  maybe_release(d);
  return ct_pass(CT_NONE);
}

ct_deferred *ct_rpc_discovery_ready(ct_rpc_discovery *d) {
  ct_deferred *x = ct_deferred_new(NULL, NULL);
  if (x == NULL)
    return NULL;
  if (d->listed && d->reads == 0) {
    ct_deferred_callback(x, CT_NONE);
    return x;
  }
  ready_waiter *w = calloc(1, sizeof *w);
  ct_deferred *c = ct_zk_connected(d->zk);
  if (w == NULL || c == NULL) {
    free(w);
    if (c != NULL) {
      ct_deferred_add_both(c, consume, NULL);
      ct_deferred_unref(c);
    }
    ct_deferred_errback(x, ct_failure_new(CT_ENOMEM, "out of memory"));
    return x;
  }
  w->d = ct_deferred_ref(x);
  w->next = d->waiters;
  d->waiters = w;
  /* The session's bounded wait: its failure names the ensemble. */
  d->pending++;
  ct_deferred_add_callbacks(c, connect_ok, connect_failed, d);
  ct_deferred_unref(c);
  return x;
}

void ct_rpc_discovery_on_change(ct_rpc_discovery *d, ct_rpc_discovery_cb cb,
                                void *arg) {
  d->cb = cb;
  d->arg = arg;
}

void ct_rpc_discovery_free(ct_rpc_discovery *d) {
  if (d == NULL)
    return;
  ct_zk_watch_cancel(d->watch);
  d->watch = NULL;
  d->freed = 1;
  d->cb = NULL;
  while (d->members != NULL) {
    member *m = d->members;
    d->members = m->next;
    free(m->name);
    free(m->endpoint);
    free(m);
  }
  fire_ready(
      d, ct_failure_new(CT_ECANCELLED, "discovery of %s stopped", d->service));
  maybe_release(d);
}
