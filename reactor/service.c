/*
 * Services: per-reactor state owned by modules outside reactor.c (the
 * resolver, the thread pool, the child reaper).  A reactor has a handful at
 * most, so a small array searched linearly is all it needs.  Keeping them
 * here leaves struct ct_reactor unaware of what each one is.
 */
#include <stdlib.h>

#include "reactor/impl.h"

struct ct__service {
  const ct__service_ops *ops;
  void *state;
};

void *ct__reactor_service(ct_reactor *r, const ct__service_ops *ops) {
  if (r == NULL)
    return NULL;
  for (size_t i = 0; i < r->nservices; i++)
    if (r->services[i].ops == ops)
      return r->services[i].state;
  return NULL;
}

int ct__reactor_service_add(ct_reactor *r, const ct__service_ops *ops,
                            void *state) {
  if (r == NULL || ops == NULL)
    return CT_EINVAL;
  if (ct__reactor_service(r, ops) != NULL)
    return CT_EEXIST;
  struct ct__service *s = realloc(r->services, (r->nservices + 1) * sizeof(*s));
  if (s == NULL)
    return CT_ENOMEM;
  r->services = s;
  s[r->nservices++] = (struct ct__service){ops, state};
  return 0;
}

void ct__services_close(ct_reactor *r) {
  /* Index loop: a close op may attach another service (it then gets its
   * close too). */
  for (size_t i = 0; i < r->nservices; i++)
    if (r->services[i].ops->close != NULL)
      r->services[i].ops->close(r, r->services[i].state);
}

void ct__services_free(ct_reactor *r) {
  for (size_t i = r->nservices; i-- > 0;)
    if (r->services[i].ops->free != NULL)
      r->services[i].ops->free(r, r->services[i].state);
  free(r->services);
  r->services = NULL;
  r->nservices = 0;
}
