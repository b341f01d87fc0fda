/* Command-line helpers shared by the bundled programs (not a public API). */
#ifndef CT_APPS_COMMON_CLI_H
#define CT_APPS_COMMON_CLI_H

/*
 * The value of option `name` at argv[*i]: "--name VALUE" (advances *i) or
 * "--name=VALUE".  NULL when argv[*i] is another option; sets *missing
 * when the option is there without a value.
 */
const char *ctapp_opt(int argc, char **argv, int *i, const char *name,
                      int *missing);

#endif
