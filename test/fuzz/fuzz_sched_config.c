/*
 * libFuzzer target for ct-sched's config parser (apps/sched).  Whatever
 * parses must be internally consistent: names unique and valid, every
 * schedule computable (a few fire times, non-decreasing), every failure a
 * "file:line: problem" message with the error code it returns.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 8192)
    return 0;
  ct_sched_config cfg;
  ct_failure *err = NULL;
  int rc = ct_sched_config_parse((const char *)data, size, "fuzz", &cfg, &err);
  if (rc != 0) {
    if (err == NULL || err->code != rc ||
        strncmp(err->message, "fuzz:", 5) != 0 || cfg.n != 0 ||
        cfg.tasks != NULL)
      abort();
    ct_failure_free(err);
    return 0;
  }
  if (err != NULL)
    abort();
  for (size_t i = 0; i < cfg.n; i++) {
    const ct_sched_spec *s = &cfg.tasks[i];
    if (s->name == NULL || s->line == NULL || s->lineno < 1)
      abort();
    for (size_t k = 0; k < i; k++) {
      if (strcmp(cfg.tasks[k].name, s->name) == 0)
        abort();
    }
    if (s->action == CT_SCHED_RUN && (s->argv == NULL || s->argv[0] == NULL))
      abort();
    if (s->action != CT_SCHED_RUN && s->endpoint == NULL)
      abort();
    double t[3];
    size_t n = ct_sched_fire_times(s, 1764460800.0, t, 3);
    if ((s->kind == CT_SCHED_DAILY || s->kind == CT_SCHED_CRON) && n == 0)
      abort(); /* a calendar that never matches is rejected by the parser */
    for (size_t k = 1; k < n; k++) {
      if (!(t[k] > t[k - 1]))
        abort();
    }
  }
  ct_sched_config_clear(&cfg);
  return 0;
}
