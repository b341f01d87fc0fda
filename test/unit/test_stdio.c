/*
 * The standard I/O transport over pipes, a regular file and a terminal
 * (a pseudo-terminal pair), on a real reactor; waits are on conditions.
 */
#include <fcntl.h>
#include <termios.h>

#include "ctwist/stdio.h"
#include "test_transport_util.h"
#include "tu_recorder.h"

TU_REACTOR_FIXTURE

TestSuite(stdio, .init = setup, .fini = teardown, .timeout = 30);

/* What the test reads back from the transport's output. */
typedef struct sink {
  int fd;
  char buf[1 << 16];
  size_t len;
  int eof;
} sink;

/* Read what is there; past the buffer's size, bytes are counted only. */
static void sink_read(sink *k) {
  char scratch[1 << 16];
  while (!k->eof) {
    int full = k->len >= sizeof k->buf;
    ssize_t n = full ? read(k->fd, scratch, sizeof scratch)
                     : read(k->fd, k->buf + k->len, sizeof k->buf - k->len);
    if (n > 0)
      k->len += (size_t)n;
    else if (n == 0)
      k->eof = 1;
    else
      break;
  }
}

typedef struct want_out {
  sink *k;
  size_t len;
} want_out;

static int out_has(void *arg) {
  want_out *w = arg;
  sink_read(w->k);
  return w->k->len >= w->len;
}

static int out_eof(void *arg) {
  sink_read(arg);
  return ((sink *)arg)->eof;
}

static int rec_lost(void *arg) {
  return ((tu_rec *)arg)->lost > 0;
}

static int rec_eof(void *arg) {
  return ((tu_rec *)arg)->eofs > 0;
}

static void nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* in[1] -> transport -> out[0] */
static ct_transport *pipes(tu_rec *rec, int in[2], int out[2], sink *k) {
  cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
  cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
  memset(k, 0, sizeof *k);
  k->fd = out[0];
  nonblock(out[0]);
  ct_failure *err = NULL;
  ct_transport *t = ct_stdio_connect_fds(R, tu_rec_proto(rec, &tu_rec_ops),
                                         in[0], out[1], &err);
  cr_assert(t != NULL, "%s", err ? err->message : "?");
  cr_assert_eq(rec->made, 1);
  return t;
}

Test(stdio, pipe_round_trip_and_eof_closes) {
  tu_rec rec = {.echo = 1};
  int in[2], out[2];
  sink k;
  pipes(&rec, in, out, &k);
  cr_assert_eq(write(in[1], "hello\n", 6), 6);
  want_out w = {&k, 6};
  cr_assert(tu_spin(R, out_has, &w, 10));
  cr_assert_eq(memcmp(k.buf, "hello\n", 6), 0);
  /* End of input, and the protocol does not keep the connection open:
   * flush, close, and the reader of our output sees end of file. */
  close(in[1]);
  cr_assert(tu_spin(R, rec_lost, &rec, 10));
  cr_assert_eq(rec.eofs, 1);
  cr_assert_eq(rec.lost_code, CT_ECONNDONE);
  cr_assert_eq(rec.lost_inside_call, 0);
  cr_assert(tu_spin(R, out_eof, &k, 10));
  tu_turns(R, 2);
  cr_assert_eq(rec.freed, 1);
  tu_rec_done(&rec);
  close(in[0]);
  close(out[0]);
  close(out[1]);
}

Test(stdio, half_close_keeps_writing_after_input_ends) {
  tu_rec rec = {.keep_open_on_eof = 1};
  int in[2], out[2];
  sink k;
  ct_transport *t = pipes(&rec, in, out, &k);
  cr_assert_eq(write(in[1], "question\n", 9), 9);
  close(in[1]);
  cr_assert(tu_spin(R, rec_eof, &rec, 10));
  cr_assert_eq(rec.got_len, 9);
  cr_assert_eq(rec.lost, 0, "half-close must keep the output open");
  cr_assert_eq(ct_transport_write_str(t, "late answer\n"), 0);
  want_out w = {&k, 12};
  cr_assert(tu_spin(R, out_has, &w, 10));
  cr_assert_eq(memcmp(k.buf, "late answer\n", 12), 0);
  cr_assert_eq(ct_transport_lose_connection(t), 0);
  cr_assert(tu_spin(R, rec_lost, &rec, 10));
  cr_assert_eq(rec.lost_code, CT_ECONNDONE);
  tu_rec_done(&rec);
  close(in[0]);
  close(out[0]);
  close(out[1]);
}

Test(stdio, regular_file_as_input_is_read_in_chunks) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/ct_stdio_in_%d", (int)getpid());
  size_t n = 1u << 20;
  char *data = tu_pattern(n, 3, 1);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, data, n), (ssize_t)n);
  lseek(fd, 0, SEEK_SET);
  unlink(path);
  int out[2];
  cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
  tu_rec rec = {0};
  ct_failure *err = NULL;
  ct_transport *t = ct_stdio_connect_fds(R, tu_rec_proto(&rec, &tu_rec_ops), fd,
                                         out[1], &err);
  cr_assert(t != NULL);
  /* Nothing is read inside connect: a chunk per loop turn. */
  cr_assert_eq(rec.got_len, 0);
  cr_assert(tu_spin(R, rec_lost, &rec, 10));
  cr_assert_eq(rec.got_len, n);
  cr_assert_eq(memcmp(rec.got, data, n), 0);
  cr_assert_leq(rec.max_chunk, 64 * 1024);
  cr_assert_eq(rec.eofs, 1);
  cr_assert_eq(rec.lost_code, CT_ECONNDONE);
  tu_rec_done(&rec);
  free(data);
  close(fd);
  close(out[0]);
  close(out[1]);
}

typedef struct bp {
  int pauses, resumes;
} bp;

static void bp_pause(void *arg) {
  ((bp *)arg)->pauses++;
}
static void bp_resume(void *arg) {
  ((bp *)arg)->resumes++;
}
static const ct_producer_ops bp_ops = {bp_pause, bp_resume, NULL};

static int bp_resumed(void *arg) {
  void **a = arg;
  sink_read(a[1]);
  return ((bp *)a[0])->resumes > 0;
}

Test(stdio, slow_reader_of_our_output_pauses_the_producer) {
  tu_rec rec = {0};
  int in[2], out[2];
  sink k;
  ct_transport *t = pipes(&rec, in, out, &k);
  bp b = {0};
  cr_assert_eq(ct_transport_register_producer(t, &bp_ops, &b, 1), 0);
  size_t n = 1u << 20;
  char *data = tu_pattern(n, 3, 1);
  cr_assert_eq(ct_transport_write(t, data, n), 0);
  /* A pipe holds 64 KiB: the rest is queued, above the high watermark. */
  cr_assert_eq(b.pauses, 1);
  cr_assert_gt(ct_transport_buffered(t), 256 * 1024);
  /* Reading our output drains it: the producer resumes. */
  void *arg[2] = {&b, &k};
  cr_assert(tu_spin(R, bp_resumed, arg, 10));
  ct_transport_abort(t);
  cr_assert(tu_spin(R, rec_lost, &rec, 10));
  cr_assert_eq(rec.lost_code, CT_ECONNABORTED);
  free(data);
  tu_rec_done(&rec);
  close(in[0]);
  close(in[1]);
  close(out[0]);
  close(out[1]);
}

Test(stdio, reader_gone_is_an_epipe_not_a_signal) {
  tu_rec rec = {0};
  int in[2], out[2];
  sink k;
  ct_transport *t = pipes(&rec, in, out, &k);
  close(out[0]);
  ct_transport_write_str(t, "nobody listens\n");
  cr_assert(tu_spin(R, rec_lost, &rec, 10));
  cr_assert_eq(rec.lost_code, CT_EPIPE);
  tu_rec_done(&rec);
  close(in[0]);
  close(in[1]);
  close(out[1]);
}

Test(stdio, terminal_round_trip_restores_flags) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  cr_assert(master >= 0);
  cr_assert_eq(grantpt(master), 0);
  cr_assert_eq(unlockpt(master), 0);
  int slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  cr_assert(slave >= 0);
  /* Raw mode: bytes as typed, no echo by the line discipline. */
  struct termios tio;
  tcgetattr(slave, &tio);
  cfmakeraw(&tio);
  tcsetattr(slave, TCSANOW, &tio);
  int flags = fcntl(slave, F_GETFL);
  tu_rec rec = {.echo = 1};
  ct_failure *err = NULL;
  ct_transport *t = ct_stdio_connect_fds(R, tu_rec_proto(&rec, &tu_rec_ops),
                                         slave, slave, &err);
  cr_assert(t != NULL, "%s", err ? err->message : "?");
  cr_assert(fcntl(slave, F_GETFL) & O_NONBLOCK);
  cr_assert_eq(write(master, "ping\n", 5), 5);
  sink k = {.fd = master};
  nonblock(master);
  want_out w = {&k, 5};
  cr_assert(tu_spin(R, out_has, &w, 10));
  cr_assert_eq(memcmp(k.buf, "ping\n", 5), 0);
  cr_assert_eq(ct_transport_lose_connection(t), 0);
  cr_assert(tu_spin(R, rec_lost, &rec, 10));
  cr_assert_eq(fcntl(slave, F_GETFL), flags, "the terminal's flags changed");
  tu_rec_done(&rec);
  close(slave);
  close(master);
}

Test(stdio, closed_descriptor_is_a_clear_error) {
  tu_rec rec = {0};
  ct_failure *err = NULL;
  cr_assert_null(
      ct_stdio_connect_fds(R, tu_rec_proto(&rec, &tu_rec_ops), 999, 1, &err));
  cr_assert_eq(err->code, CT_EBADF);
  cr_assert(strstr(err->message, "not open") != NULL, "%s", err->message);
  cr_assert_eq(rec.freed, 1);
  ct_failure_free(err);
}
