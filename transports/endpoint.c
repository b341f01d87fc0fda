/*
 * Endpoint description strings (Twisted's strports syntax).
 *
 * Parsing runs in three steps.  The tokenizer splits the description into
 * arguments exactly as Twisted's _tokenize/_parse do: `:` ends an argument,
 * the first `=` of an argument separates key from value (later ones are
 * literal), and a backslash makes the next character literal.  Then each
 * positional argument is given the keyword name of its slot (Twisted binds
 * positionals to the parser function's parameters, which is the same
 * thing), so that one code path validates both spellings.  Finally a table
 * per (role, kind) says which keywords are allowed and what is required.
 *
 * Every error message has the shape "<kind> endpoint: <problem>; expected
 * <form>" so that a user who mistyped a configuration line sees both what
 * was wrong and what would have been right.
 */
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "ctwist/endpoint.h"

/* ------------------------------------------------------------- field table */

typedef enum field_id {
  F_RAW = 0, /* no struct field: kept in params only (ssl extras) */
  F_PORT,
  F_INTERFACE,
  F_BACKLOG,
  F_REUSEPORT,
  F_NODELAY,
  F_PATH,
  F_MODE,
  F_LOCKFILE,
  F_HOST,
  F_TIMEOUT,
  F_BINDADDR,
  F_MAXPACKET,
  F_PRIVKEY,
  F_CERTKEY,
  F_COUNT
} field_id;

static const struct {
  const char *key;
  field_id id;
} field_names[] = {
    {"port", F_PORT},
    {"interface", F_INTERFACE},
    {"backlog", F_BACKLOG},
    {"reuseport", F_REUSEPORT},
    {"nodelay", F_NODELAY},
    {"path", F_PATH},
    {"address", F_PATH},
    {"mode", F_MODE},
    {"lockfile", F_LOCKFILE},
    {"host", F_HOST},
    {"timeout", F_TIMEOUT},
    {"bindAddress", F_BINDADDR},
    {"maxPacketSize", F_MAXPACKET},
    {"privateKey", F_PRIVKEY},
    {"certKey", F_CERTKEY},
};

static field_id field_lookup(const char *key) {
  for (size_t i = 0; i < sizeof(field_names) / sizeof(field_names[0]); i++) {
    if (strcmp(field_names[i].key, key) == 0) {
      return field_names[i].id;
    }
  }
  return F_RAW;
}

/* What one (role, kind) accepts.  `pos` names the positional slots in
 * order; `keys` lists the allowed keywords (NULL-terminated). */
typedef struct kind_spec {
  const char *name;
  ct_endpoint_kind kind;
  int accept_unknown; /* ssl: TLS options are validated by the TLS module */
  const char *const *pos;
  const char *const *keys;
  const char *usage;
} kind_spec;

static const char *const tcp_pos[] = {"port", "interface", "backlog", NULL};
static const char *const tcp_keys[] = {"port",      "interface", "backlog",
                                       "reuseport", "nodelay",   NULL};
static const char *const tcp6_pos[] = {"port", "backlog", "interface", NULL};
static const char *const unix_pos[] = {"address", "mode", "backlog", "lockfile",
                                       NULL};
static const char *const unix_keys[] = {"address", "path",     "mode",
                                        "backlog", "lockfile", NULL};
static const char *const udp_pos[] = {"port", "interface", "maxPacketSize",
                                      NULL};
static const char *const udp_keys[] = {"port", "interface", "maxPacketSize",
                                       "reuseport", NULL};
static const char *const ssl_pos[] = {
    "port",    "privateKey",     "certKey",      "sslmethod", "interface",
    "backlog", "extraCertChain", "dhParameters", NULL};
static const char *const ssl_keys[] = {"port",      "interface", "backlog",
                                       "reuseport", "nodelay",   "privateKey",
                                       "certKey",   NULL};

static const char *const ctcp_pos[] = {"host", "port", NULL};
static const char *const ctcp_keys[] = {"host",        "port",    "timeout",
                                        "bindAddress", "nodelay", NULL};
static const char *const cunix_pos[] = {"path", NULL};
static const char *const cunix_keys[] = {"path", "address", "timeout",
                                         "lockfile", NULL};
static const char *const cssl_keys[] = {"host",        "port",    "timeout",
                                        "bindAddress", "nodelay", "privateKey",
                                        "certKey",     NULL};
static const char *const cudp_keys[] = {"host", "port", "bindAddress", NULL};

static const kind_spec server_specs[] = {
    {"tcp", CT_ENDPOINT_TCP, 0, tcp_pos, tcp_keys,
     "tcp:PORT[:interface=ADDR][:backlog=N][:reuseport=0|1][:nodelay=0|1]"},
    {"tcp6", CT_ENDPOINT_TCP6, 0, tcp6_pos, tcp_keys,
     "tcp6:PORT[:backlog=N][:interface=ADDR][:reuseport=0|1][:nodelay=0|1]"},
    {"unix", CT_ENDPOINT_UNIX, 0, unix_pos, unix_keys,
     "unix:PATH[:mode=OCTAL][:backlog=N][:lockfile=0|1]"},
    {"udp", CT_ENDPOINT_UDP, 0, udp_pos, udp_keys,
     "udp:PORT[:interface=ADDR][:maxPacketSize=N][:reuseport=0|1]"},
    {"ssl", CT_ENDPOINT_SSL, 1, ssl_pos, ssl_keys,
     "ssl:PORT[:privateKey=FILE][:certKey=FILE][:interface=ADDR]"
     "[:backlog=N][:KEY=VALUE...]"},
};

static const kind_spec client_specs[] = {
    {"tcp", CT_ENDPOINT_TCP, 0, ctcp_pos, ctcp_keys,
     "tcp:host=HOST:port=PORT[:timeout=SECONDS][:bindAddress=ADDR]"
     "[:nodelay=0|1]"},
    {"tcp6", CT_ENDPOINT_TCP6, 0, ctcp_pos, ctcp_keys,
     "tcp6:host=HOST:port=PORT[:timeout=SECONDS][:bindAddress=ADDR]"
     "[:nodelay=0|1]"},
    {"unix", CT_ENDPOINT_UNIX, 0, cunix_pos, cunix_keys,
     "unix:path=PATH[:timeout=SECONDS][:lockfile=0|1]"},
    {"udp", CT_ENDPOINT_UDP, 0, ctcp_pos, cudp_keys,
     "udp:host=HOST:port=PORT[:bindAddress=ADDR]"},
    {"ssl", CT_ENDPOINT_SSL, 1, ctcp_pos, cssl_keys,
     "ssl:host=HOST:port=PORT[:timeout=SECONDS][:bindAddress=ADDR]"
     "[:KEY=VALUE...]"},
};

#define NSPECS (sizeof(server_specs) / sizeof(server_specs[0]))

/* ------------------------------------------------------------------ errors */

/* Values are quoted in messages; a fuzzer's megabyte of junk is cut short. */
#define QUOTE_MAX 64

static void quote(char *dst, size_t dlen, const char *s) {
  size_t n = strlen(s);
  if (n <= QUOTE_MAX) {
    snprintf(dst, dlen, "%s", s);
  } else {
    snprintf(dst, dlen, "%.*s...", QUOTE_MAX, s);
  }
}

typedef struct parse_ctx {
  const kind_spec *spec; /* NULL until the kind is known */
  int client;
  ct_failure **err;
} parse_ctx;

static int fail(parse_ctx *c, const char *fmt, ...) CT_PRINTF(2, 3);

static int fail(parse_ctx *c, const char *fmt, ...) {
  if (c->err == NULL) {
    return CT_EBADENDPOINT;
  }
  char problem[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(problem, sizeof(problem), fmt, ap);
  va_end(ap);
  if (c->spec != NULL) {
    *c->err =
        ct_failure_new_at(__FILE__, __LINE__, "endpoint", CT_EBADENDPOINT, NULL,
                          "%s%s endpoint: %s; expected %s", c->spec->name,
                          c->client ? " client" : "", problem, c->spec->usage);
  } else {
    *c->err = ct_failure_new_at(
        __FILE__, __LINE__, "endpoint", CT_EBADENDPOINT, NULL,
        "%s endpoint: %s; expected one of tcp:, tcp6:, unix:, udp:, ssl: "
        "followed by arguments, e.g. %s",
        c->client ? "client" : "server", problem,
        c->client ? "tcp:host=HOST:port=PORT" : "tcp:PORT");
  }
  return CT_EBADENDPOINT;
}

static int fail_oom(parse_ctx *c) {
  if (c->err != NULL) {
    *c->err = ct_failure_new_at(__FILE__, __LINE__, "endpoint", CT_ENOMEM, NULL,
                                "out of memory parsing an endpoint");
  }
  return CT_ENOMEM;
}

/* --------------------------------------------------------------- tokenizer */

typedef struct arg {
  char *key; /* NULL for a positional argument */
  char *value;
} arg;

typedef struct arglist {
  arg *v;
  size_t n, cap;
} arglist;

static void args_free(arglist *a) {
  for (size_t i = 0; i < a->n; i++) {
    free(a->v[i].key);
    free(a->v[i].value);
  }
  free(a->v);
  a->v = NULL;
  a->n = a->cap = 0;
}

/*
 * Split `desc` as Twisted does.  After a `:` (and at the start) both `:` and
 * `=` are operators; after an `=` only `:` is, so "a=b=c" is key "a" with
 * value "b=c".  A trailing backslash is an error (Twisted raises
 * StopIteration there).
 */
static int tokenize(parse_ctx *c, const char *desc, arglist *out) {
  size_t n = strlen(desc);
  char *buf = malloc(n + 1);
  if (buf == NULL) {
    return fail_oom(c);
  }
  size_t len = 0;
  char *key = NULL;
  int seen_eq = 0;
  for (size_t i = 0;; i++) {
    char ch = desc[i];
    if (ch == '\\') {
      if (desc[i + 1] == '\0') {
        free(buf);
        free(key);
        return fail(c, "description ends with a lone backslash (escape a "
                       "backslash as \\\\)");
      }
      buf[len++] = desc[++i];
      continue;
    }
    if (ch == '=' && !seen_eq) {
      buf[len] = '\0';
      key = strdup(buf);
      if (key == NULL) {
        free(buf);
        return fail_oom(c);
      }
      len = 0;
      seen_eq = 1;
      continue;
    }
    if (ch == ':' || ch == '\0') {
      buf[len] = '\0';
      if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 8;
        arg *v = realloc(out->v, cap * sizeof(*v));
        if (v == NULL) {
          free(buf);
          free(key);
          return fail_oom(c);
        }
        out->v = v;
        out->cap = cap;
      }
      char *value = strdup(buf);
      if (value == NULL) {
        free(buf);
        free(key);
        return fail_oom(c);
      }
      out->v[out->n].key = key;
      out->v[out->n].value = value;
      out->n++;
      key = NULL;
      len = 0;
      seen_eq = 0;
      if (ch == '\0') {
        break;
      }
      continue;
    }
    buf[len++] = ch;
  }
  free(buf);
  return 0;
}

/* ------------------------------------------------------------- conversion */

/* Decimal digits only (no sign, no spaces, no hex), within [lo, hi]. */
static int parse_uint(const char *s, long lo, long hi, long *out) {
  if (*s == '\0' || strlen(s) > 12) {
    return -1;
  }
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') {
      return -1;
    }
    v = v * 10 + (*p - '0');
  }
  if (v < lo || v > hi) {
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_octal(const char *s, unsigned *out) {
  if (*s == '\0' || strlen(s) > 5) {
    return -1;
  }
  unsigned v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '7') {
      return -1;
    }
    v = v * 8 + (unsigned)(*p - '0');
  }
  if (v > 07777) {
    return -1;
  }
  *out = v;
  return 0;
}

/* A plain decimal number of seconds (digits, an optional fraction) between
 * 1 ms and 10^9 s: the range keeps ct_endpoint_format() free of exponents. */
static int parse_seconds(const char *s, double *out) {
  int digits = 0, dots = 0;
  if (strlen(s) > 32) {
    return -1;
  }
  for (const char *p = s; *p; p++) {
    if (*p >= '0' && *p <= '9') {
      digits++;
    } else if (*p == '.' && dots == 0) {
      dots++;
    } else {
      return -1;
    }
  }
  if (digits == 0) {
    return -1;
  }
  double v = strtod(s, NULL);
  if (!(v >= 0.001 && v <= 1e9)) {
    return -1;
  }
  *out = v;
  return 0;
}

/* 1 if `s` is a numeric address of `family` (AF_UNSPEC: v4 or v6). */
static int numeric_address(const char *s, int family) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = family;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  if (*s == '\0' || strlen(s) > 100 || getaddrinfo(s, "0", &hints, &res) != 0) {
    return 0;
  }
  freeaddrinfo(res);
  return 1;
}

#define UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* ------------------------------------------------------------- the parser */

static int set_str(parse_ctx *c, char **dst, const char *v) {
  free(*dst);
  *dst = strdup(v);
  return *dst == NULL ? fail_oom(c) : 0;
}

static int add_param(parse_ctx *c, ct_endpoint *e, const char *key,
                     const char *value) {
  ct_endpoint_param *p = realloc(e->params, (e->nparams + 1) * sizeof(*p));
  if (p == NULL) {
    return fail_oom(c);
  }
  e->params = p;
  p[e->nparams].key = strdup(key);
  p[e->nparams].value = strdup(value);
  if (p[e->nparams].key == NULL || p[e->nparams].value == NULL) {
    free(p[e->nparams].key);
    free(p[e->nparams].value);
    return fail_oom(c);
  }
  e->nparams++;
  return 0;
}

static int key_allowed(const kind_spec *s, const char *key) {
  for (const char *const *k = s->keys; *k; k++) {
    if (strcmp(*k, key) == 0) {
      return 1;
    }
  }
  if (s->accept_unknown) {
    /* ssl accepts any option, but not the fields that belong to the other
     * role or to other kinds: those are surely mistakes. */
    return field_lookup(key) == F_RAW;
  }
  return 0;
}

static void list_keys(const kind_spec *s, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (const char *const *k = s->keys; *k && used < len; k++) {
    int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", *k);
    if (n < 0) {
      break;
    }
    used += (size_t)n;
  }
}

static int set_field(parse_ctx *c, ct_endpoint *e, field_id id, const char *key,
                     const char *v) {
  char q[QUOTE_MAX + 8];
  quote(q, sizeof(q), v);
  long n;
  switch (id) {
  case F_RAW:
    return 0;
  case F_PORT:
    if (c->client) {
      if (parse_uint(v, 1, 65535, &n) != 0) {
        return fail(c, "port '%s' is not a number in 1..65535", q);
      }
    } else if (parse_uint(v, 0, 65535, &n) != 0) {
      return fail(c, "port '%s' is not a number in 0..65535", q);
    }
    e->port = (int)n;
    return 0;
  case F_INTERFACE:
    if (*v == '\0') {
      return 0; /* Twisted's default: every address */
    }
    if (e->kind == CT_ENDPOINT_TCP6 ? !numeric_address(v, AF_INET6)
                                    : !numeric_address(v, AF_UNSPEC)) {
      return fail(c, "interface '%s' is not a numeric %s address", q,
                  e->kind == CT_ENDPOINT_TCP6 ? "IPv6" : "IPv4 or IPv6");
    }
    return set_str(c, &e->interface, v);
  case F_BINDADDR:
    if (!numeric_address(v,
                         e->kind == CT_ENDPOINT_TCP6 ? AF_INET6 : AF_UNSPEC)) {
      return fail(c, "bindAddress '%s' is not a numeric address", q);
    }
    return set_str(c, &e->bind_address, v);
  case F_BACKLOG:
    if (parse_uint(v, 0, 65535, &n) != 0) {
      return fail(c, "backlog '%s' is not a number in 0..65535", q);
    }
    e->backlog = (int)n;
    return 0;
  case F_MAXPACKET:
    if (parse_uint(v, 1, 65535, &n) != 0) {
      return fail(c, "maxPacketSize '%s' is not a number in 1..65535", q);
    }
    e->max_packet_size = (int)n;
    return 0;
  case F_REUSEPORT:
  case F_LOCKFILE:
  case F_NODELAY:
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
      return fail(c, "%s '%s' is not 0 or 1", key, q);
    }
    *(id == F_REUSEPORT ? &e->reuseport
      : id == F_NODELAY ? &e->nodelay
                        : &e->lockfile) = (v[0] == '1');
    return 0;
  case F_MODE:
    if (parse_octal(v, &e->mode) != 0) {
      return fail(c, "mode '%s' is not an octal file mode in 0..7777", q);
    }
    return 0;
  case F_TIMEOUT:
    if (parse_seconds(v, &e->timeout) != 0) {
      return fail(c,
                  "timeout '%s' is not a number of seconds in "
                  "0.001..1000000000",
                  q);
    }
    return 0;
  case F_PATH: {
    int abstract = (v[0] == '@');
    const char *name = v + abstract;
    if (*name == '\0') {
      return fail(c, "%s is empty", abstract ? "abstract socket name" : "path");
    }
    size_t len = strlen(name);
    if (len > UNIX_PATH_MAX) {
      return fail(c, "path is too long (%zu bytes, at most %zu)", len,
                  (size_t)UNIX_PATH_MAX);
    }
    e->abstract = abstract;
    return set_str(c, &e->path, name);
  }
  case F_HOST:
    if (*v == '\0') {
      return fail(c, "host is empty");
    }
    if (strlen(v) > 255) {
      return fail(c, "host '%s' is longer than 255 bytes", q);
    }
    return set_str(c, &e->host, v);
  case F_PRIVKEY:
  case F_CERTKEY:
    if (*v == '\0') {
      return fail(c, "%s is empty", key);
    }
    return set_str(c, id == F_PRIVKEY ? &e->private_key : &e->cert_key, v);
  case F_COUNT:
    break;
  }
  return 0;
}

/* Apply one argument under its keyword name; `seen` catches repeats. */
static int apply(parse_ctx *c, ct_endpoint *e, const char *key, const char *v,
                 unsigned *seen) {
  char q[QUOTE_MAX + 8];
  if (!key_allowed(c->spec, key)) {
    char keys[256];
    list_keys(c->spec, keys, sizeof(keys));
    quote(q, sizeof(q), key);
    return fail(c, "unknown option '%s' (known: %s)", q, keys);
  }
  field_id id = field_lookup(key);
  if (id != F_RAW) {
    if (*seen & (1u << id)) {
      return fail(c, "%s is given twice", key);
    }
    *seen |= 1u << id;
  } else {
    for (size_t i = 0; i < e->nparams; i++) {
      if (strcmp(e->params[i].key, key) == 0) {
        quote(q, sizeof(q), key);
        return fail(c, "%s is given twice", q);
      }
    }
  }
  int rc = set_field(c, e, id, key, v);
  if (rc != 0) {
    return rc;
  }
  return add_param(c, e, key, v);
}

static int parse(const char *desc, ct_endpoint *e, ct_failure **err,
                 int client) {
  parse_ctx c = {NULL, client, err};
  arglist a = {NULL, 0, 0};
  int rc;

  memset(e, 0, sizeof(*e));
  if (err != NULL) {
    *err = NULL;
  }
  if (desc == NULL || *desc == '\0') {
    return fail(&c, "the description is empty");
  }
  if ((rc = tokenize(&c, desc, &a)) != 0) {
    goto out;
  }
  if (a.n == 0) { /* cannot happen: a description has at least one field */
    rc = fail(&c, "the description is empty");
    goto out;
  }
  if (a.v[0].key != NULL) {
    char q[QUOTE_MAX + 8];
    quote(q, sizeof(q), a.v[0].key);
    rc = fail(&c, "the description starts with option '%s' instead of a kind",
              q);
    goto out;
  }
  const kind_spec *specs = client ? client_specs : server_specs;
  for (size_t i = 0; i < NSPECS; i++) {
    if (strcasecmp(specs[i].name, a.v[0].value) == 0) {
      c.spec = &specs[i];
    }
  }
  if (c.spec == NULL) {
    char q[QUOTE_MAX + 8];
    quote(q, sizeof(q), a.v[0].value);
    rc = fail(&c, "unknown kind '%s'", q);
    goto out;
  }

  e->kind = c.spec->kind;
  e->is_client = client;
  e->backlog = CT_ENDPOINT_DEFAULT_BACKLOG;
  e->timeout = CT_ENDPOINT_DEFAULT_TIMEOUT;
  e->mode = CT_ENDPOINT_DEFAULT_MODE;
  e->lockfile = client ? 0 : 1;
  e->nodelay = 1;
  e->max_packet_size = CT_ENDPOINT_DEFAULT_MAX_PACKET;

  /* Keywords first, so that the positional rule below can see whether a
   * host was given by name. */
  unsigned seen = 0;
  size_t npos = 0;
  for (size_t i = 1; i < a.n; i++) {
    if (a.v[i].key == NULL) {
      npos++;
    } else if ((rc = apply(&c, e, a.v[i].key, a.v[i].value, &seen)) != 0) {
      goto out;
    }
  }
  size_t slot = 0;
  for (size_t i = 1; i < a.n; i++) {
    if (a.v[i].key != NULL) {
      continue;
    }
    const char *name = c.spec->pos[slot];
    if (name == NULL) {
      char q[QUOTE_MAX + 8];
      quote(q, sizeof(q), a.v[i].value);
      rc = fail(&c, "too many positional arguments (at '%s')", q);
      goto out;
    }
    /* Twisted's _parseClientTCP: a lone positional is the port when the
     * host was given by keyword ("tcp:host=h:80"). */
    if (client && npos == 1 && strcmp(name, "host") == 0 &&
        (seen & (1u << F_HOST))) {
      name = "port";
    }
    slot++;
    if ((rc = apply(&c, e, name, a.v[i].value, &seen)) != 0) {
      goto out;
    }
  }

  /* Required fields. */
  if (e->kind == CT_ENDPOINT_UNIX) {
    if (!(seen & (1u << F_PATH))) {
      rc = fail(&c, "missing path");
    }
  } else {
    if (client && !(seen & (1u << F_HOST))) {
      rc = fail(&c, "missing host");
    } else if (!(seen & (1u << F_PORT))) {
      rc = fail(&c, "missing port");
    }
  }

out:
  args_free(&a);
  if (rc != 0) {
    ct_endpoint_clear(e);
  }
  return rc;
}

int ct_endpoint_parse_server(const char *desc, ct_endpoint *out,
                             ct_failure **err) {
  return parse(desc, out, err, 0);
}

int ct_endpoint_parse_client(const char *desc, ct_endpoint *out,
                             ct_failure **err) {
  return parse(desc, out, err, 1);
}

void ct_endpoint_clear(ct_endpoint *e) {
  if (e == NULL) {
    return;
  }
  free(e->interface);
  free(e->host);
  free(e->bind_address);
  free(e->path);
  free(e->private_key);
  free(e->cert_key);
  for (size_t i = 0; i < e->nparams; i++) {
    free(e->params[i].key);
    free(e->params[i].value);
  }
  free(e->params);
  memset(e, 0, sizeof(*e));
}

const char *ct_endpoint_kind_name(ct_endpoint_kind kind) {
  switch (kind) {
  case CT_ENDPOINT_TCP:
    return "tcp";
  case CT_ENDPOINT_TCP6:
    return "tcp6";
  case CT_ENDPOINT_UNIX:
    return "unix";
  case CT_ENDPOINT_UDP:
    return "udp";
  case CT_ENDPOINT_SSL:
    return "ssl";
  case CT_ENDPOINT_NONE:
    break;
  }
  return "none";
}

const char *ct_endpoint_get_param(const ct_endpoint *e, const char *key) {
  if (e == NULL || key == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < e->nparams; i++) {
    if (strcmp(e->params[i].key, key) == 0) {
      return e->params[i].value;
    }
  }
  return NULL;
}

/* ------------------------------------------------------------- formatting */

/* An snprintf-like appender that keeps counting past the end of `buf`. */
typedef struct outbuf {
  char *buf;
  size_t len, used;
} outbuf;

static void put_char(outbuf *o, char ch) {
  if (o->used + 1 < o->len) {
    o->buf[o->used] = ch;
  }
  o->used++;
}

static void put_raw(outbuf *o, const char *s) {
  for (; *s; s++) {
    put_char(o, *s);
  }
}

static void put_escaped(outbuf *o, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == ':' || *s == '=') {
      put_char(o, '\\');
    }
    put_char(o, *s);
  }
}

static void put_kv(outbuf *o, const char *key, const char *value) {
  put_char(o, ':');
  put_escaped(o, key);
  put_char(o, '=');
  put_escaped(o, value);
}

static void put_int(outbuf *o, const char *key, long v, int octal) {
  char num[32];
  snprintf(num, sizeof(num), octal ? "%lo" : "%ld", v);
  put_kv(o, key, num);
}

int ct_endpoint_format(const ct_endpoint *e, char *buf, size_t len) {
  if (e == NULL || e->kind == CT_ENDPOINT_NONE || e->kind > CT_ENDPOINT_SSL ||
      (buf == NULL && len > 0)) {
    return CT_EINVAL;
  }
  outbuf o = {buf, len, 0};
  put_raw(&o, ct_endpoint_kind_name(e->kind));
  if (e->kind == CT_ENDPOINT_UNIX) {
    if (e->path == NULL) {
      return CT_EINVAL;
    }
    put_raw(&o, e->is_client ? ":path=" : ":");
    if (e->abstract) {
      put_char(&o, '@');
    }
    put_escaped(&o, e->path);
    if (!e->is_client) {
      if (e->mode != CT_ENDPOINT_DEFAULT_MODE) {
        put_int(&o, "mode", (long)e->mode, 1);
      }
      if (e->backlog != CT_ENDPOINT_DEFAULT_BACKLOG) {
        put_int(&o, "backlog", e->backlog, 0);
      }
      if (!e->lockfile) {
        put_raw(&o, ":lockfile=0");
      }
    } else if (e->lockfile) {
      put_raw(&o, ":lockfile=1");
    }
  } else if (e->is_client) {
    if (e->host == NULL) {
      return CT_EINVAL;
    }
    put_kv(&o, "host", e->host);
    put_int(&o, "port", e->port, 0);
    if (e->bind_address != NULL) {
      put_kv(&o, "bindAddress", e->bind_address);
    }
    if (!e->nodelay && e->kind != CT_ENDPOINT_UDP) {
      put_raw(&o, ":nodelay=0");
    }
  } else {
    put_char(&o, ':');
    char num[16];
    snprintf(num, sizeof(num), "%d", e->port);
    put_raw(&o, num);
    if (e->interface != NULL) {
      put_kv(&o, "interface", e->interface);
    }
    if (e->kind != CT_ENDPOINT_UDP &&
        e->backlog != CT_ENDPOINT_DEFAULT_BACKLOG) {
      put_int(&o, "backlog", e->backlog, 0);
    }
    if (e->kind == CT_ENDPOINT_UDP &&
        e->max_packet_size != CT_ENDPOINT_DEFAULT_MAX_PACKET) {
      put_int(&o, "maxPacketSize", e->max_packet_size, 0);
    }
    if (e->reuseport) {
      put_raw(&o, ":reuseport=1");
    }
    if (!e->nodelay && e->kind != CT_ENDPOINT_UDP) {
      put_raw(&o, ":nodelay=0");
    }
  }
  if (e->is_client && e->kind != CT_ENDPOINT_UDP &&
      e->timeout != CT_ENDPOINT_DEFAULT_TIMEOUT) {
    /* The shortest text that reads back as the same double. */
    char num[40];
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(num, sizeof(num), "%.*g", prec, e->timeout);
      if (strchr(num, 'e') == NULL && strtod(num, NULL) == e->timeout) {
        break;
      }
    }
    put_kv(&o, "timeout", num);
  }
  if (e->kind == CT_ENDPOINT_SSL) {
    if (e->private_key != NULL) {
      put_kv(&o, "privateKey", e->private_key);
    }
    if (e->cert_key != NULL) {
      put_kv(&o, "certKey", e->cert_key);
    }
    for (size_t i = 0; i < e->nparams; i++) {
      if (field_lookup(e->params[i].key) == F_RAW) {
        put_kv(&o, e->params[i].key, e->params[i].value);
      }
    }
  }
  if (len > 0) {
    o.buf[o.used < len ? o.used : len - 1] = '\0';
  }
  return o.used > INT_MAX ? CT_ERANGE : (int)o.used;
}

/* -------------------------------------------------------------- resolving */

static int resolve_fail(ct_failure **err, int code, const char *fmt, ...)
    CT_PRINTF(3, 4);

static int resolve_fail(ct_failure **err, int code, const char *fmt, ...) {
  if (err != NULL) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    *err = ct_failure_new_at(__FILE__, __LINE__, "endpoint", code, NULL, "%s",
                             msg);
  }
  return code;
}

/* A numeric address (AI_NUMERICHOST: getaddrinfo never does a lookup). */
static int lookup(const char *host, int port, int family, int socktype,
                  struct sockaddr_storage *ss, socklen_t *len,
                  ct_failure **err) {
  struct addrinfo hints, *res = NULL;
  char serv[16];
  snprintf(serv, sizeof(serv), "%d", port);
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = family;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
  int gai = getaddrinfo(host, serv, &hints, &res);
  if (gai != 0 || res == NULL) {
    return resolve_fail(err, CT_EDNS, "cannot resolve '%s': %s", host,
                        gai != 0 ? gai_strerror(gai) : "no address");
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

int ct_endpoint_resolve(const ct_endpoint *e, struct sockaddr_storage *ss,
                        socklen_t *len, ct_failure **err) {
  if (err != NULL) {
    *err = NULL;
  }
  if (e == NULL || ss == NULL || len == NULL || e->kind == CT_ENDPOINT_NONE) {
    return resolve_fail(err, CT_EINVAL, "cannot resolve a cleared endpoint");
  }
  memset(ss, 0, sizeof(*ss));
  int socktype = e->kind == CT_ENDPOINT_UDP ? SOCK_DGRAM : SOCK_STREAM;
  if (e->kind == CT_ENDPOINT_UNIX) {
    struct sockaddr_un *sun = (struct sockaddr_un *)ss;
    size_t n = e->path ? strlen(e->path) : 0;
    if (n == 0 || n > UNIX_PATH_MAX) {
      return resolve_fail(err, CT_ENAMETOOLONG,
                          "unix path must be 1..%zu bytes",
                          (size_t)UNIX_PATH_MAX);
    }
    sun->sun_family = AF_UNIX;
    if (e->abstract) {
      /* The abstract namespace: a leading NUL, and the length counts
       * exactly the name (no terminator). */
      memcpy(sun->sun_path + 1, e->path, n);
      *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
      memcpy(sun->sun_path, e->path, n + 1);
      *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
  }
  if (!e->is_client) {
    if (e->interface == NULL) {
      if (e->kind == CT_ENDPOINT_TCP6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons((uint16_t)e->port);
        *len = sizeof(*s6);
      } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        s4->sin_port = htons((uint16_t)e->port);
        *len = sizeof(*s4);
      }
      return 0;
    }
    return lookup(e->interface, e->port,
                  e->kind == CT_ENDPOINT_TCP6 ? AF_INET6 : AF_UNSPEC, socktype,
                  ss, len, err);
  }
  /* A client: numeric addresses only.  Names are looked up by the
   * reactor's asynchronous resolver (ct_resolve, resolve.h), never with a
   * blocking call here. */
  int family = e->kind == CT_ENDPOINT_TCP6 ? AF_INET6 : AF_UNSPEC;
  if (numeric_address(e->host, family)) {
    return lookup(e->host, e->port, family, socktype, ss, len, err);
  }
  return resolve_fail(err, CT_EDNS,
                      "'%s' is a host name: ct_endpoint_resolve() takes "
                      "numeric addresses only; look names up with "
                      "ct_resolve() (resolve.h)",
                      e->host);
}

int ct_endpoint_resolve_bind(const ct_endpoint *e, struct sockaddr_storage *ss,
                             socklen_t *len, ct_failure **err) {
  if (err != NULL) {
    *err = NULL;
  }
  if (e == NULL || ss == NULL || len == NULL || e->kind == CT_ENDPOINT_NONE) {
    return resolve_fail(err, CT_EINVAL, "cannot resolve a cleared endpoint");
  }
  memset(ss, 0, sizeof(*ss));
  if (e->bind_address == NULL) {
    *len = 0;
    return 0;
  }
  return lookup(
      e->bind_address, 0, e->kind == CT_ENDPOINT_TCP6 ? AF_INET6 : AF_UNSPEC,
      e->kind == CT_ENDPOINT_UDP ? SOCK_DGRAM : SOCK_STREAM, ss, len, err);
}
