/*
 * Error codes and failures.
 *
 * The code list lives in one X-macro (error.h) so that names, values and
 * messages cannot drift apart.  A failure owns its message and its cause;
 * creating one never fails from the caller's point of view: on allocation
 * failure a static out-of-memory failure is returned, which
 * ct_failure_free() recognises and leaves alone.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/error.h"

static ct_failure ct__oom_failure = {
    CT_ENOMEM, "ctwist", (char *)"out of memory while creating a failure",
    NULL,      __FILE__, __LINE__,
    -1};

const char *ct_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define CT_ERR_MSG_(name, value, msg)                                          \
  case value:                                                                  \
    return msg;
    CT_ERRNO_MAP(CT_ERR_MSG_)
#undef CT_ERR_MSG_
  default:
    break;
  }
  if (err < 0 && err > -4000) {
    /* strerror_r (GNU) returns a static or caller-buffer string. */
    static _Thread_local char buf[128];
    return strerror_r(-err, buf, sizeof(buf));
  }
  return "unknown error";
}

const char *ct_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
#define CT_ERR_NAME_(name, value, msg)                                         \
  case value:                                                                  \
    return #name;
    CT_ERRNO_MAP(CT_ERR_NAME_)
#undef CT_ERR_NAME_
  default:
    return "UNKNOWN";
  }
}

static ct_failure *failure_vnew(const char *file, int line, const char *domain,
                                int code, ct_failure *cause, const char *fmt,
                                va_list ap) {
  ct_failure *f = malloc(sizeof(*f));
  if (f == NULL) {
    ct_failure_free(cause);
    return &ct__oom_failure;
  }
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  f->code = code;
  f->domain = domain != NULL ? domain : "ctwist";
  f->message = msg;
  f->cause = cause;
  f->file = file;
  f->line = line;
  f->detail = -1;
  return f;
}

ct_failure *ct_failure_new_at(const char *file, int line, const char *domain,
                              int code, ct_failure *cause, const char *fmt,
                              ...) {
  va_list ap;
  va_start(ap, fmt);
  ct_failure *f = failure_vnew(file, line, domain, code, cause, fmt, ap);
  va_end(ap);
  return f;
}

ct_failure *ct_failure_copy(const ct_failure *f) {
  /* Iterative, like ct_failure_free(): copy each link and append it. */
  ct_failure *head = NULL, **tail = &head;
  for (; f != NULL; f = f->cause) {
    ct_failure *c =
        ct_failure_new_at(f->file, f->line, f->domain, f->code, NULL, "%s",
                          f->message != NULL ? f->message : "");
    *tail = c;
    if (c == &ct__oom_failure)
      break; /* out of memory: a truncated chain ending in the OOM failure */
    c->detail = f->detail;
    tail = &c->cause;
  }
  return head;
}

void ct_failure_free(ct_failure *f) {
  /* Iterative, so that a long cause chain cannot grow the stack. */
  while (f != NULL && f != &ct__oom_failure) {
    ct_failure *next = f->cause;
    free(f->message);
    free(f);
    f = next;
  }
}

int ct_failure_check(const ct_failure *f, int code) {
  for (; f != NULL; f = f->cause)
    if (f->code == code)
      return 1;
  return 0;
}

size_t ct_failure_format(const ct_failure *f, char *buf, size_t len) {
  size_t need = 0;
  int depth = 0;
  for (; f != NULL; f = f->cause, depth++) {
    const char *file = f->file != NULL ? f->file : "?";
    const char *slash = strrchr(file, '/');
    if (slash != NULL)
      file = slash + 1;
    char *out = need < len ? buf + need : NULL;
    size_t room = need < len ? len - need : 0;
    int n = snprintf(
        out, room, "%s[%s] %s: %s (%s:%d)", depth > 0 ? "\n  caused by: " : "",
        f->domain, ct_err_name(f->code),
        f->message != NULL && f->message[0] != '\0' ? f->message
                                                    : ct_strerror(f->code),
        file, f->line);
    if (n > 0)
      need += (size_t)n;
  }
  if (len > 0 && need == 0)
    buf[0] = '\0';
  return need;
}

void ct_failure_print(const ct_failure *f, FILE *out) {
  char small[512];
  size_t need = ct_failure_format(f, small, sizeof(small));
  if (need < sizeof(small)) {
    fprintf(out, "%s\n", small);
    return;
  }
  char *big = malloc(need + 1);
  if (big == NULL) {
    fprintf(out, "%s...\n", small);
    return;
  }
  ct_failure_format(f, big, need + 1);
  fprintf(out, "%s\n", big);
  free(big);
}
