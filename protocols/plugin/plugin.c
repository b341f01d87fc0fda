/*
 * plugin.c: the plugin descriptor check, the option parser plugins share,
 * and the dlopen loader.
 *
 * The parser is deliberately small: long options only, a flat table, and a
 * failure that quotes the offending argument.  Plugins are configured from
 * a command line typed by a person, so the message matters more than the
 * feature set.
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/plugin.h"

static const char *nonnull(const char *s, const char *dflt) {
  return s != NULL ? s : dflt;
}

int ct_plugin_check(const ct_plugin_descriptor *d, const char *where,
                    ct_failure **err) {
  const char *w = nonnull(where, "(built in)");
  ct_failure *f = NULL;
  if (d == NULL)
    f = ct_failure_new(CT_EINVAL, "plugin %s: no descriptor", w);
  else if (d->abi_version != CT_PLUGIN_ABI_VERSION)
    f = ct_failure_new(CT_EINVAL,
                       "plugin %s: ABI version %d, this ctwist supports %d "
                       "(rebuild the plugin against this ctwist)",
                       w, d->abi_version, CT_PLUGIN_ABI_VERSION);
  else if (d->name == NULL || d->name[0] == '\0')
    f = ct_failure_new(CT_EINVAL, "plugin %s: the descriptor has no name", w);
  else if (d->make_factory == NULL)
    f = ct_failure_new(CT_EINVAL,
                       "plugin %s: the descriptor has no make_factory", w);
  if (f == NULL)
    return 0;
  if (err != NULL)
    *err = f;
  else
    ct_failure_free(f);
  return CT_EINVAL;
}

/* ---------------------------------------------------------- option parser */

static const ct_plugin_option *find_option(const ct_plugin_option *opts,
                                           const char *name, size_t len) {
  for (; opts->name != NULL; opts++)
    if (strlen(opts->name) == len && memcmp(opts->name, name, len) == 0)
      return opts;
  return NULL;
}

static int in_range(const ct_plugin_option *o, double v) {
  return o->min == o->max || (v >= o->min && v <= o->max);
}

/* Store `value` for option `o`; on a bad value return a failure. */
static ct_failure *store(const char *plugin, const ct_plugin_option *o,
                         const char *value) {
  switch (o->kind) {
  case CT_PLUGIN_OPT_STRING:
    *(const char **)o->dest = value;
    return NULL;
  case CT_PLUGIN_OPT_LONG: {
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (value[0] == '\0' || *end != '\0' || errno != 0)
      return ct_failure_new(CT_EINVAL,
                            "plugin %s: option --%s: '%s' is not an integer",
                            plugin, o->name, value);
    if (!in_range(o, (double)v))
      return ct_failure_new(CT_EINVAL,
                            "plugin %s: option --%s: %ld is out of range "
                            "[%.0f, %.0f]",
                            plugin, o->name, v, o->min, o->max);
    *(long *)o->dest = v;
    return NULL;
  }
  case CT_PLUGIN_OPT_DOUBLE: {
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (value[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v))
      return ct_failure_new(CT_EINVAL,
                            "plugin %s: option --%s: '%s' is not a number",
                            plugin, o->name, value);
    if (!in_range(o, v))
      return ct_failure_new(CT_EINVAL,
                            "plugin %s: option --%s: %g is out of range "
                            "[%g, %g]",
                            plugin, o->name, v, o->min, o->max);
    *(double *)o->dest = v;
    return NULL;
  }
  case CT_PLUGIN_OPT_FLAG:
  default:
    return ct_failure_new(CT_EINVAL, "plugin %s: option --%s: bad kind", plugin,
                          o->name);
  }
}

int ct_plugin_parse_options(const ct_plugin_option *opts, int argc, char **argv,
                            ct_failure **err) {
  ct_failure *f = NULL;
  if (opts == NULL || argc < 0 || (argc > 0 && argv == NULL)) {
    f = ct_failure_new(CT_EINVAL, "plugin options: bad arguments");
    goto fail;
  }
  const char *plugin = argc > 0 && argv[0] != NULL ? argv[0] : "?";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a == NULL || strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      f = ct_failure_new(CT_EINVAL, "plugin %s: unexpected argument '%s'",
                         plugin, nonnull(a, "(null)"));
      goto fail;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    const ct_plugin_option *o = find_option(opts, name, len);
    if (o == NULL) {
      f = ct_failure_new(CT_EINVAL, "plugin %s: unknown option '--%.*s'",
                         plugin, (int)len, name);
      goto fail;
    }
    if (o->kind == CT_PLUGIN_OPT_FLAG) {
      if (eq != NULL) {
        f = ct_failure_new(CT_EINVAL, "plugin %s: option --%s takes no value",
                           plugin, o->name);
        goto fail;
      }
      *(int *)o->dest = 1;
      continue;
    }
    const char *value = eq != NULL ? eq + 1 : NULL;
    if (value == NULL) {
      if (i + 1 >= argc) {
        f = ct_failure_new(CT_EINVAL, "plugin %s: option --%s needs a value",
                           plugin, o->name);
        goto fail;
      }
      value = argv[++i];
    }
    if ((f = store(plugin, o, value)) != NULL)
      goto fail;
  }
  return 0;
fail:
  if (err != NULL)
    *err = f;
  else
    ct_failure_free(f);
  return CT_EINVAL;
}

void ct_plugin_print_options(const ct_plugin_option *opts, FILE *out) {
  if (opts == NULL || out == NULL)
    return;
  for (; opts->name != NULL; opts++) {
    const char *arg = opts->kind == CT_PLUGIN_OPT_FLAG     ? ""
                      : opts->kind == CT_PLUGIN_OPT_STRING ? " TEXT"
                                                           : " N";
    char left[64];
    snprintf(left, sizeof left, "--%s%s", opts->name, arg);
    fprintf(out, "  %-24s %s\n", left, nonnull(opts->help, ""));
  }
}

/* ---------------------------------------------------------------- loader */

struct ct_plugin {
  void *handle;
  const ct_plugin_descriptor *desc;
};

ct_plugin *ct_plugin_load(const char *path, ct_failure **err) {
  ct_failure *f = NULL;
  if (path == NULL || path[0] == '\0') {
    f = ct_failure_new(CT_EINVAL, "plugin: empty path");
    goto fail;
  }
  /* RTLD_NOW: unresolved symbols fail here, with a message naming them,
   * rather than crash the service at the first call.  RTLD_LOCAL: two
   * plugins may both define helpers with the same names. */
  dlerror();
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    const char *why = dlerror();
    f = ct_failure_new(CT_ENOENT, "cannot load plugin %s: %s", path,
                       nonnull(why, "unknown error"));
    goto fail;
  }
  dlerror();
  const ct_plugin_descriptor *d = dlsym(h, CT_PLUGIN_SYMBOL);
  if (d == NULL) {
    f = ct_failure_new(CT_ENOTFOUND,
                       "plugin %s does not export the symbol '%s' (declare "
                       "CT_PLUGIN_EXPORT const ct_plugin_descriptor %s)",
                       path, CT_PLUGIN_SYMBOL, CT_PLUGIN_SYMBOL);
    dlclose(h);
    goto fail;
  }
  if (ct_plugin_check(d, path, &f) != 0) {
    dlclose(h);
    goto fail;
  }
  ct_plugin *p = calloc(1, sizeof *p);
  if (p == NULL) {
    dlclose(h);
    f = ct_failure_new(CT_ENOMEM, "plugin %s: out of memory", path);
    goto fail;
  }
  p->handle = h;
  p->desc = d;
  return p;
fail:
  if (err != NULL)
    *err = f;
  else
    ct_failure_free(f);
  return NULL;
}

const ct_plugin_descriptor *ct_plugin_descriptor_of(const ct_plugin *p) {
  return p != NULL ? p->desc : NULL;
}

void ct_plugin_unload(ct_plugin *p) {
  if (p == NULL)
    return;
  dlclose(p->handle);
  free(p);
}
