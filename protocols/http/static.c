/*
 * static.c: a static file tree as a request handler (python -m http.server,
 * twisted.web.static.File): files with Content-Type, ETag and
 * Last-Modified, index.html, directory listings, and traversal refused.
 *
 * The request path is decoded exactly once by the server.  Here a ".."
 * segment is refused before the file system is touched (so "%2e%2e", which
 * the server decoded to "..", is refused too, and "%252e%252e" stays the
 * literal name "%2e%2e"), then the resolved path (realpath) must lie under
 * the resolved root, which catches symbolic links leading out.
 *
 * The open-file cache (nginx's open_file_cache idea): a file that passed
 * those checks is kept open, keyed by the request's path, with its
 * headers, for `cache_validity` seconds of the reactor's clock.  Within
 * that time a request for the same path is answered from the open
 * descriptor with no path resolution, stat or open; after it, the next
 * request checks the path again from scratch.  A cached descriptor is the
 * inode that was checked, so a file replaced, removed or turned into a
 * symbolic link out of the root is served as it was for at most that long
 * (never the new target); a file changed in place is re-checked at once
 * when its size no longer matches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctwist/http.h"
#include "ctwist/log.h"
#include "protocols/http/internal.h"

typedef struct mime_entry {
  char *ext;
  char *type;
} mime_entry;

/* A checked file, open (see the file comment). */
typedef struct fentry {
  struct fentry *next;          /* hash chain */
  struct fentry *newer, *older; /* LRU list */
  char *key;                    /* the request's subpath */
  uint32_t hash;
  double checked; /* reactor time of the full check */
  int fd;
  uint64_t size;
  const char *type; /* in the mime table */
  char etag[64], modified[32];
} fentry;

struct ct_http_static {
  char *root; /* realpath of the root, no trailing '/' (except "/") */
  size_t root_len;
  int index_html, listing, allow_symlinks_out;
  mime_entry *mime;
  size_t nmime;
  /* The open-file cache: off when max_entries is 0. */
  double validity;
  size_t max_entries, nentries, nbuckets;
  fentry **buckets;
  fentry *newest, *oldest;
};

/* Files up to this size are read from a cached descriptor into the
 * response (one pread); larger ones get a dup of it (sendfile). */
#define STATIC_INLINE_MAX (64u * 1024u)

/* Used when mime.types is missing (a minimal container, say). */
static const char *const fallback_mime[][2] = {
    {"html", "text/html"},
    {"htm", "text/html"},
    {"css", "text/css"},
    {"js", "text/javascript"},
    {"mjs", "text/javascript"},
    {"json", "application/json"},
    {"txt", "text/plain"},
    {"md", "text/markdown"},
    {"c", "text/x-csrc"},
    {"h", "text/x-chdr"},
    {"csv", "text/csv"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/vnd.microsoft.icon"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"wasm", "application/wasm"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
};

static int mime_cmp(const void *a, const void *b) {
  return strcasecmp(((const mime_entry *)a)->ext, ((const mime_entry *)b)->ext);
}

static int mime_add(ct_http_static *st, size_t *cap, const char *ext,
                    size_t elen, const char *type, size_t tlen) {
  if (st->nmime == *cap) {
    size_t n = *cap ? *cap * 2 : 256;
    mime_entry *m = realloc(st->mime, n * sizeof *m);
    if (m == NULL)
      return CT_ENOMEM;
    st->mime = m;
    *cap = n;
  }
  char *e = strndup(ext, elen), *t = strndup(type, tlen);
  if (e == NULL || t == NULL) {
    free(e);
    free(t);
    return CT_ENOMEM;
  }
  st->mime[st->nmime++] = (mime_entry){e, t};
  return 0;
}

/* Read a mime.types file ("type ext ext ..." per line, '#' comments).
 * Returns 0, CT_ENOENT when the file cannot be read, CT_ENOMEM. */
static int mime_load(ct_http_static *st, const char *path) {
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return CT_ENOENT;
  size_t cap = 0;
  char line[1024];
  int rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
    char *p = line;
    p += strspn(p, " \t");
    if (*p == '#' || *p == '\n' || *p == 0)
      continue;
    size_t tl = strcspn(p, " \t\r\n");
    const char *type = p;
    p += tl;
    while (rc == 0 && *p) {
      p += strspn(p, " \t\r\n");
      size_t el = strcspn(p, " \t\r\n");
      if (el > 0)
        rc = mime_add(st, &cap, p, el, type, tl);
      p += el;
    }
  }
  fclose(f);
  return rc;
}

static int mime_fallback(ct_http_static *st) {
  size_t cap = 0;
  for (size_t i = 0; i < sizeof fallback_mime / sizeof fallback_mime[0]; i++) {
    const char *e = fallback_mime[i][0], *t = fallback_mime[i][1];
    if (mime_add(st, &cap, e, strlen(e), t, strlen(t)) != 0)
      return CT_ENOMEM;
  }
  return 0;
}

const char *ct_http_static_mime_type(const ct_http_static *st,
                                     const char *name) {
  const char *slash = strrchr(name, '/');
  const char *dot = strrchr(slash ? slash : name, '.');
  if (st == NULL || dot == NULL || dot[1] == 0)
    return "application/octet-stream";
  mime_entry key = {(char *)(dot + 1), NULL};
  const mime_entry *m =
      bsearch(&key, st->mime, st->nmime, sizeof *st->mime, mime_cmp);
  return m != NULL ? m->type : "application/octet-stream";
}

ct_http_static *ct_http_static_new(const char *root,
                                   const ct_http_static_options *o,
                                   ct_failure **err) {
  ct_http_static_options defaults = {0};
  if (o == NULL)
    o = &defaults;
  char *real = root != NULL ? realpath(root, NULL) : NULL;
  struct stat sb;
  if (real == NULL || stat(real, &sb) != 0 || !S_ISDIR(sb.st_mode) ||
      access(real, R_OK | X_OK) != 0) {
    int e = real == NULL ? errno : !S_ISDIR(sb.st_mode) ? ENOTDIR : errno;
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL, "static root '%s': %s",
                            root ? root : "(null)", strerror(e));
    free(real);
    return NULL;
  }
  ct_http_static *st = calloc(1, sizeof *st);
  if (st == NULL) {
    free(real);
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "out of memory");
    return NULL;
  }
  st->root = real;
  st->root_len = strlen(real);
  if (st->root_len == 1)
    st->root_len = 0; /* "/": paths are appended as they are */
  st->index_html = o->index_html >= 0;
  st->listing = o->listing >= 0;
  st->allow_symlinks_out = o->allow_symlinks_out > 0;
  st->validity = o->cache_validity > 0    ? o->cache_validity
                 : o->cache_validity == 0 ? 1.0
                                          : 0;
  st->max_entries = st->validity <= 0       ? 0
                    : o->cache_entries > 0  ? (size_t)o->cache_entries
                    : o->cache_entries == 0 ? 256
                                            : 0;
  if (st->max_entries > 0) {
    st->nbuckets = 16;
    while (st->nbuckets < st->max_entries * 2)
      st->nbuckets *= 2;
    st->buckets = calloc(st->nbuckets, sizeof *st->buckets);
    if (st->buckets == NULL) {
      ct_http_static_free(st);
      if (err != NULL)
        *err = ct_failure_new(CT_ENOMEM, "out of memory");
      return NULL;
    }
  }
  const char *types = o->mime_types ? o->mime_types : "/etc/mime.types";
  int rc = mime_load(st, types);
  if (rc == CT_ENOENT || (rc == 0 && st->nmime == 0))
    rc = mime_fallback(st);
  if (rc != 0) {
    ct_http_static_free(st);
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "out of memory");
    return NULL;
  }
  /* Sorted for bsearch (mime.types lists each extension once). */
  qsort(st->mime, st->nmime, sizeof *st->mime, mime_cmp);
  return st;
}

static void cache_drop(ct_http_static *st, fentry *e);

void ct_http_static_free(ct_http_static *st) {
  if (st == NULL)
    return;
  while (st->oldest != NULL)
    cache_drop(st, st->oldest);
  free(st->buckets);
  for (size_t i = 0; i < st->nmime; i++) {
    free(st->mime[i].ext);
    free(st->mime[i].type);
  }
  free(st->mime);
  free(st->root);
  free(st);
}

/* -------------------------------------------------------------- handler */

static ct_http_reply error(int status, const char *detail) {
  return ct_http_reply_now(ct_http_response_error(status, detail));
}

/* A ".." segment anywhere in the decoded path. */
static int has_dotdot(const char *p) {
  while (*p) {
    while (*p == '/')
      p++;
    size_t n = strcspn(p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return 1;
    p += n;
  }
  return 0;
}

/* Percent-encode a file name for an href (keeps unreserved characters). */
static int url_encode(ct__buf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
               (*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL;
    char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
    if (ct__http_buf_add(b, keep ? (const char *)p : esc, keep ? 1 : 3) != 0)
      return CT_ENOMEM;
  }
  return 0;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static ct_http_reply listing(const char *dir, const char *shown) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return error(errno == EACCES ? 403 : 404, "cannot list the directory");
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    /* A trailing '/' marks directories, as python's listing does. */
    int isdir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
      struct stat sb;
      isdir = fstatat(dirfd(d), e->d_name, &sb, 0) == 0 && S_ISDIR(sb.st_mode);
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof *nn);
      if (nn == NULL) {
        rc = CT_ENOMEM;
        break;
      }
      names = nn;
    }
    size_t len = strlen(e->d_name);
    names[n] = malloc(len + 2);
    if (names[n] == NULL) {
      rc = CT_ENOMEM;
      break;
    }
    memcpy(names[n], e->d_name, len);
    names[n][len] = isdir ? '/' : 0;
    names[n][len + 1] = 0;
    n++;
  }
  closedir(d);
  if (n > 1)
    qsort(names, n, sizeof *names, name_cmp);
  ct__buf b = CT__BUF_INIT;
  char *title = ct__http_html_escape(shown);
  if (rc == 0 && title == NULL)
    rc = CT_ENOMEM;
  if (rc == 0)
    rc = ct__http_buf_printf(&b,
                             "<!DOCTYPE html>\n<html>\n<head>\n<meta "
                             "charset=\"utf-8\">\n<title>Directory listing "
                             "for %s</title>\n</head>\n<body>\n<h1>Directory "
                             "listing for %s</h1>\n<hr>\n<ul>\n",
                             title, title);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    size_t len = strlen(names[i]);
    int isdir = names[i][len - 1] == '/';
    if (isdir)
      names[i][len - 1] = 0;
    char *label = ct__http_html_escape(names[i]);
    rc = label == NULL ? CT_ENOMEM : ct__http_buf_add(&b, "<li><a href=\"", 13);
    if (rc == 0)
      rc = url_encode(&b, names[i]);
    if (rc == 0)
      rc = ct__http_buf_printf(&b, "%s\">%s%s</a></li>\n", isdir ? "/" : "",
                               label, isdir ? "/" : "");
    free(label);
  }
  if (rc == 0)
    rc = ct__http_buf_printf(&b, "</ul>\n<hr>\n</body>\n</html>\n");
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  free(title);
  ct_http_response *r = rc == 0 ? ct_http_response_new(200) : NULL;
  if (r == NULL || ct_http_headers_add(&r->headers, "Content-Type",
                                       "text/html; charset=utf-8") != 0) {
    ct__buf_free(&b);
    ct_http_response_free(r);
    return ct_http_reply_fail(ct_failure_new(CT_ENOMEM, "out of memory"));
  }
  rc = ct_http_response_set_body(r, ct__http_str(&b), b.len);
  ct__buf_free(&b);
  if (rc != 0) {
    ct_http_response_free(r);
    return ct_http_reply_fail(ct_failure_new(CT_ENOMEM, "out of memory"));
  }
  return ct_http_reply_now(r);
}

/* ------------------------------------------------------ open-file cache */

static uint32_t key_hash(const char *k) {
  uint32_t h = 2166136261u;
  for (; *k; k++)
    h = (h ^ (unsigned char)*k) * 16777619u;
  return h;
}

static void lru_unlink(ct_http_static *st, fentry *e) {
  if (e->newer != NULL)
    e->newer->older = e->older;
  else
    st->newest = e->older;
  if (e->older != NULL)
    e->older->newer = e->newer;
  else
    st->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void lru_push(ct_http_static *st, fentry *e) {
  e->older = st->newest;
  e->newer = NULL;
  if (st->newest != NULL)
    st->newest->newer = e;
  st->newest = e;
  if (st->oldest == NULL)
    st->oldest = e;
}

static void cache_drop(ct_http_static *st, fentry *e) {
  fentry **pp = &st->buckets[e->hash & (st->nbuckets - 1)];
  while (*pp != e)
    pp = &(*pp)->next;
  *pp = e->next;
  lru_unlink(st, e);
  st->nentries--;
  close(e->fd);
  free(e->key);
  free(e);
}

/* The entry for `key` still valid at `now`; an expired one is dropped. */
static fentry *cache_find(ct_http_static *st, const char *key, double now) {
  if (st->max_entries == 0)
    return NULL;
  uint32_t h = key_hash(key);
  fentry *e = st->buckets[h & (st->nbuckets - 1)];
  while (e != NULL && (e->hash != h || strcmp(e->key, key) != 0))
    e = e->next;
  if (e == NULL)
    return NULL;
  if (!(now - e->checked < st->validity) || now < e->checked) {
    cache_drop(st, e);
    return NULL;
  }
  lru_unlink(st, e);
  lru_push(st, e);
  return e;
}

/* Keep a copy (dup) of `fd`, checked at `now`, for `key` (replacing an
 * entry of the same key); the least recently used entry goes when full.
 * Failure (no memory, no descriptor left) just leaves it uncached. */
static void cache_put(ct_http_static *st, const char *key, const fentry *info,
                      int fd, double now) {
  if (st->max_entries == 0)
    return;
  fentry *old = cache_find(st, key, now);
  if (old != NULL)
    cache_drop(st, old);
  if (st->nentries >= st->max_entries)
    cache_drop(st, st->oldest);
  fentry *e = malloc(sizeof *e);
  char *k = strdup(key);
  int dfd = e != NULL && k != NULL ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
  if (dfd < 0) {
    free(e);
    free(k);
    return;
  }
  *e = *info;
  e->key = k;
  e->hash = key_hash(key);
  e->checked = now;
  e->fd = dfd;
  e->next = st->buckets[e->hash & (st->nbuckets - 1)];
  st->buckets[e->hash & (st->nbuckets - 1)] = e;
  lru_push(st, e);
  st->nentries++;
}

/* --------------------------------------------------------------- files */

/* A 200 for a file described by `info`; `fd` (taken) is its body, or -1
 * with `data` (taken, info->size bytes) as a memory body. */
static ct_http_reply file_reply(const fentry *info, int fd, char *data) {
  ct_http_response *r = ct_http_response_new(200);
  int rc = r == NULL ? CT_ENOMEM : 0;
  rc = rc ? rc : ct_http_headers_add(&r->headers, "Content-Type", info->type);
  rc = rc ? rc
          : ct_http_headers_add(&r->headers, "Last-Modified", info->modified);
  rc = rc ? rc : ct_http_headers_add(&r->headers, "ETag", info->etag);
  rc = rc ? rc : ct_http_headers_add(&r->headers, "Accept-Ranges", "bytes");
  if (r != NULL && fd >= 0)
    ct_http_response_set_file(r, fd, 0, info->size);
  else if (r != NULL)
    ct_http_response_take_body(r, data, (size_t)info->size);
  else if (fd >= 0)
    close(fd);
  else
    free(data);
  if (rc != 0) {
    ct_http_response_free(r);
    return ct_http_reply_fail(ct_failure_new(CT_ENOMEM, "out of memory"));
  }
  return ct_http_reply_now(r);
}

/* Answer from a cached entry; 0 (and nothing answered) when the file no
 * longer matches it (the caller drops it and checks the path again). */
static int serve_cached(const fentry *e, ct_http_reply *out) {
  if (e->size <= STATIC_INLINE_MAX) {
    char *data = malloc(e->size + 1);
    ssize_t n = data != NULL ? pread(e->fd, data, e->size + 1, 0) : -1;
    if (n != (ssize_t)e->size) { /* changed in place, or no memory */
      free(data);
      return 0;
    }
    *out = file_reply(e, -1, data);
    return 1;
  }
  int fd = fcntl(e->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  *out = file_reply(e, fd, NULL);
  return 1;
}

/* Open `path` (already checked to lie in the root) and answer with it;
 * cache it for `key`. */
static ct_http_reply serve_file(ct_http_static *st, const char *path,
                                const char *key, double now) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return error(errno == EACCES ? 403 : 404,
                 errno == EACCES ? "permission denied" : "no such file");
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return error(403, "not a regular file");
  }
  fentry info = {0};
  info.size = (uint64_t)sb.st_size;
  info.type = ct_http_static_mime_type(st, path);
  snprintf(info.etag, sizeof info.etag, "\"%llx-%llx-%llx\"",
           (unsigned long long)sb.st_ino, (unsigned long long)sb.st_size,
           (unsigned long long)sb.st_mtim.tv_sec * 1000000000ull +
               (unsigned long long)sb.st_mtim.tv_nsec);
  ct_http_format_date((int64_t)sb.st_mtim.tv_sec, info.modified);
  cache_put(st, key, &info, fd, now);
  return file_reply(&info, fd, NULL);
}

/* realpath of `path`, refused (403) outside the root unless allowed.
 * Returns 0 with *out set (free it), or the status to answer. */
static int resolve(const ct_http_static *st, const char *path, char **out) {
  char *real = realpath(path, NULL);
  if (real == NULL)
    return errno == EACCES ? 403 : 404;
  size_t rl = strlen(real);
  int inside =
      st->root_len == 0 ||
      (rl >= st->root_len && memcmp(real, st->root, st->root_len) == 0 &&
       (real[st->root_len] == 0 || real[st->root_len] == '/'));
  if (!inside && !st->allow_symlinks_out) {
    free(real);
    return 403;
  }
  *out = real;
  return 0;
}

static ct_http_reply resolve_error(int status) {
  return error(status, status == 403 ? "the path is not accessible here"
                                     : "no such file");
}

ct_http_reply ct_http_static_handler(ct_http_request *req, void *arg) {
  ct_http_static *st = arg;
  if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
    ct_http_response *r = ct_http_response_error(405, "only GET and HEAD");
    if (r != NULL)
      ct_http_headers_add(&r->headers, "Allow", "GET, HEAD");
    return ct_http_reply_now(r);
  }
  const char *sub = req->subpath;
  if (has_dotdot(sub))
    return error(404, "no such file");
  double now = ct_reactor_seconds(req->reactor);
  fentry *hit = cache_find(st, sub, now);
  if (hit != NULL) {
    ct_http_reply rep;
    if (serve_cached(hit, &rep))
      return rep;
    cache_drop(st, hit);
  }
  size_t slen = strlen(sub);
  char *want = malloc(st->root_len + slen + sizeof "/index.html");
  if (want == NULL)
    return ct_http_reply_fail(ct_failure_new(CT_ENOMEM, "out of memory"));
  memcpy(want, st->root, st->root_len);
  memcpy(want + st->root_len, sub, slen + 1);
  char *real = NULL;
  int status = resolve(st, want, &real);
  if (status != 0) {
    free(want);
    return resolve_error(status);
  }
  struct stat sb;
  ct_http_reply rep;
  if (stat(real, &sb) != 0) {
    rep = error(404, "no such file");
  } else if (S_ISDIR(sb.st_mode)) {
    if (slen == 0 || sub[slen - 1] != '/') {
      /* Relative links in the listing need the trailing '/'. */
      ct__buf loc = CT__BUF_INIT;
      int rc = ct__http_buf_printf(&loc, "%s/%s%s", req->raw_path,
                                   req->query[0] ? "?" : "", req->query);
      rep = rc == 0 ? ct_http_reply_now(
                          ct_http_response_redirect(301, ct__http_str(&loc)))
                    : ct_http_reply_fail(ct_failure_new(CT_ENOMEM, "oom"));
      ct__buf_free(&loc);
    } else {
      strcat(want, "index.html");
      char *index = NULL;
      struct stat ib;
      if (st->index_html && stat(want, &ib) == 0 && S_ISREG(ib.st_mode)) {
        status = resolve(st, want, &index);
        rep = status == 0 ? serve_file(st, index, sub, now)
                          : resolve_error(status);
        free(index);
      } else if (st->listing)
        rep = listing(real, req->path);
      else
        rep = error(403, "directory listing is off");
    }
  } else {
    rep = serve_file(st, real, sub, now);
  }
  free(want);
  free(real);
  return rep;
}
