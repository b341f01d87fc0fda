/*
 * Child processes: ct_spawn_process with a process protocol, on a real
 * reactor (children exit in real time; every wait is on a condition).
 */
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/types.h>

#include "ctwist/process.h"
#include "test_transport_util.h"

TU_REACTOR_FIXTURE

TestSuite(process, .init = setup, .fini = teardown, .timeout = 60);

/* ------------------------------------------------------------ recorder */

typedef struct rec {
  EVP_MD_CTX *sha; /* hashes stdout when set */
  size_t out_len;
  char out[4096]; /* the first bytes of stdout */
  size_t err_len;
  char err[1024];
  int made, in_lost, out_lost, err_lost, exited, ended;
  int exited_before_ended;
  int end_code;
  char end_msg[256];
  int exit_code, exit_signal;
  int signal_after_exit; /* ct_process_signal() from process_exited */
  /* feeding stdin with a push producer */
  ct_process *proc;
  const char *feed;
  size_t feed_len, fed, chunk;
  int paused, pauses, stopped;
  int ended_total; /* for many children */
  int *ended_counter;
} rec;

static void r_made(ct_process *p, void *arg) {
  rec *r = arg;
  r->made++;
  r->proc = p;
}

static void r_out(ct_process *p, const char *d, size_t n, void *arg) {
  rec *r = arg;
  if (r->sha != NULL)
    EVP_DigestUpdate(r->sha, d, n);
  size_t room =
      sizeof r->out - 1 -
      (r->out_len < sizeof r->out - 1 ? r->out_len : sizeof r->out - 1);
  memcpy(r->out + (sizeof r->out - 1 - room), d, n < room ? n : room);
  r->out_len += n;
}

static void r_err(ct_process *p, const char *d, size_t n, void *arg) {
  rec *r = arg;
  size_t room = sizeof r->err - 1 - r->err_len;
  if (n > room)
    n = room;
  memcpy(r->err + r->err_len, d, n);
  r->err_len += n;
}

static void r_in_lost(ct_process *p, void *arg) {
  ((rec *)arg)->in_lost++;
}
static void r_out_lost(ct_process *p, void *arg) {
  ((rec *)arg)->out_lost++;
}
static void r_err_lost(ct_process *p, void *arg) {
  ((rec *)arg)->err_lost++;
}

static void r_exited(ct_process *p, const ct_failure *reason, void *arg) {
  rec *r = arg;
  r->exited++;
  r->exit_code = ct_process_exit_code(p);
  r->exit_signal = ct_process_exit_signal(p);
  r->signal_after_exit = ct_process_signal(p, SIGTERM);
}

static void r_ended(ct_process *p, const ct_failure *reason, void *arg) {
  rec *r = arg;
  r->exited_before_ended = r->exited == 1;
  r->ended++;
  r->end_code = reason->code;
  snprintf(r->end_msg, sizeof r->end_msg, "%s", reason->message);
  r->proc = NULL;
  if (r->ended_counter != NULL)
    (*r->ended_counter)++;
}

static const ct_process_protocol_ops rec_ops = {
    .connection_made = r_made,
    .out_received = r_out,
    .err_received = r_err,
    .in_connection_lost = r_in_lost,
    .out_connection_lost = r_out_lost,
    .err_connection_lost = r_err_lost,
    .process_exited = r_exited,
    .process_ended = r_ended,
};

static int rec_ended(void *arg) {
  return ((rec *)arg)->ended > 0;
}

static ct_process *spawn(rec *r, const char *const *argv,
                         const ct_process_options *opts) {
  ct_failure *err = NULL;
  ct_process *p = ct_spawn_process(R, &rec_ops, r, argv, opts, &err);
  cr_assert(p != NULL, "spawn %s: %s", argv[0], err ? err->message : "?");
  cr_assert_eq(r->made, 1);
  return p;
}

static void wait_ended(rec *r) {
  cr_assert(tu_spin(R, rec_ended, r, 30), "the child never ended");
  cr_assert_eq(r->ended, 1);
  cr_assert(r->exited_before_ended);
}

/* ------------------------------------------------------- stdin producer */

static void feed(rec *r) {
  while (!r->paused && r->fed < r->feed_len && r->proc != NULL) {
    size_t n =
        r->feed_len - r->fed < r->chunk ? r->feed_len - r->fed : r->chunk;
    if (ct_process_write(r->proc, r->feed + r->fed, n) != 0)
      return;
    r->fed += n;
  }
  if (r->fed == r->feed_len && r->proc != NULL &&
      ct_process_stdin(r->proc) != NULL) {
    ct_transport_unregister_producer(ct_process_stdin(r->proc));
    ct_process_close_stdin(r->proc);
  }
}

static void prod_pause(void *arg) {
  rec *r = arg;
  r->paused = 1;
  r->pauses++;
}

static void prod_resume(void *arg) {
  rec *r = arg;
  r->paused = 0;
  feed(r);
}

static void prod_stop(void *arg) {
  ((rec *)arg)->stopped++;
}

static const ct_producer_ops feeder = {prod_pause, prod_resume, prod_stop};

static void start_feeding(rec *r, ct_process *p, const char *data, size_t len,
                          size_t chunk) {
  r->feed = data;
  r->feed_len = len;
  r->chunk = chunk;
  cr_assert_eq(
      ct_transport_register_producer(ct_process_stdin(p), &feeder, r, 1), 0);
  feed(r);
}

/* --------------------------------------------------------------- tests */

static void sha256(const char *d, size_t n, unsigned char out[32]) {
  unsigned len = 32;
  EVP_Digest(d, n, out, &len, EVP_sha256(), NULL);
}

Test(process, cat_round_trip_10MiB_with_back_pressure) {
  size_t n = 10u << 20;
  char *data = tu_pattern(n, 7, 3);
  unsigned char want[32], got[32];
  sha256(data, n, want);
  rec r = {0};
  r.sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(r.sha, EVP_sha256(), NULL);
  const char *argv[] = {"/bin/cat", NULL};
  ct_process *p = spawn(&r, argv, NULL);
  cr_assert_gt(ct_process_pid(p), 0);
  start_feeding(&r, p, data, n, 64 * 1024);
  /* The child cannot keep up with memcpy: the producer was paused. */
  cr_assert_geq(r.pauses, 1);
  wait_ended(&r);
  unsigned len = 32;
  EVP_DigestFinal_ex(r.sha, got, &len);
  EVP_MD_CTX_free(r.sha);
  cr_assert_eq(r.fed, n);
  cr_assert_eq(r.out_len, n);
  cr_assert_eq(memcmp(want, got, 32), 0, "SHA-256 of the echo differs");
  cr_assert_eq(r.end_code, CT_ECONNDONE, "%s", r.end_msg);
  cr_assert_eq(r.exit_code, 0);
  cr_assert_eq(r.in_lost, 1);
  cr_assert_eq(r.out_lost, 1);
  cr_assert_eq(r.err_lost, 1);
  free(data);
}

Test(process, exit_code_is_in_the_reason) {
  rec r = {0};
  const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
  spawn(&r, argv, NULL);
  wait_ended(&r);
  cr_assert_eq(r.end_code, CT_EPROCESS_EXIT);
  cr_assert(strstr(r.end_msg, "exited with code 3") != NULL, "%s", r.end_msg);
  cr_assert(strstr(r.end_msg, "(sh)") != NULL, "%s", r.end_msg);
  cr_assert_eq(r.exit_code, 3);
  cr_assert_eq(r.exit_signal, 0);
  cr_assert_str_eq(r.out, "out\n");
  cr_assert_str_eq(r.err, "err\n");
  /* Signalling a reaped child is refused: its pid may be reused. */
  cr_assert_eq(r.signal_after_exit, CT_ESTATE);
}

Test(process, killed_child_reports_the_signal) {
  rec r = {0};
  const char *argv[] = {"sleep", "100", NULL};
  ct_process *p = spawn(&r, argv, NULL);
  tu_turns(R, 3);
  cr_assert_eq(r.exited, 0);
  cr_assert_eq(ct_process_signal(p, SIGKILL), 0);
  wait_ended(&r);
  cr_assert_eq(r.end_code, CT_EPROCESS_SIGNAL);
  cr_assert(strstr(r.end_msg, "killed by signal 9") != NULL, "%s", r.end_msg);
  cr_assert_eq(r.exit_signal, SIGKILL);
  cr_assert_eq(r.exit_code, -1);
}

static int zombies_of(pid_t parent) {
  DIR *d = opendir("/proc");
  cr_assert(d != NULL);
  int z = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
      continue;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* pid (comm) state ppid ...: comm may hold spaces, so go from ')'. */
    char *rp = strrchr(buf, ')');
    char state;
    int ppid;
    if (rp != NULL && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 &&
        ppid == (int)parent && state == 'Z')
      z++;
  }
  closedir(d);
  return z;
}

static int count_at(void *arg) {
  int *c = arg;
  return c[0] >= c[1];
}

Test(process, two_hundred_children_leave_no_zombie) {
  enum { N = 200 };
  rec *r = calloc(N, sizeof *r);
  int counter[2] = {0, N};
  ct_process_options o = {.fds = {{CT_CHILD_DEVNULL, 0},
                                  {CT_CHILD_PIPE, 0},
                                  {CT_CHILD_DEVNULL, 0}}};
  for (int i = 0; i < N; i++) {
    r[i].ended_counter = &counter[0];
    const char *argv[] = {"sh", "-c", i % 2 ? "exit 0" : "exit 1", NULL};
    spawn(&r[i], argv, &o);
  }
  cr_assert(tu_spin(R, count_at, counter, 60), "only %d of %d ended",
            counter[0], N);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(r[i].ended, 1);
    cr_assert_eq(r[i].exit_code, i % 2 ? 0 : 1);
  }
  cr_assert_eq(zombies_of(getpid()), 0);
  free(r);
}

/* Spawn argv, feed it n pattern bytes in chunks, wait for the end;
 * returns the bytes (the caller frees them). */
static char *feed_child(rec *r, const char *const *argv, size_t n,
                        size_t chunk) {
  char *data = tu_pattern(n, 5, 2);
  ct_process *p = spawn(r, argv, NULL);
  start_feeding(r, p, data, n, chunk);
  wait_ended(r);
  return data;
}

Test(process, child_closing_stdout_early_while_we_write) {
  /* The child closes its stdout at once and keeps reading stdin. */
  size_t n = 2u << 20;
  rec r = {0};
  const char *argv[] = {"sh", "-c", "exec >&-; exec cat >/dev/null", NULL};
  char *data = feed_child(&r, argv, n, 32 * 1024);
  cr_assert_eq(r.out_len, 0);
  cr_assert_eq(r.out_lost, 1);
  cr_assert_eq(r.fed, n);
  cr_assert_eq(r.end_code, CT_ECONNDONE, "%s", r.end_msg);
  free(data);
}

Test(process, child_exiting_mid_write_is_not_a_crash) {
  /* head stops reading after 100 bytes and exits: our writes meet EPIPE
   * (an error on the stdin transport, never a SIGPIPE). */
  rec r = {0};
  const char *argv[] = {"head", "-c", "100", NULL};
  char *data = feed_child(&r, argv, 4u << 20, 64 * 1024);
  cr_assert_eq(r.out_len, 100);
  cr_assert_eq(memcmp(r.out, data, 100), 0);
  cr_assert_eq(r.in_lost, 1);
  cr_assert_eq(r.exit_code, 0);
  cr_assert_eq(ct_process_write(NULL, "x", 1), CT_ECLOSED);
  free(data);
}

Test(process, bad_program_is_a_clear_failure) {
  rec r = {0};
  ct_failure *err = NULL;
  const char *argv[] = {"/nonexistent/ct-no-such-program", NULL};
  cr_assert_null(ct_spawn_process(R, &rec_ops, &r, argv, NULL, &err));
  cr_assert_not_null(err);
  cr_assert_eq(err->code, CT_ENOENT);
  cr_assert(strstr(err->message, "/nonexistent/ct-no-such-program") != NULL,
            "%s", err->message);
  ct_failure_free(err);
  const char *argv2[] = {"ct-no-such-program-in-path", NULL};
  cr_assert_null(ct_spawn_process(R, &rec_ops, &r, argv2, NULL, &err));
  cr_assert_eq(err->code, CT_ENOENT);
  ct_failure_free(err);
  const char *argv3[] = {NULL};
  cr_assert_null(ct_spawn_process(R, &rec_ops, &r, argv3, NULL, &err));
  cr_assert_eq(err->code, CT_EINVAL);
  ct_failure_free(err);
  ct_process_options bad = {.fds = {{CT_CHILD_FD, 987}}};
  const char *argv4[] = {"true", NULL};
  cr_assert_null(ct_spawn_process(R, &rec_ops, &r, argv4, &bad, &err));
  cr_assert_eq(err->code, CT_EINVAL);
  cr_assert(strstr(err->message, "fd map") != NULL, "%s", err->message);
  ct_failure_free(err);
  cr_assert_eq(r.made, 0, "a failed spawn must not call back");
}

Test(process, environment_cwd_and_default_sigpipe) {
  rec r = {0};
  const char *env[] = {"CT_X=42", "PATH=/usr/bin:/bin", NULL};
  ct_process_options o = {.env = env, .cwd = "/tmp"};
  /* The reactor ignores SIGPIPE (and a test runner may block signals):
   * the child starts with nothing ignored and nothing blocked. */
  const char *argv[] = {"sh", "-c",
                        "echo \"$CT_X:$(pwd)\"; "
                        "exec grep -E '^Sig(Blk|Ign)' /proc/self/status",
                        NULL};
  spawn(&r, argv, &o);
  wait_ended(&r);
  unsigned long long blk = 1, ign = 1;
  cr_assert_eq(
      sscanf(r.out, "42:/tmp\nSigBlk:\t%llx\nSigIgn:\t%llx", &blk, &ign), 2,
      "%s", r.out);
  cr_assert_eq(blk, 0, "%s", r.out);
  /* glibc keeps its two internal real-time signals (32, 33) as they are;
   * every standard signal, SIGPIPE included, is at its default. */
  cr_assert_eq(ign & 0x7fffffffULL, 0, "%s", r.out);
}

Test(process, fd_map_hands_over_descriptors) {
  /* The child's stderr goes to a pipe of ours given by number as our
   * stdout (1), while its own stdout is a pipe to the reactor: the dup2
   * onto the child's 1 must not change what its 2 receives. */
  int pfd[2];
  cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
  fflush(stdout);
  int saved = dup(1);
  cr_assert_eq(dup2(pfd[1], 1), 1);
  rec r = {0};
  ct_process_options o = {
      .fds = {{CT_CHILD_DEVNULL, 0}, {CT_CHILD_PIPE, 0}, {CT_CHILD_FD, 1}}};
  const char *argv[] = {"sh", "-c", "echo to-out; echo to-err >&2", NULL};
  ct_failure *err = NULL;
  ct_process *p = ct_spawn_process(R, &rec_ops, &r, argv, &o, &err);
  dup2(saved, 1);
  close(saved);
  close(pfd[1]);
  cr_assert(p != NULL, "%s", err ? err->message : "?");
  wait_ended(&r);
  char buf[64] = {0};
  cr_assert_eq(read(pfd[0], buf, sizeof buf - 1), 7);
  cr_assert_str_eq(buf, "to-err\n");
  cr_assert_str_eq(r.out, "to-out\n");
  cr_assert_eq(r.err_len, 0);
  close(pfd[0]);
}
