/*
 * builtin.c: the bundled plugins (echo, discard, chargen, daytime, qotd,
 * message-echo, web; rpc lives in rpc.c).
 *
 * They go through exactly the descriptor ABI an external plugin uses, so
 * ctwistd has one code path for both, and these double as the smallest
 * examples of a plugin.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/http.h"
#include "ctwist/log.h"
#include "ctwist/message.h"
#include "ctwist/plugin.h"
#include "ctwist/wire.h"
#include "protocols/plugin/internal.h"

/* No options: reject anything, naming it. */
static const ct_plugin_option no_options[] = {{.name = NULL}};

static int make_wire(ct_wire_kind kind, const char *quote, int argc,
                     char **argv, ct_factory **out, ct_failure **err) {
  ct_factory *f = malloc(sizeof *f);
  if (f == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "plugin %s: out of memory",
                            ct_wire_kind_name(kind));
    return CT_ENOMEM;
  }
  ct_wire_factory_init(f, kind);
  if (kind == CT_WIRE_QOTD)
    f->user = (void *)(uintptr_t)quote; /* borrowed from argv */
  (void)argc;
  (void)argv;
  *out = f;
  return 0;
}

static void destroy_wire(ct_factory *f) {
  free(f);
}

#define SIMPLE_PLUGIN(id, kind)                                                \
  static int make_##id(ct_reactor *r, int argc, char **argv, ct_factory **out, \
                       ct_failure **err) {                                     \
    (void)r;                                                                   \
    int rc = ct_plugin_parse_options(no_options, argc, argv, err);             \
    if (rc != 0)                                                               \
      return rc;                                                               \
    return make_wire(kind, NULL, argc, argv, out, err);                        \
  }

SIMPLE_PLUGIN(echo, CT_WIRE_ECHO)
SIMPLE_PLUGIN(discard, CT_WIRE_DISCARD)
SIMPLE_PLUGIN(chargen, CT_WIRE_CHARGEN)
SIMPLE_PLUGIN(daytime, CT_WIRE_DAYTIME)

static int make_qotd(ct_reactor *r, int argc, char **argv, ct_factory **out,
                     ct_failure **err) {
  (void)r;
  const char *quote = CT_QOTD_DEFAULT_QUOTE;
  const ct_plugin_option opts[] = {
      {"quote", CT_PLUGIN_OPT_STRING, &quote, 0, 0, "the quote to send"},
      {.name = NULL}};
  int rc = ct_plugin_parse_options(opts, argc, argv, err);
  if (rc != 0)
    return rc;
  return make_wire(CT_WIRE_QOTD, quote, argc, argv, out, err);
}

/* message-echo: every message goes back to its sender (same header and
 * content; the content-length is rewritten by the sender as always), or
 * to every connection when its header has "broadcast": 1. */
static void msg_echo(ct_messenger *m, const ct_msg_header *h,
                     const char *content, size_t len, void *arg) {
  (void)arg;
  int64_t b = 0;
  ct_msg_server *s = ct_messenger_server(m);
  if (s != NULL && ct_msg_header_get_int(h, "broadcast", &b) == 0 && b != 0)
    ct_msg_server_broadcast(s, h, content, len);
  else
    ct_messenger_send(m, h, content, len);
}

static void msg_echo_connect(ct_messenger *m, void *arg) {
  (void)arg;
  ct_log(CT_LOG_DEBUG, "message-echo", "connection %llu from %s",
         (unsigned long long)ct_messenger_id(m), ct_messenger_peer_str(m));
}

static void msg_echo_close(ct_messenger *m, size_t alive,
                           const ct_failure *reason, void *arg) {
  (void)arg;
  ct_log(CT_LOG_DEBUG, "message-echo", "connection %llu closed (%s); %zu left",
         (unsigned long long)ct_messenger_id(m),
         reason != NULL ? ct_err_name(reason->code) : "?", alive);
}

static int make_message_echo(ct_reactor *r, int argc, char **argv,
                             ct_factory **out, ct_failure **err) {
  long max_header = CT_MSG_MAX_HEADER_DEFAULT;
  long max_content = CT_MSG_MAX_CONTENT_DEFAULT;
  const ct_plugin_option opts[] = {
      {"max-header", CT_PLUGIN_OPT_LONG, &max_header, 2, 4294967295.0,
       "largest header in bytes (default 65536)"},
      {"max-content", CT_PLUGIN_OPT_LONG, &max_content, 0, 1073741824.0,
       "largest content in bytes (default 16777216)"},
      {.name = NULL}};
  int rc = ct_plugin_parse_options(opts, argc, argv, err);
  if (rc != 0)
    return rc;
  ct_msg_callbacks cb = {msg_echo_connect, msg_echo, msg_echo_close, NULL,
                         NULL};
  /* The frame deadline keeps its production default here; ctwistd's
   * --frame-timeout/--frame-min-rate override it through a policy. */
  ct_msg_options o = {.limits = {(size_t)max_header, (size_t)max_content},
                      .no_delay = 1};
  ct_msg_server *s = r != NULL ? ct_msg_server_new(r, &cb, &o) : NULL;
  if (s == NULL) {
    if (err != NULL)
      *err = ct_failure_new(r == NULL ? CT_EINVAL : CT_ENOMEM,
                            "plugin message-echo: %s",
                            r == NULL ? "needs a reactor" : "out of memory");
    return r == NULL ? CT_EINVAL : CT_ENOMEM;
  }
  *out = ct_msg_server_factory(s);
  return 0;
}

static void destroy_message_echo(ct_factory *f) {
  ct_msg_server_free(ct_msg_server_of_factory(f));
}

static const ct_plugin_descriptor echo_plugin = {
    CT_PLUGIN_ABI_VERSION,
    "echo",
    "RFC 862: send back what arrives",
    "",
    make_echo,
    destroy_wire};
static const ct_plugin_descriptor discard_plugin = {
    CT_PLUGIN_ABI_VERSION, "discard",   "RFC 863: drop what arrives", "",
    make_discard,          destroy_wire};
static const ct_plugin_descriptor chargen_plugin = {
    CT_PLUGIN_ABI_VERSION,
    "chargen",
    "RFC 864: an endless stream of characters",
    "",
    make_chargen,
    destroy_wire};
static const ct_plugin_descriptor daytime_plugin = {
    CT_PLUGIN_ABI_VERSION,
    "daytime",
    "RFC 867: the date and time, then close",
    "",
    make_daytime,
    destroy_wire};
static const ct_plugin_descriptor qotd_plugin = {
    CT_PLUGIN_ABI_VERSION, "qotd",    "RFC 865: a quote, then close",
    "[--quote TEXT]",      make_qotd, destroy_wire};

static const ct_plugin_descriptor message_echo_plugin = {
    CT_PLUGIN_ABI_VERSION,
    "message-echo",
    "message protocol (docs/message-protocol.md): send each message back, "
    "or to all with \"broadcast\": 1",
    "[--max-header N] [--max-content N]",
    make_message_echo,
    destroy_message_echo};

/* web: a static file server (python -m http.server done properly). */
typedef struct web_service {
  ct_http_static *files;
  FILE *log;        /* the access log when it is a file we opened */
  rpc_service *rpc; /* --rpc: the rpc plugin's methods at POST /rpc */
} web_service;

static void destroy_web(ct_factory *f) {
  ct_http_site *site = ct_http_site_of(f);
  web_service *w = ct_http_site_user(site);
  ct_http_site_free(site);
  ct__rpc_service_free(w->rpc);
  ct_http_static_free(w->files);
  if (w->log != NULL)
    fclose(w->log);
  free(w);
}

static int make_web(ct_reactor *r, int argc, char **argv, ct_factory **out,
                    ct_failure **err) {
  const char *path = ".", *log = "-";
  int allow_out = 0, no_listing = 0, no_index = 0, rpc = 0;
  long max_body = 16L * 1024 * 1024;
  double file_cache = 1;
  const ct_plugin_option opts[] = {
      {"path", CT_PLUGIN_OPT_STRING, &path, 0, 0, "directory to serve [.]"},
      {"access-log", CT_PLUGIN_OPT_STRING, &log, 0, 0,
       "Common Log Format file, '-' for stdout, 'none' [-]"},
      {"allow-symlinks-out", CT_PLUGIN_OPT_FLAG, &allow_out, 0, 0,
       "follow symbolic links leading outside the directory"},
      {"no-listing", CT_PLUGIN_OPT_FLAG, &no_listing, 0, 0,
       "answer 403 instead of listing directories"},
      {"no-index", CT_PLUGIN_OPT_FLAG, &no_index, 0, 0,
       "do not serve index.html for directories"},
      {"max-body", CT_PLUGIN_OPT_LONG, &max_body, 1, 1e12,
       "largest request body accepted, bytes [16 MiB]"},
      {"file-cache", CT_PLUGIN_OPT_DOUBLE, &file_cache, 0, 3600,
       "seconds an open, checked file is served before its path is "
       "checked again; 0: no cache [1]"},
      {"rpc", CT_PLUGIN_OPT_FLAG, &rpc, 0, 0,
       "also serve the rpc plugin's JSON-RPC methods at POST /rpc"},
      {NULL, 0, NULL, 0, 0, NULL}};
  int rc = ct_plugin_parse_options(opts, argc, argv, err);
  if (rc != 0)
    return rc;
  ct_http_static_options so = {0};
  so.allow_symlinks_out = allow_out;
  so.listing = no_listing ? -1 : 0;
  so.index_html = no_index ? -1 : 0;
  so.cache_validity = file_cache > 0 ? file_cache : -1;
  web_service *w = calloc(1, sizeof *w);
  ct_http_site *site = ct_http_site_new(r);
  if (w == NULL || site == NULL) {
    free(w);
    ct_http_site_free(site);
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "plugin web: out of memory");
    return CT_ENOMEM;
  }
  ct_failure *f = NULL;
  w->files = ct_http_static_new(path, &so, &f);
  if (w->files == NULL) {
    if (err != NULL)
      *err = ct_failure_wrap("plugin", CT_EINVAL, f, "plugin web: --path %s",
                             path);
    else
      ct_failure_free(f);
    free(w);
    ct_http_site_free(site);
    return CT_EINVAL;
  }
  if (strcmp(log, "-") == 0) {
    ct_http_site_set_access_log(site, stdout);
  } else if (strcmp(log, "none") != 0) {
    w->log = fopen(log, "ae");
    if (w->log == NULL) {
      if (err != NULL)
        *err = ct_failure_new(CT_EINVAL, "plugin web: --access-log %s: %s", log,
                              strerror(errno));
      ct_http_static_free(w->files);
      free(w);
      ct_http_site_free(site);
      return CT_EINVAL;
    }
    ct_http_site_set_access_log(site, w->log);
  }
  ct_http_limits limits;
  ct_http_site_get_limits(site, &limits);
  limits.max_body = (size_t)max_body;
  ct_http_site_set_limits(site, &limits);
  ct_http_site_set_user(site, w);
  if (rpc) {
    w->rpc = ct__rpc_service_new(r, NULL, 32);
    if (w->rpc == NULL ||
        ct_http_site_route(site, "/rpc", ct_rpc_http_handler,
                           ct__rpc_service_server(w->rpc)) != 0) {
      if (err != NULL)
        *err = ct_failure_new(CT_ENOMEM, "plugin web: out of memory");
      destroy_web(ct_http_site_factory(site));
      return CT_ENOMEM;
    }
  }
  ct_http_site_route(site, "/", ct_http_static_handler, w->files);
  *out = ct_http_site_factory(site);
  return 0;
}

static const ct_plugin_descriptor web_plugin = {
    CT_PLUGIN_ABI_VERSION,
    "web",
    "HTTP/1.1 static file server with directory listings (--rpc: and "
    "JSON-RPC at POST /rpc)",
    "[--path DIR] [--access-log FILE|-|none] [--allow-symlinks-out] "
    "[--no-listing] [--no-index] [--max-body N] [--file-cache SECONDS] "
    "[--rpc]",
    make_web,
    destroy_web};

static const ct_plugin_descriptor *const builtins[] = {
    &echo_plugin,    &discard_plugin, &chargen_plugin,
    &daytime_plugin, &qotd_plugin,    &message_echo_plugin,
    &ct__rpc_plugin, &web_plugin,     NULL};

const ct_plugin_descriptor *const *ct_plugin_builtins(void) {
  return builtins;
}

const ct_plugin_descriptor *ct_plugin_builtin(const char *name) {
  if (name == NULL)
    return NULL;
  for (size_t i = 0; builtins[i] != NULL; i++)
    if (strcmp(builtins[i]->name, name) == 0)
      return builtins[i];
  return NULL;
}
