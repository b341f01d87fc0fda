/*
 * The ZooKeeper session driver (ctwist/zk.h) against a real ZooKeeper:
 * the one the ctest fixture `zk` started (test/zk/zkserver.py), whose
 * "HOST:PORT" is in the file named by $CT_ZK_ENSEMBLE_FILE.  Every test
 * works under its own random path, so they run side by side.  Waiting is
 * on conditions, turning the reactor with ct_reactor_iterate_wait(),
 * always bounded.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ctwist/ctwist.h"

#define WAIT_LIMIT 30.0

static char ensemble[256];
static char base[128];

static void read_ensemble(void) {
  const char *file = getenv("CT_ZK_ENSEMBLE_FILE");
  cr_assert(file != NULL, "CT_ZK_ENSEMBLE_FILE is not set (run via ctest)");
  FILE *f = fopen(file, "r");
  cr_assert(f != NULL, "cannot open %s", file);
  cr_assert(fgets(ensemble, sizeof ensemble, f) != NULL);
  fclose(f);
  ensemble[strcspn(ensemble, "\r\n")] = '\0';
  unsigned r = 0;
  cr_assert(getrandom(&r, sizeof r, 0) == (ssize_t)sizeof r);
  snprintf(base, sizeof base, "/ctwist-test/%08x", r);
}

/* Turn the reactors until `cond(arg)` holds; false after WAIT_LIMIT s. */
static int wait_for2(ct_reactor *r1, ct_reactor *r2, int (*cond)(void *),
                     void *arg) {
  double deadline = ct_reactor_seconds(r1) + WAIT_LIMIT;
  while (!cond(arg)) {
    if (ct_reactor_seconds(r1) > deadline)
      return 0;
    ct_reactor_iterate_wait(r1, r2 != NULL ? 0.02 : 0.5);
    if (r2 != NULL)
      ct_reactor_iterate_wait(r2, 0.02);
  }
  return 1;
}

static int wait_for(ct_reactor *r, int (*cond)(void *), void *arg) {
  return wait_for2(r, NULL, cond, arg);
}

static int deferred_done(void *arg) {
  return ct_deferred_called(arg);
}

/* Wait for `d` and take its result (the test owns it afterwards). */
static ct_result settle(ct_reactor *r, ct_deferred *d) {
  cr_assert(d != NULL);
  cr_assert(wait_for(r, deferred_done, d), "a ZooKeeper call never ended");
  ct_result res;
  cr_assert(ct_deferred_take_result(d, &res) == 0);
  ct_deferred_unref(d);
  return res;
}

static ct_value ok(ct_reactor *r, ct_deferred *d) {
  ct_result res = settle(r, d);
  if (res.failure != NULL) {
    char buf[512];
    ct_failure_format(res.failure, buf, sizeof buf);
    cr_assert_fail("unexpected failure: %s", buf);
  }
  return res.value;
}

static ct_zk *open_zk(ct_reactor *r, double session_timeout) {
  ct_zk_options o = {.session_timeout = session_timeout,
                     .backoff_initial = 0.05};
  ct_failure *err = NULL;
  ct_zk *zk = ct_zk_new(r, ensemble, &o, &err);
  cr_assert(zk != NULL, "ct_zk_new: %s", err ? err->message : "?");
  ct_value_free(ok(r, ct_zk_connected(zk)));
  return zk;
}

/* Close the session and turn the reactor until its closing settles. */
static void finish(ct_reactor *r, ct_zk *zk) {
  ct_zk_free(zk);
  ct_reactor_iterate(r);
  ct_reactor_free(r);
  cr_assert_eq(ct_deferred_live(), 0, "Deferreds left: %ld",
               ct_deferred_live());
}

TestSuite(zk_driver, .init = read_ensemble, .timeout = 60);

Test(zk_driver, operations) {
  ct_reactor *r = ct_reactor_new();
  ct_zk *zk = open_zk(r, 10);
  cr_assert_neq(ct_zk_session_id(zk), 0);
  cr_assert_eq(ct_zk_sessions(zk), 1);
  char path[256], child[300];
  snprintf(path, sizeof path, "%s/ops", base);
  ct_value_free(ok(r, ct_zk_ensure_path(zk, path)));
  /* Again: existing nodes are fine. */
  ct_value_free(ok(r, ct_zk_ensure_path(zk, path)));

  snprintf(child, sizeof child, "%s/a", path);
  ct_value v = ok(r, ct_zk_create(zk, child, "hello", 5, 0));
  cr_assert_str_eq(v.ptr, child);
  ct_value_free(v);
  /* Creating it again: NODEEXISTS, in the zookeeper domain. */
  ct_result res = settle(r, ct_zk_create(zk, child, "x", 1, 0));
  cr_assert(res.failure != NULL);
  cr_assert_str_eq(res.failure->domain, CT_ZK_DOMAIN);
  cr_assert_eq(res.failure->code, CT_ZK_ENODEEXISTS);
  cr_assert(strstr(res.failure->message, child) != NULL);
  ct_failure_free(res.failure);

  v = ok(r, ct_zk_get(zk, child));
  ct_zk_node *n = v.ptr;
  cr_assert_eq(n->len, 5);
  cr_assert_str_eq(n->data, "hello");
  cr_assert_eq(n->stat.ephemeral_owner, 0);
  ct_value_free(v);

  /* Sequential and ephemeral. */
  char seq[300];
  snprintf(seq, sizeof seq, "%s/s-", path);
  v = ok(r, ct_zk_create(zk, seq, NULL, 0, CT_ZK_EPHEMERAL | CT_ZK_SEQUENCE));
  cr_assert_eq(strlen(v.ptr), strlen(seq) + 10, "no counter: %s",
               (char *)v.ptr);
  char eph[300];
  snprintf(eph, sizeof eph, "%s", (char *)v.ptr);
  ct_value_free(v);
  v = ok(r, ct_zk_exists(zk, eph));
  cr_assert(v.ptr != NULL);
  cr_assert_eq(((ct_zk_stat *)v.ptr)->ephemeral_owner, ct_zk_session_id(zk));
  ct_value_free(v);

  v = ok(r, ct_zk_get_children(zk, path));
  ct_zk_children *c = v.ptr;
  cr_assert_eq(c->n, 2);
  cr_assert_str_eq(c->names[0], "a");
  cr_assert_eq(strncmp(c->names[1], "s-", 2), 0);
  ct_value_free(v);

  ct_value_free(ok(r, ct_zk_delete(zk, child, -1)));
  v = ok(r, ct_zk_exists(zk, child));
  cr_assert(v.ptr == NULL, "exists of a deleted node is not NULL");
  res = settle(r, ct_zk_get(zk, child));
  cr_assert(ct_failure_check(res.failure, CT_ZK_ENONODE) ||
            res.failure->code == CT_ZK_ENONODE);
  ct_failure_free(res.failure);
  /* Deleting a node with children: NOTEMPTY. */
  res = settle(r, ct_zk_delete(zk, path, -1));
  cr_assert_eq(res.failure->code, CT_ZK_ENOTEMPTY);
  ct_failure_free(res.failure);
  finish(r, zk);
}

typedef struct kids_seen {
  int calls;
  int lost;
  size_t n;
  char names[8][64];
  int absent;
} kids_seen;

static void on_kids(ct_zk_watch *w, const ct_zk_children *kids,
                    const ct_failure *f, void *arg) {
  (void)w;
  kids_seen *s = arg;
  if (f != NULL) {
    s->lost++;
    return;
  }
  s->calls++;
  s->absent = kids == NULL;
  s->n = kids != NULL ? kids->n : 0;
  for (size_t i = 0; i < s->n && i < 8; i++)
    snprintf(s->names[i], sizeof s->names[i], "%s", kids->names[i]);
}

typedef struct want_kids {
  kids_seen *s;
  size_t n;
  int calls_over;
} want_kids;

static int kids_are(void *arg) {
  want_kids *w = arg;
  return w->s->calls > w->calls_over && !w->s->absent && w->s->n == w->n;
}

static int absent_seen(void *arg) {
  return ((kids_seen *)arg)->calls > 0 && ((kids_seen *)arg)->absent;
}

Test(zk_driver, children_watch_rearms) {
  ct_reactor *r = ct_reactor_new();
  ct_zk *zk = open_zk(r, 10);
  char path[256], a[300], b[300];
  snprintf(path, sizeof path, "%s/watched", base);
  kids_seen s = {0};
  /* Watch before the path exists: its creation is watched. */
  ct_zk_watch *w = ct_zk_watch_children(zk, path, on_kids, &s);
  cr_assert(w != NULL);
  cr_assert(wait_for(r, absent_seen, &s));
  ct_value_free(ok(r, ct_zk_ensure_path(zk, path)));
  want_kids want = {&s, 0, s.calls};
  cr_assert(wait_for(r, kids_are, &want), "creation not seen");
  /* Each change fires the (re-armed) watch once more. */
  snprintf(a, sizeof a, "%s/a", path);
  snprintf(b, sizeof b, "%s/b", path);
  want = (want_kids){&s, 1, s.calls};
  ct_value_free(ok(r, ct_zk_create(zk, a, NULL, 0, 0)));
  cr_assert(wait_for(r, kids_are, &want), "first child not seen");
  cr_assert_str_eq(s.names[0], "a");
  want = (want_kids){&s, 2, s.calls};
  ct_value_free(ok(r, ct_zk_create(zk, b, NULL, 0, CT_ZK_EPHEMERAL)));
  cr_assert(wait_for(r, kids_are, &want), "second child not seen");
  want = (want_kids){&s, 1, s.calls};
  ct_value_free(ok(r, ct_zk_delete(zk, a, -1)));
  cr_assert(wait_for(r, kids_are, &want), "deletion not seen");
  cr_assert_str_eq(s.names[0], "b");
  /* Cancelled: no more calls. */
  ct_zk_watch_cancel(w);
  int before = s.calls;
  ct_value_free(ok(r, ct_zk_create(zk, a, NULL, 0, 0)));
  ct_value_free(ok(r, ct_zk_get_children(zk, path)));
  cr_assert_eq(s.calls, before);
  cr_assert_eq(s.lost, 0);
  finish(r, zk);
}

typedef struct node_seen {
  int calls;
  int present;
  char data[64];
} node_seen;

static void on_node(ct_zk_watch *w, const ct_zk_node *n, const ct_failure *f,
                    void *arg) {
  (void)w;
  node_seen *s = arg;
  if (f != NULL)
    return;
  s->calls++;
  s->present = n != NULL;
  snprintf(s->data, sizeof s->data, "%s", n != NULL ? n->data : "");
}

static int seen_absent(void *arg) {
  node_seen *x = arg;
  return x->calls >= 1 && !x->present;
}

static int seen_v1(void *arg) {
  node_seen *x = arg;
  return x->present && strcmp(x->data, "v1") == 0;
}

Test(zk_driver, node_watch) {
  ct_reactor *r = ct_reactor_new();
  ct_zk *zk = open_zk(r, 10);
  char path[256];
  snprintf(path, sizeof path, "%s/node", base);
  ct_value_free(ok(r, ct_zk_ensure_path(zk, base)));
  node_seen s = {0};
  ct_zk_watch *w = ct_zk_watch_node(zk, path, on_node, &s);
  cr_assert(wait_for(r, seen_absent, &s));
  ct_value_free(ok(r, ct_zk_create(zk, path, "v1", 2, 0)));
  cr_assert(wait_for(r, seen_v1, &s));
  ct_value_free(ok(r, ct_zk_delete(zk, path, -1)));
  cr_assert(wait_for(r, seen_absent, &s));
  ct_zk_watch_cancel(w);
  finish(r, zk);
}

/* ------------------------------------------------------------- expiry */

typedef struct reg_probe {
  ct_zk_registration *g;
} reg_probe;

static int registered(void *arg) {
  return ct_zk_registration_path(((reg_probe *)arg)->g) != NULL;
}

typedef struct gone_probe {
  ct_reactor *r;
  ct_zk *zk;
  const char *path;
  ct_deferred *d;
  int gone;
} gone_probe;

/* Ask (without blocking) whether `path` still exists; 1 once it does not. */
static int node_gone(void *arg) {
  gone_probe *p = arg;
  if (p->d != NULL && ct_deferred_called(p->d)) {
    ct_result res;
    ct_deferred_take_result(p->d, &res);
    ct_deferred_unref(p->d);
    p->d = NULL;
    p->gone = res.failure == NULL && res.value.ptr == NULL;
    ct_failure_free(res.failure);
    ct_value_free(res.value);
  }
  if (!p->gone && p->d == NULL)
    p->d = ct_zk_exists(p->zk, p->path);
  return p->gone;
}

static int new_node(void *arg) {
  ct_zk_registration *x = arg;
  return ct_zk_registration_creates(x) == 2 &&
         ct_zk_registration_path(x) != NULL;
}

/* A process that stops for longer than its session timeout (a long GC
 * pause, SIGSTOP) comes back to an expired session: the driver opens a
 * new one and re-registers.  Meanwhile another session made a node with
 * the registration's ID: it must be deleted (its ephemeralOwner is not
 * the new session), not adopted, and exactly one node must remain. */
Test(zk_driver, expiry_reregisters_once_checking_owner) {
  ct_reactor *r1 = ct_reactor_new(), *r2 = ct_reactor_new();
  ct_zk *zk1 = open_zk(r1, 1.0); /* the server clamps to its 2..20 ticks */
  ct_zk *zk2 = open_zk(r2, 10);
  char parent[256];
  snprintf(parent, sizeof parent, "%s/members", base);
  ct_zk_registration *g = ct_zk_register(zk1, parent, NULL, "{}", 2);
  reg_probe rp = {g};
  cr_assert(wait_for(r1, registered, &rp));
  cr_assert_eq(ct_zk_registration_creates(g), 1);
  char first[300];
  snprintf(first, sizeof first, "%s", ct_zk_registration_path(g));
  int64_t old_session = ct_zk_session_id(zk1);

  /* zk1 is not driven: the server expires it and deletes its node. */
  gone_probe gp = {r2, zk2, first, NULL, 0};
  cr_assert(wait_for(r2, node_gone, &gp), "the session never expired");
  /* An impostor with the same ID, owned by zk2's session. */
  char stale[300];
  snprintf(stale, sizeof stale, "%s/%s-9999999999", parent,
           ct_zk_registration_id(g));
  ct_value_free(ok(r2, ct_zk_create(zk2, stale, "{}", 2, CT_ZK_EPHEMERAL)));

  cr_assert(wait_for2(r1, r2, new_node, g), "no re-registration");
  cr_assert_eq(ct_zk_sessions(zk1), 2);
  cr_assert_neq(ct_zk_session_id(zk1), old_session);
  /* Exactly one node with the ID, owned by the new session. */
  ct_deferred *d = ct_zk_get_children(zk2, parent);
  while (!ct_deferred_called(d))
    ct_reactor_iterate_wait(r2, 0.5);
  ct_result res;
  ct_deferred_take_result(d, &res);
  ct_deferred_unref(d);
  cr_assert(res.failure == NULL);
  ct_zk_children *c = res.value.ptr;
  cr_assert_eq(c->n, 1, "%zu nodes remain", c->n);
  char now[300];
  snprintf(now, sizeof now, "%s/%s", parent, c->names[0]);
  cr_assert_str_eq(now, ct_zk_registration_path(g));
  cr_assert_str_neq(now, stale);
  ct_value_free(res.value);
  d = ct_zk_exists(zk2, now);
  while (!ct_deferred_called(d))
    ct_reactor_iterate_wait(r2, 0.5);
  ct_deferred_take_result(d, &res);
  ct_deferred_unref(d);
  cr_assert_eq(((ct_zk_stat *)res.value.ptr)->ephemeral_owner,
               ct_zk_session_id(zk1));
  ct_value_free(res.value);

  /* Unregistering deletes it. */
  ct_value_free(ok(r1, ct_zk_unregister(g)));
  d = ct_zk_exists(zk1, now);
  ct_value v = ok(r1, d);
  cr_assert(v.ptr == NULL);
  finish(r1, zk1);
  finish(r2, zk2);
}

/* A create whose answer was lost (CONNECTION_LOSS) may have succeeded: the
 * node then exists, owned by this very session.  The registration finds
 * it by its ID and adopts it instead of creating a second one. */
Test(zk_driver, registration_adopts_own_node) {
  ct_reactor *r = ct_reactor_new();
  ct_zk *zk = open_zk(r, 10);
  char parent[256], mine[300];
  snprintf(parent, sizeof parent, "%s/adopt", base);
  ct_value_free(ok(r, ct_zk_ensure_path(zk, parent)));
  snprintf(mine, sizeof mine, "%s/myid-0000000042", parent);
  ct_value_free(ok(r, ct_zk_create(zk, mine, "{}", 2, CT_ZK_EPHEMERAL)));
  ct_zk_registration *g = ct_zk_register(zk, parent, "myid", "{}", 2);
  reg_probe rp = {g};
  cr_assert(wait_for(r, registered, &rp));
  cr_assert_str_eq(ct_zk_registration_path(g), mine);
  cr_assert_eq(ct_zk_registration_creates(g), 0, "created a duplicate");
  ct_value v = ok(r, ct_zk_get_children(zk, parent));
  cr_assert_eq(((ct_zk_children *)v.ptr)->n, 1);
  ct_value_free(v);
  /* Bad IDs are refused. */
  cr_assert_null(ct_zk_register(zk, parent, "a/b", "{}", 2));
  cr_assert_null(ct_zk_register(zk, parent, "", "{}", 2));
  ct_value_free(ok(r, ct_zk_unregister(g)));
  finish(r, zk);
}

/* Nothing listens: the bounded wait names the ensemble. */
Test(zk_driver, unreachable_ensemble_times_out) {
  ct_reactor *r = ct_reactor_new();
  ct_zk_options o = {.connect_timeout = 1.0};
  /* Port 1 on loopback: refused at once, again and again. */
  ct_zk *zk = ct_zk_new(r, "127.0.0.1:1", &o, NULL);
  cr_assert(zk != NULL);
  ct_result res = settle(r, ct_zk_connected(zk));
  cr_assert(res.failure != NULL);
  cr_assert_eq(res.failure->code, CT_ETIMEDOUT);
  cr_assert(strstr(res.failure->message, "127.0.0.1:1") != NULL, "%s",
            res.failure->message);
  ct_failure_free(res.failure);
  /* Bad ensemble strings are refused with a failure. */
  ct_failure *err = NULL;
  cr_assert_null(ct_zk_new(r, "no-port-here", NULL, &err));
  cr_assert_eq(err->code, CT_EINVAL);
  ct_failure_free(err);
  finish(r, zk);
}
