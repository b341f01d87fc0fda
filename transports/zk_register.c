/*
 * zk_register.c: ephemeral sequential nodes kept alive through connection
 * loss and session expiry (ct_zk_register(), ctwist/zk.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "transports/zk_internal.h"

/*
 * A registration moves between G_IDLE (no node known), G_BUSY (one request
 * chain in flight) and G_LIVE (its node exists, in this session).  Every
 * (re)creation starts with a look at the parent's children for our ID, so
 * that a create whose answer was lost (CONNECTION_LOSS) or a node left by
 * an earlier session is found rather than duplicated:
 *   children(parent) -> none with ID: create(parent/ID-, ephemeral seq)
 *                    -> one with ID: exists(it) -> owner is this session:
 *                                                  adopt it
 *                                               -> otherwise: delete it,
 *                                                  then look again
 */

static void reg_look(ct_zk_registration *g);

void ct__zk_free_reg(ct_zk_registration *g) {
  free(g->parent);
  free(g->data);
  free(g->path);
  free(g->candidate);
  free(g);
}

void ct__zk_reap_regs(ct_zk *z) {
  ct_zk_registration **pp = &z->regs;
  while (*pp != NULL) {
    ct_zk_registration *g = *pp;
    if (g->unregistering != NULL && g->inflight == 0) {
      *pp = g->next;
      ct_deferred *d = g->unregistering;
      ct__zk_free_reg(g);
      if (!ct_deferred_called(d))
        ct_deferred_callback(d, CT_NONE);
      ct_deferred_unref(d);
    } else {
      pp = &g->next;
    }
  }
}

static void reg_settle(ct_zk_registration *g) {
  if (g->inflight > 0)
    g->inflight--;
}

/* The chain ended without a node; try again on the next connect, or now
 * when kicked meanwhile. */
static void reg_idle(ct_zk_registration *g) {
  g->state = G_IDLE;
  if (g->again) {
    g->again = 0;
    ct__zk_reg_kick(g);
  }
}

static void reg_live(ct_zk_registration *g, const char *path) {
  free(g->path);
  g->path = strdup(path);
  g->state = g->path != NULL ? G_LIVE : G_IDLE;
  ct_log(CT_LOG_INFO, MODULE, "registered %s (session 0x%llx)", path,
         (unsigned long long)g->zk->session_id);
  if (g->unregistering != NULL)
    ct__zk_reg_kick(g); /* delete it now */
}

static int reg_gone(ct_zk_registration *g, int rc) {
  reg_settle(g);
  if (rc == ZCLOSING || g->zk->replacing || g->zk->state == CT_ZK_CLOSED)
    return 1;
  return 0;
}

static void reg_created(int rc, const char *value, const void *data) {
  ct_zk_registration *g = (ct_zk_registration *)data;
  if (reg_gone(g, rc))
    return;
  if (rc == ZOK) {
    g->creates++;
    reg_live(g, value);
  } else if (rc == ZNONODE) {
    g->again = 1; /* the parent went away: create it again */
    reg_idle(g);
  } else {
    /* CONNECTION_LOSS: it may exist; the next look finds it. */
    ct_log(CT_LOG_WARN, MODULE, "create under %s: %s; will look for %s",
           g->parent, zerror(rc), g->id);
    reg_idle(g);
  }
  ct__zk_reap_regs(g->zk);
}

static void reg_stale_deleted(int rc, const void *data) {
  ct_zk_registration *g = (ct_zk_registration *)data;
  if (reg_gone(g, rc))
    return;
  if (rc == ZOK || rc == ZNONODE) {
    if (rc == ZOK)
      ct_log(CT_LOG_INFO, MODULE, "deleted %s, left by an earlier session",
             g->candidate);
    reg_look(g);
  } else {
    reg_idle(g);
  }
  ct__zk_reap_regs(g->zk);
}

static void reg_checked(int rc, const struct Stat *s, const void *data) {
  ct_zk_registration *g = (ct_zk_registration *)data;
  if (reg_gone(g, rc))
    return;
  if (rc == ZNONODE) {
    reg_look(g); /* gone meanwhile */
  } else if (rc != ZOK) {
    reg_idle(g);
  } else if (s->ephemeralOwner == g->zk->session_id &&
             g->unregistering == NULL) {
    /* Ours, from this session: the create did succeed. */
    reg_live(g, g->candidate);
  } else {
    g->inflight++;
    if (zoo_adelete(g->zk->zh, g->candidate, s->version, reg_stale_deleted,
                    g) != ZOK) {
      g->inflight--;
      reg_idle(g);
    }
  }
  ct__zk_reap_regs(g->zk);
}

static void reg_parent_ready(void *arg, int rc) {
  ct_zk_registration *g = arg;
  if (reg_gone(g, rc))
    return;
  if (rc == ZOK)
    reg_look(g);
  else
    reg_idle(g);
  ct__zk_reap_regs(g->zk);
}

static void reg_listed(int rc, const struct String_vector *v,
                       const void *data) {
  ct_zk_registration *g = (ct_zk_registration *)data;
  if (reg_gone(g, rc))
    return;
  if (rc == ZNONODE) {
    if (g->unregistering != NULL) {
      reg_idle(g);
    } else {
      g->inflight++;
      if (ct__zk_ensure_start(g->zk, g->parent, NULL, reg_parent_ready, g) !=
          ZOK) {
        g->inflight--;
        reg_idle(g);
      }
    }
    ct__zk_reap_regs(g->zk);
    return;
  }
  if (rc != ZOK) {
    reg_idle(g);
    ct__zk_reap_regs(g->zk);
    return;
  }
  size_t idl = strlen(g->id);
  const char *found = NULL;
  for (int i = 0; v != NULL && i < v->count; i++)
    if (strncmp(v->data[i], g->id, idl) == 0 && v->data[i][idl] == '-')
      found = v->data[i];
  if (found != NULL) {
    size_t n = strlen(g->parent) + strlen(found) + 2;
    free(g->candidate);
    g->candidate = malloc(n);
    if (g->candidate == NULL) {
      reg_idle(g);
      return;
    }
    snprintf(g->candidate, n, "%s/%s", g->parent, found);
    g->inflight++;
    if (zoo_aexists(g->zk->zh, g->candidate, 0, reg_checked, g) != ZOK) {
      g->inflight--;
      reg_idle(g);
    }
  } else if (g->unregistering != NULL) {
    reg_idle(g); /* nothing of ours remains */
  } else {
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/%s-", g->parent, g->id);
    g->inflight++;
    if (zoo_acreate(g->zk->zh, prefix, g->data, (int)g->len,
                    &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL_SEQUENTIAL, reg_created,
                    g) != ZOK) {
      g->inflight--;
      reg_idle(g);
    }
  }
  ct__zk_reap_regs(g->zk);
}

static void reg_look(ct_zk_registration *g) {
  g->state = G_BUSY;
  g->inflight++;
  if (g->zk->zh == NULL ||
      zoo_aget_children(g->zk->zh, g->parent, 0, reg_listed, g) != ZOK) {
    g->inflight--;
    g->state = G_IDLE;
  }
}

static void reg_deleted(int rc, const void *data) {
  ct_zk_registration *g = (ct_zk_registration *)data;
  if (reg_gone(g, rc))
    return;
  if (rc == ZOK || rc == ZNONODE) {
    ct_log(CT_LOG_INFO, MODULE, "unregistered %s", g->path);
    free(g->path);
    g->path = NULL;
    g->state = G_IDLE;
  } else {
    g->state = G_LIVE;
    if (!ct_deferred_called(g->unregistering))
      ct_deferred_errback(g->unregistering,
                          ct__zk_failure(rc, "delete", g->path));
  }
  ct__zk_reap_regs(g->zk);
}

void ct__zk_reg_kick(ct_zk_registration *g) {
  ct_zk *z = g->zk;
  if (g->state == G_BUSY) {
    g->again = 1;
    return;
  }
  if (z->zh == NULL || z->state != CT_ZK_CONNECTED)
    return; /* kicked again on connect */
  if (g->unregistering != NULL) {
    if (g->state == G_LIVE) {
      g->state = G_BUSY;
      g->inflight++;
      if (zoo_adelete(z->zh, g->path, -1, reg_deleted, g) != ZOK) {
        g->inflight--;
        g->state = G_LIVE;
      }
    } else if (g->state == G_IDLE) {
      /* A create may have succeeded unseen: look for it, to delete it. */
      g->again = 0;
      reg_look(g);
    }
    return;
  }
  if (g->state == G_IDLE)
    reg_look(g);
}

ct_zk_registration *ct_zk_register(ct_zk *z, const char *parent, const char *id,
                                   const void *data, size_t len) {
  if (id != NULL && (id[0] == '\0' || strlen(id) >= 64 || strchr(id, '/')))
    return NULL;
  ct_zk_registration *g = calloc(1, sizeof *g);
  if (g == NULL)
    return NULL;
  g->parent = strdup(parent);
  g->data = malloc(len + 1);
  if (g->parent == NULL || g->data == NULL) {
    ct__zk_free_reg(g);
    return NULL;
  }
  size_t pl = strlen(g->parent);
  if (pl > 1 && g->parent[pl - 1] == '/')
    g->parent[pl - 1] = '\0';
  if (len > 0)
    memcpy(g->data, data, len);
  g->data[len] = '\0';
  g->len = len;
  g->zk = z;
  if (id != NULL)
    snprintf(g->id, sizeof g->id, "%s", id);
  else
    snprintf(g->id, sizeof g->id, "%s-%u", z->guid, z->next_reg++);
  g->next = z->regs;
  z->regs = g;
  ct__zk_reg_kick(g);
  ct__zk_drive(z);
  return g;
}

const char *ct_zk_guid(const ct_zk *z) {
  return z->guid;
}

const char *ct_zk_registration_id(const ct_zk_registration *g) {
  return g->id;
}

const char *ct_zk_registration_path(const ct_zk_registration *g) {
  return g->state == G_LIVE ? g->path : NULL;
}

uint64_t ct_zk_registration_creates(const ct_zk_registration *g) {
  return g->creates;
}

ct_deferred *ct_zk_unregister(ct_zk_registration *g) {
  ct_zk *z = g->zk;
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  if (d == NULL)
    return NULL;
  if (g->unregistering != NULL) {
    ct_deferred_unref(d);
    return ct_deferred_ref(g->unregistering);
  }
  g->unregistering = ct_deferred_ref(d);
  if (z->state != CT_ZK_CONNECTED && g->state != G_BUSY) {
    /* Unreachable: the node (if any) goes with the session. */
    ct_deferred_errback(
        d, ct_failure_new_at(__FILE__, __LINE__, CT_ZK_DOMAIN,
                             CT_ZK_ECONNECTIONLOSS, NULL,
                             "ZooKeeper ensemble %s unreachable: %s stays "
                             "until the session expires",
                             z->ensemble, g->path ? g->path : g->id));
  } else {
    ct__zk_reg_kick(g);
  }
  ct__zk_reap_regs(z);
  ct__zk_drive(z);
  return d;
}
