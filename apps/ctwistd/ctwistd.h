/*
 * ctwistd.h: the runner's state (one struct owned by main()) and the
 * functions ctwistd.c and workers.c share.  Not a library header.
 */
#ifndef CTWISTD_CTWISTD_H
#define CTWISTD_CTWISTD_H

#include <stdio.h>
#include <sys/types.h>

#include "ctwist/ctwist.h"
#include "ctwist/plugin.h"
#include "tracker.h"

#define EXIT_START 1 /* the service could not start */
#define EXIT_USAGE 2 /* bad command line or plugin options */
#define MAX_LISTEN 32

typedef struct ctwistd {
  /* options */
  const char *pidfile; /* absolute (made so before any chdir) */
  char *pidfile_abs;
  const char *logfile;
  int json;
  ct_log_level level;
  int daemon;
  double idle_timeout;
  ct_frame_deadline frame; /* --frame-timeout/--frame-min-rate; 0: default */
  long max_connections;
  double shutdown_timeout;
  int workers; /* --workers N: pre-forked processes, 0 = serve here */
  const char *plugin_name; /* bundled plugin, or NULL */
  const char *plugin_path; /* --plugin PATH, or NULL */
  const char *listen[MAX_LISTEN];
  int nlisten;
  int pargc; /* the plugin's argv: its name, then its options */
  char **pargv;

  /* runtime */
  FILE *logfp;
  ct_log_observer *observer;
  ct_reactor *reactor;
  ct_plugin *loaded;
  const ct_plugin_descriptor *desc;
  ct_factory *plugin_factory;
  ct_policy_factory *idle, *limit;
  ct_policy_factory *frame_policy; /* only with --frame-* options */
  ctd_tracker tracker;
  ct_listening_port *ports[MAX_LISTEN];
  int nports;
  int pid_written;
  int pid_fd; /* the locked pidfile, or -1 */
  ct_phase_hold *drain_hold;
  ct_delayed_call *drain_timer;
  int ready_fd; /* --daemon: status pipe to the waiting parent, or -1 */

  /* --workers: the supervisor's view */
  char *worker_listen[MAX_LISTEN]; /* endpoints rewritten with reuseport=1 */
  int reserved_fd[MAX_LISTEN];     /* port-0 reservations, or -1 */
  pid_t *worker_pid;               /* per slot; 0 = not running */
  char worker_addr[MAX_LISTEN][CT_ADDRESS_STRLEN]; /* for announce */
  ct_address worker_sa[MAX_LISTEN];                /* for --zk */
  double *worker_started; /* per slot, monotonic seconds */
  int fast_failures;      /* consecutive deaths soon after start */
  int worker_ready_fd;    /* in a worker: its "ready" pipe, or -1 */
  int is_worker;

  /* --zk/--service: registration (registry.c) */
  const char *zk_ensemble;  /* --zk, or NULL */
  const char *zk_service;   /* --service */
  const char *zk_advertise; /* --advertise: the address members carry */
  double zk_session_timeout;
  double zk_grace; /* --zk-grace: seconds between deletion and drain */
  ct_zk *zk;
  ct_service_registration *zk_regs[MAX_LISTEN];
  ct_reactor *zk_reactor;  /* where the withdrawal runs */
  ct_reactor *sup_reactor; /* --workers: the supervisor's reactor */
  int sup_sigfd;           /* --workers: its signalfd, or -1 */
  void (*zk_withdrawn_cb)(struct ctwistd *d);
  ct_delayed_call *zk_withdraw_timer, *zk_grace_timer;
  int zk_withdrawing, zk_withdrew;
  ct_phase_hold *zk_hold;
} ctwistd;

/* ctwistd.c */
int ctd_serve(ctwistd *d);            /* serve here until stopped */
void ctd_cleanup(ctwistd *d);         /* release everything */
int ctd_make_factory(ctwistd *d);     /* plugin factory + policies + tracker */
void ctd_release_factory(ctwistd *d); /* undo ctd_make_factory() */
void ctd_report(const char *prefix, const ct_failure *f);
int ctd_write_pidfile(ctwistd *d);
void ctd_daemon_ready(ctwistd *d);

/* registry.c */
int ctd_registry_start(ctwistd *d, ct_reactor *r, const ct_address *addrs,
                       int n);
/* Delete the members, wait --zk-grace, then call done(d); 0 when there
 * is nothing to withdraw (done is not called). */
int ctd_registry_withdraw(ctwistd *d, ct_reactor *r, void (*done)(ctwistd *d));
void ctd_registry_free(ctwistd *d);

/* workers.c */
double ctd_now_seconds(void);
int ctd_supervise(ctwistd *d); /* --workers: fork, supervise, stop */

#endif /* CTWISTD_CTWISTD_H */
