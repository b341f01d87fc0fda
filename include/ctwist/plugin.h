/**
 * @file plugin.h
 * @brief Service plugins for `ctwistd` (Twisted's twistd plugins): the
 *        descriptor ABI a plugin shared object exports, a small option
 *        parser for plugins, the bundled plugins, and the loader.
 *
 * A plugin turns command-line options into a factory.  It is either built
 * into ctwistd (echo, discard, chargen, daytime, qotd, web) or a shared object
 * that exports one descriptor under the well-known symbol
 * CT_PLUGIN_SYMBOL ("ctwist_plugin"):
 *
 * @code
 *   #include "ctwist/ctwist.h"
 *
 *   static int make(ct_reactor *r, int argc, char **argv, ct_factory **out,
 *                   ct_failure **err) {
 *     ...parse argv with ct_plugin_parse_options(), build a factory...
 *   }
 *   static void destroy(ct_factory *f) { free(f); }
 *
 *   CT_PLUGIN_EXPORT const ct_plugin_descriptor ctwist_plugin = {
 *     .abi_version = CT_PLUGIN_ABI_VERSION,
 *     .name = "upper",
 *     .description = "answers each line upper-cased",
 *     .usage = "[--max-length N]",
 *     .make_factory = make,
 *     .destroy = destroy,
 *   };
 * @endcode
 *
 * Build it with `cc -shared -fPIC plugin.c $(pkg-config --cflags --libs
 * ctwist) -o plugin.so` and run it with `ctwistd --plugin ./plugin.so
 * --listen tcp:8000`.  docs/tutorial.md walks through a complete one.
 *
 * ## Lifetime, as ctwistd drives it
 *  1. the runner loads the plugin and checks `abi_version`;
 *  2. it calls `make_factory` with the reactor and the plugin's own
 *     options; the plugin parses them and either returns 0 with `*out` set,
 *     or a negative ct_err code with `*err` set to a failure naming the bad
 *     option (the runner prints it and exits non-zero).  With `--workers N`
 *     it runs N + 1 times: once in the parent, only to check the options
 *     (that factory is destroyed without serving), then once in every
 *     worker, and again when a worker is restarted.  So `make_factory`
 *     must only parse and build: anything with side effects outside the
 *     factory (files, connections, threads) belongs in the factory's
 *     `start` hook, which runs only in a process that serves;
 *  3. the runner listens on every `--listen` endpoint with that factory
 *     (possibly wrapped by policy factories), runs the reactor, and on
 *     SIGINT/SIGTERM stops listening and closes the live connections;
 *  4. once every connection is gone it calls `destroy(*out)` (if non-NULL),
 *     frees the reactor, and unloads the shared object.
 * Everything a plugin allocates must therefore hang off its factory (use
 * `f->user`); plugins keep no global mutable state.
 *
 * Not thread-safe: plugins run on the reactor thread.
 */
#ifndef CTWIST_PLUGIN_H
#define CTWIST_PLUGIN_H

#include <stddef.h>
#include <stdio.h>

#include "ctwist/error.h"
#include "ctwist/protocol.h"
#include "ctwist/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The descriptor layout version.  A plugin stores the value it was built
 * with in `abi_version`; the runner refuses any other value.  Bumped
 * whenever ct_plugin_descriptor or the calling convention changes.
 */
#define CT_PLUGIN_ABI_VERSION 1

/** The name of the symbol a plugin shared object exports. */
#define CT_PLUGIN_SYMBOL "ctwist_plugin"

/**
 * Marks the descriptor as exported even when the plugin is compiled with
 * -fvisibility=hidden (as CMake targets of this project are).
 */
#define CT_PLUGIN_EXPORT __attribute__((visibility("default")))

/**
 * Build the plugin's factory from its options.
 *
 * @param r     the reactor the service runs on (for timers); borrowed.
 * @param argc  number of entries in `argv`.
 * @param argv  argv[0] is the plugin's name, then its options exactly as
 *              given on the command line (ctwistd has removed its own and
 *              the `--listen` ones).  The strings outlive the factory, so
 *              the plugin may keep pointers to them.
 * @param out   receives the factory (owned by the plugin; it must stay
 *              valid until `destroy` is called on it).
 * @param err   receives a failure on error (the caller frees it); its
 *              message should name the offending option.
 * @return 0, or a negative ct_err code (CT_EINVAL for bad options) with
 *         `*err` set and `*out` untouched.
 */
typedef int (*ct_plugin_make_factory_cb)(ct_reactor *r, int argc, char **argv,
                                         ct_factory **out, ct_failure **err);

/**
 * Release a factory returned by make_factory.  Called after the listening
 * ports are stopped and every connection the factory built is released.
 */
typedef void (*ct_plugin_destroy_cb)(ct_factory *f);

/**
 * What a plugin exports: a constant, statically initialised descriptor.
 * `abi_version` comes first so that the runner can check it before reading
 * anything else.
 */
typedef struct ct_plugin_descriptor {
  int abi_version;         /**< CT_PLUGIN_ABI_VERSION */
  const char *name;        /**< short name ("echo"); required */
  const char *description; /**< one line for `ctwistd --help`; may be NULL */
  const char *usage; /**< plugin options ("[--quote TEXT]"); may be NULL */
  ct_plugin_make_factory_cb make_factory; /**< required */
  ct_plugin_destroy_cb destroy;           /**< NULL: nothing to release */
} ct_plugin_descriptor;

/**
 * Check a descriptor: non-NULL, the right ABI version, a name and a
 * make_factory.  `where` (may be NULL) names its origin (a path) in the
 * message.  Returns 0, or CT_EINVAL with `*err` (if non-NULL) set to a
 * failure saying what is wrong ("plugin ./x.so: ABI version 7, this
 * ctwistd supports 1").
 */
CT_EXTERN int ct_plugin_check(const ct_plugin_descriptor *d, const char *where,
                              ct_failure **err);

/* ---------------------------------------------------------- option parser */

/** Kinds of plugin options. */
typedef enum ct_plugin_option_kind {
  CT_PLUGIN_OPT_FLAG = 0,   /**< no value; sets `*(int *)dest` to 1 */
  CT_PLUGIN_OPT_STRING = 1, /**< `*(const char **)dest` = the argv string */
  CT_PLUGIN_OPT_LONG = 2,   /**< `*(long *)dest`, decimal, within [min, max] */
  CT_PLUGIN_OPT_DOUBLE = 3  /**< `*(double *)dest`, finite, within [min, max] */
} ct_plugin_option_kind;

/**
 * One option a plugin accepts.  Arrays of options end with an entry whose
 * `name` is NULL.
 */
typedef struct ct_plugin_option {
  const char *name; /**< without dashes: "max-length" */
  ct_plugin_option_kind kind;
  void *dest;       /**< where the value goes (see the kinds) */
  double min, max;  /**< range for LONG/DOUBLE; min == max: any */
  const char *help; /**< one line, for usage texts; may be NULL */
} ct_plugin_option;

/**
 * Parse a plugin's options, `argv[1..argc-1]` (argv[0], the plugin name,
 * is used in messages), against `opts`.  Accepted forms: `--name VALUE`,
 * `--name=VALUE`, and `--name` for flags.  Later occurrences override
 * earlier ones.  Destinations of options that do not appear are left as
 * they are, so set defaults first.
 *
 * Returns 0, or CT_EINVAL with `*err` (if non-NULL) set to a failure naming
 * the option: an unknown option ("plugin upper: unknown option
 * '--bogus'"), a positional argument, a missing value, a value given to a
 * flag, a malformed or out-of-range number.  On error some destinations
 * may already be set.
 */
CT_EXTERN int ct_plugin_parse_options(const ct_plugin_option *opts, int argc,
                                      char **argv, ct_failure **err);

/**
 * Write a usage block for `opts` to `out`, one option per line
 * ("  --max-length N   longest line accepted").  NULL arguments: no-op.
 */
CT_EXTERN void ct_plugin_print_options(const ct_plugin_option *opts, FILE *out);

/* --------------------------------------------------------------- bundled */

/**
 * The bundled plugins, in a NULL-terminated array (borrowed, static):
 * echo, discard, chargen, daytime, qotd (option `--quote TEXT`), which
 * wrap the factories of wire.h, message-echo (the message protocol,
 * message.h), rpc (JSON-RPC demo methods, docs/rpc.md) and web (`--path
 * DIR`, the static file server of http.h), all through the same descriptor
 * ABI as external plugins.
 */
CT_EXTERN const ct_plugin_descriptor *const *ct_plugin_builtins(void);

/** The bundled plugin called `name`, or NULL. */
CT_EXTERN const ct_plugin_descriptor *ct_plugin_builtin(const char *name);

/* ---------------------------------------------------------------- loader */

/** A loaded plugin shared object.  Opaque. */
typedef struct ct_plugin ct_plugin;

/**
 * Load the plugin shared object at `path` with dlopen (RTLD_NOW |
 * RTLD_LOCAL; a path without a slash is searched by the dynamic linker, so
 * write "./x.so" for a file in the current directory), find
 * CT_PLUGIN_SYMBOL and check it with ct_plugin_check().
 *
 * Returns the handle, or NULL with `*err` (if non-NULL) set to a failure
 * naming `path` and the problem: CT_ENOENT (the dynamic linker's message:
 * missing file, not a shared object, unresolved symbols), CT_ENOTFOUND (no
 * `ctwist_plugin` symbol) or CT_EINVAL (wrong ABI version or incomplete
 * descriptor).  Free with ct_plugin_unload().
 */
CT_EXTERN ct_plugin *ct_plugin_load(const char *path, ct_failure **err);

/** The descriptor of a loaded plugin (borrowed, valid until unload). */
CT_EXTERN const ct_plugin_descriptor *
ct_plugin_descriptor_of(const ct_plugin *p);

/**
 * Unload: dlclose the shared object and free the handle.  Every factory
 * the plugin built must have been destroyed first.  NULL is a no-op.
 */
CT_EXTERN void ct_plugin_unload(ct_plugin *p);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_PLUGIN_H */
