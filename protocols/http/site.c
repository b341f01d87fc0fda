/*
 * site.c: a site -- routes, limits, the access log, and the factory whose
 * protocols (server.c) serve it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctwist/http.h"
#include "protocols/http/internal.h"

static void limits_fill(ct_http_limits *l) {
  if (l->max_header_line == 0)
    l->max_header_line = 8 * 1024;
  if (l->max_header_total == 0)
    l->max_header_total = 64 * 1024;
  if (l->max_body == 0)
    l->max_body = 16u * 1024 * 1024;
  if (!(l->header_timeout > 0))
    l->header_timeout = 20;
  if (!(l->idle_timeout > 0))
    l->idle_timeout = 75;
  if (l->max_pipeline == 0)
    l->max_pipeline = 16;
}

const ct__http_route *ct__http_find_route(const ct_http_site *site,
                                          const char *path) {
  /* Routes are kept longest prefix first. */
  for (size_t i = 0; i < site->nroutes; i++) {
    const ct__http_route *rt = &site->routes[i];
    if (rt->len == 1 || (strncmp(path, rt->prefix, rt->len) == 0 &&
                         (path[rt->len] == 0 || path[rt->len] == '/')))
      return rt;
  }
  return NULL;
}

const char *ct__http_site_date(ct_http_site *site) {
  time_t now = time(NULL);
  if (now != site->date_sec) {
    site->date_sec = now;
    ct_http_format_date((int64_t)now, site->date);
  }
  return site->date;
}

/* Common Log Format; the request line's bytes are escaped. */
void ct__http_access_log(ct_http_site *site, const ct_http_request *q,
                         int status, uint64_t sent) {
  FILE *out = site->access_log;
  if (out == NULL)
    return;
  char host[CT_ADDRESS_STRLEN] = "-";
  if (q->peer.family == CT_ADDRESS_IPV4 || q->peer.family == CT_ADDRESS_IPV6) {
    ct_address_format(&q->peer, host, sizeof host);
    /* Drop the port: CLF has the host only. */
    char *colon = strrchr(host, ':');
    if (colon != NULL)
      *colon = 0;
    if (host[0] == '[') {
      memmove(host, host + 1, strlen(host));
      host[strlen(host) - 1] = 0;
    }
  }
  char when[64];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", &tm);
  char target[1024];
  size_t o = 0;
  for (const char *p = q->target ? q->target : "-"; *p && o + 5 < sizeof target;
       p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
      o += (size_t)snprintf(target + o, sizeof target - o, "\\x%02x", ch);
    else
      target[o++] = (char)ch;
  }
  target[o] = 0;
  char bytes[32] = "-";
  if (sent > 0)
    snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)sent);
  fprintf(out, "%s - - [%s] \"%s %s HTTP/%d.%d\" %d %s\n", host, when,
          q->method, target, q->version_major, q->version_minor, status, bytes);
  fflush(out);
}

/* ------------------------------------------------------------------- site */

ct_http_site *ct_http_site_new(ct_reactor *r) {
  if (r == NULL)
    return NULL;
  ct_http_site *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->reactor = r;
  limits_fill(&s->limits);
  s->server_name = strdup("ctwist");
  if (s->server_name == NULL) {
    free(s);
    return NULL;
  }
  ct_factory_init(&s->factory, NULL, &ct__http_server_ops, ct__http_conn_size,
                  s);
  return s;
}

static int route_add(ct_http_site *s, const char *prefix, ct_http_handler_cb fn,
                     void *arg, int stream) {
  if (s == NULL || prefix == NULL || prefix[0] != '/' || fn == NULL)
    return CT_EINVAL;
  size_t len = strlen(prefix);
  while (len > 1 && prefix[len - 1] == '/')
    len--; /* "/api/" routes like "/api" */
  ct__http_route *rs = realloc(s->routes, (s->nroutes + 1) * sizeof *rs);
  if (rs == NULL)
    return CT_ENOMEM;
  s->routes = rs;
  char *copy = strndup(prefix, len);
  if (copy == NULL)
    return CT_ENOMEM;
  /* Keep the array sorted longest prefix first (insertion). */
  size_t i = s->nroutes;
  while (i > 0 && rs[i - 1].len < len) {
    rs[i] = rs[i - 1];
    i--;
  }
  rs[i] = (ct__http_route){copy, len, fn, arg, stream};
  s->nroutes++;
  return 0;
}

int ct_http_site_route(ct_http_site *s, const char *prefix,
                       ct_http_handler_cb fn, void *arg) {
  return route_add(s, prefix, fn, arg, 0);
}

int ct_http_site_route_stream(ct_http_site *s, const char *prefix,
                              ct_http_handler_cb fn, void *arg) {
  return route_add(s, prefix, fn, arg, 1);
}

void ct_http_site_set_limits(ct_http_site *s, const ct_http_limits *limits) {
  if (s == NULL)
    return;
  if (limits != NULL)
    s->limits = *limits;
  else
    memset(&s->limits, 0, sizeof s->limits);
  limits_fill(&s->limits);
}

void ct_http_site_get_limits(const ct_http_site *s, ct_http_limits *out) {
  if (s != NULL && out != NULL)
    *out = s->limits;
}

void ct_http_site_set_access_log(ct_http_site *s, FILE *out) {
  if (s != NULL)
    s->access_log = out;
}

int ct_http_site_set_server_name(ct_http_site *s, const char *name) {
  if (s == NULL)
    return CT_EINVAL;
  char *copy = NULL;
  if (name != NULL && (copy = strdup(name)) == NULL)
    return CT_ENOMEM;
  free(s->server_name);
  s->server_name = copy;
  return 0;
}

ct_factory *ct_http_site_factory(ct_http_site *s) {
  return s == NULL ? NULL : &s->factory;
}

void ct_http_site_set_user(ct_http_site *s, void *user) {
  if (s != NULL)
    s->user = user;
}

void *ct_http_site_user(const ct_http_site *s) {
  return s == NULL ? NULL : s->user;
}

ct_http_site *ct_http_site_of(ct_factory *f) {
  return f != NULL && f->protocol_ops == &ct__http_server_ops ? f->user : NULL;
}

size_t ct_http_site_connections(const ct_http_site *s) {
  return s == NULL ? 0 : s->live;
}

unsigned long ct_http_site_requests(const ct_http_site *s) {
  return s == NULL ? 0 : s->requests;
}

void ct_http_site_free(ct_http_site *s) {
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->nroutes; i++)
    free(s->routes[i].prefix);
  free(s->routes);
  free(s->server_name);
  free(s);
}
