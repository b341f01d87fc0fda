/* Command-line helpers shared by the bundled programs (cli.h). */
#include "cli.h"

#include <string.h>

const char *ctapp_opt(int argc, char **argv, int *i, const char *name,
                      int *missing) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (a == NULL || strncmp(a, name, n) != 0)
    return NULL;
  if (a[n] == '=')
    return a + n + 1;
  if (a[n] != '\0')
    return NULL;
  if (*i + 1 >= argc) {
    *missing = 1;
    return NULL;
  }
  return argv[++*i];
}
