/*
 * zk_internal.h: what transports/zk.c (the session, operations, watches)
 * and transports/zk_register.c (registrations) share.  Not installed.
 */
#ifndef CT_TRANSPORTS_ZK_INTERNAL_H
#define CT_TRANSPORTS_ZK_INTERNAL_H

#include <sys/types.h>
#include <zookeeper/zookeeper.h>

#include "ctwist/zk.h"

#define MODULE "zk"

typedef struct zk_waiter {
  struct zk_waiter *next;
  ct_deferred *d;
  ct_delayed_call *timer; /* referenced */
  ct_zk *zk;
} zk_waiter;

enum { W_CHILDREN, W_NODE };

struct ct_zk_watch {
  struct ct_zk_watch *next;
  ct_zk *zk;
  int kind;
  char *path;
  ct_zk_children_cb on_children;
  ct_zk_node_cb on_node;
  void *arg;
  int cancelled;
  int inflight; /* requests of ours the library still holds */
  int armed;    /* a ZooKeeper watch of ours is registered */
};

enum { G_IDLE, G_BUSY, G_LIVE };

struct ct_zk_registration {
  struct ct_zk_registration *next;
  ct_zk *zk;
  char *parent;
  char *data;
  size_t len;
  char id[64];
  char *path;      /* when G_LIVE */
  char *candidate; /* a found node being checked or deleted */
  int state;
  int again; /* kicked while busy: check again afterwards */
  int inflight;
  uint64_t creates;
  ct_deferred *unregistering; /* set once ct_zk_unregister() ran */
};

struct ct_zk {
  ct_reactor *r;
  char *ensemble;
  ct_zk_options o;
  zhandle_t *zh;
  int fd;     /* the library's descriptor, or -1 */
  ino_t ino;  /* ...and its socket's inode: a new socket may reuse fd */
  int wfd;    /* our duplicate of it, the one the reactor watches */
  int wr, ww; /* watching wfd for reading, writing */
  ct_delayed_call *timer;   /* referenced: the library's timeout */
  ct_delayed_call *restart; /* referenced: a new session after expiry */
  double backoff;
  ct_zk_state_t state;
  int handle_connected; /* this handle has connected once */
  int64_t session_id;
  uint64_t sessions;
  ct_zk_state_cb state_cb;
  void *state_arg;
  zk_waiter *waiters;
  ct_zk_watch *watches;
  ct_zk_registration *regs;
  int replacing;  /* the old handle is being closed */
  int in_process; /* inside zookeeper_process(): drive() afterwards */
  char guid[33];
  unsigned next_reg;
};

/* zk.c */
/* Ask the library what it waits for and wait for that (after every call
 * into it; a no-op inside zookeeper_process(), whose caller does it). */
void ct__zk_drive(ct_zk *z);
/* A failure in the zookeeper domain naming the operation and the path. */
ct_failure *ct__zk_failure(int rc, const char *op, const char *path);
/* Create `path` and its ancestors; `done(arg, rc)` then `d` (may be NULL)
 * when over.  Returns ZOK, or a code when nothing started. */
int ct__zk_ensure_start(ct_zk *z, const char *path, ct_deferred *d,
                        void (*done)(void *, int), void *arg);

/* zk_register.c */
void ct__zk_reg_kick(ct_zk_registration *g); /* (re)create or delete now */
void ct__zk_free_reg(ct_zk_registration *g);
void ct__zk_reap_regs(ct_zk *z); /* free the unregistered, fire them */

#endif
