/*
 * builtin.c: the bundled plugins (echo, discard, chargen, daytime, qotd;
 * rpc lives in rpc.c).
 *
 * They go through exactly the descriptor ABI an external plugin uses, so
 * ctwistd has one code path for both, and these double as the smallest
 * examples of a plugin.
 */
#include <stdlib.h>
#include <string.h>

#include "ctwist/plugin.h"
#include "ctwist/wire.h"
#include "protocols/plugin/internal.h"

/* No options: reject anything, naming it. */
static const ct_plugin_option no_options[] = {
    {NULL, CT_PLUGIN_OPT_FLAG, NULL, 0, 0, NULL}};

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
      {NULL, CT_PLUGIN_OPT_FLAG, NULL, 0, 0, NULL}};
  int rc = ct_plugin_parse_options(opts, argc, argv, err);
  if (rc != 0)
    return rc;
  return make_wire(CT_WIRE_QOTD, quote, argc, argv, out, err);
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

static const ct_plugin_descriptor *const builtins[] = {&echo_plugin,
                                                       &discard_plugin,
                                                       &chargen_plugin,
                                                       &daytime_plugin,
                                                       &qotd_plugin,
                                                       &ct__rpc_plugin,
                                                       NULL};

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
