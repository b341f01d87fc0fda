/* Descriptor watchers with a pipe: readable, writable, replace, removal
 * from inside the callback, bad input. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <unistd.h>

#include "ctwist/reactor.h"

static ct_clock *clk;
static ct_reactor *r;
static int p[2];

static void setup(void) {
  /* I/O runs from the loop even on a fake clock. */
  clk = ct_clock_new();
  r = ct_reactor_new_with_clock(clk);
  cr_assert_eq(pipe(p), 0);
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  fcntl(p[1], F_SETFL, O_NONBLOCK);
}

static void teardown(void) {
  ct_reactor_free(r);
  ct_clock_free(clk);
  close(p[0]);
  close(p[1]);
}

TestSuite(fd, .init = setup, .fini = teardown);

static char got[64];
static size_t ngot;

static void on_read(ct_reactor *rr, int fd, int events, void *arg) {
  cr_assert_eq(events, CT_READABLE);
  char buf[16];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n > 0) {
    memcpy(got + ngot, buf, (size_t)n);
    ngot += (size_t)n;
  }
  if (ngot >= 5) {
    /* Remove ourselves from inside our own callback, then stop. */
    cr_assert_eq(ct_reactor_remove_reader(rr, fd), 0);
    cr_assert_eq(ct_reactor_remove_reader(rr, fd), CT_ENOTFOUND);
    ct_reactor_stop(rr);
  }
  (void)arg;
}

static int writes;
static void on_write(ct_reactor *rr, int fd, int events, void *arg) {
  cr_assert_eq(events, CT_WRITABLE);
  const char *msg = arg;
  cr_assert_eq(write(fd, msg + writes, 1), 1);
  if (++writes == 5)
    cr_assert_eq(ct_reactor_remove_writer(rr, fd), 0);
}

Test(fd, pipe_writer_then_reader) {
  ngot = 0;
  writes = 0;
  cr_assert_eq(ct_reactor_add_reader(r, p[0], on_read, NULL), 0);
  cr_assert_eq(ct_reactor_add_writer(r, p[1], on_write, "hello"), 0);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_eq(ngot, 5);
  cr_assert_eq(memcmp(got, "hello", 5), 0);
  cr_assert_eq(ct_reactor_remove_writer(r, p[1]), CT_ENOTFOUND);
}

static int first_calls, second_calls;
static void first(ct_reactor *rr, int fd, int events, void *arg) {
  first_calls++;
}
static void second(ct_reactor *rr, int fd, int events, void *arg) {
  second_calls++;
  char c;
  cr_assert_eq(read(fd, &c, 1), 1);
}

Test(fd, add_again_replaces_callback) {
  cr_assert_eq(ct_reactor_add_reader(r, p[0], first, NULL), 0);
  cr_assert_eq(ct_reactor_add_reader(r, p[0], second, NULL), 0);
  cr_assert_eq(write(p[1], "x", 1), 1);
  ct_reactor_iterate(r);
  cr_assert_eq(first_calls, 0);
  cr_assert_eq(second_calls, 1);
  ct_reactor_iterate(r); /* nothing more to read */
  cr_assert_eq(second_calls, 1);
}

Test(fd, reader_and_writer_on_one_descriptor_and_free_with_watchers) {
  int sv[2];
  cr_assert_eq(pipe(sv), 0);
  cr_assert_eq(ct_reactor_add_writer(r, p[1], first, NULL), 0);
  cr_assert_eq(ct_reactor_add_reader(r, sv[0], first, NULL), 0);
  cr_assert_eq(ct_reactor_add_reader(r, 200, first, NULL), CT_EBADF,
               "closed descriptor");
  ct_reactor_iterate(r);
  cr_assert_eq(first_calls, 1, "pipe is writable, other end is empty");
  /* teardown frees the reactor with watchers still registered */
  close(sv[0]);
  close(sv[1]);
}

Test(fd, bad_input) {
  cr_assert_eq(ct_reactor_add_reader(NULL, p[0], first, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_add_reader(r, -1, first, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_add_writer(r, p[1], NULL, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_remove_reader(r, -1), CT_EINVAL);
  cr_assert_eq(ct_reactor_remove_reader(r, 100000), CT_ENOTFOUND);
  cr_assert_eq(ct_reactor_remove_writer(NULL, 1), CT_EINVAL);
}
