/*
 * A stand-in for <criterion/criterion.h> used only by the ThreadSanitizer
 * build (`make tsan`): Criterion's runner cannot start under TSan (it
 * aborts with "Could not initialize inheritable arena", Criterion issue
 * #274).  It provides the subset the thread tests use -- Test, TestSuite
 * with .init/.fini, cr_assert*, -- and a main() that runs every test in
 * its own forked process, like Criterion, and exits non-zero if any
 * failed.  Tests stay written against Criterion; only this build swaps the
 * header.
 */
#ifndef CT_TSAN_CRITERION_SHIM_H
#define CT_TSAN_CRITERION_SHIM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct shim_suite {
  void (*init)(void);
  void (*fini)(void);
  double timeout;
};

struct shim_test {
  const char *suite, *name;
  void (*fn)(void);
  const struct shim_suite *cfg;
};

static struct shim_test shim_tests[256];
static int shim_ntests;

static inline void shim_register(const char *suite, const char *name,
                                 void (*fn)(void),
                                 const struct shim_suite *cfg) {
  if (shim_ntests < 256)
    shim_tests[shim_ntests++] = (struct shim_test){suite, name, fn, cfg};
}

#define TestSuite(s, ...) struct shim_suite shim_suite_##s = {__VA_ARGS__}

#define Test(s, n, ...)                                                        \
  extern struct shim_suite shim_suite_##s __attribute__((weak));               \
  static void shim_test_##s##_##n(void);                                       \
  __attribute__((constructor)) static void shim_reg_##s##_##n(void) {          \
    shim_register(#s, #n, shim_test_##s##_##n, &shim_suite_##s);               \
  }                                                                            \
  static void shim_test_##s##_##n(void)

#define SHIM_FAIL(...)                                                         \
  do {                                                                         \
    fprintf(stderr, "%s:%d: assertion failed: ", __FILE__, __LINE__);          \
    fprintf(stderr, "" __VA_ARGS__);                                           \
    fputc('\n', stderr);                                                       \
    exit(1);                                                                   \
  } while (0)

#define cr_assert(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond))                                                               \
      SHIM_FAIL("%s " __VA_ARGS__, #cond);                                     \
  } while (0)
#define cr_assert_fail(...) SHIM_FAIL(__VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                            \
  cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  int failed = 0;
  for (int i = 0; i < shim_ntests; i++) {
    const struct shim_test *t = &shim_tests[i];
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
      if (t->cfg != NULL && t->cfg->timeout > 0)
        alarm((unsigned)t->cfg->timeout);
      if (t->cfg != NULL && t->cfg->init != NULL)
        t->cfg->init();
      t->fn();
      if (t->cfg != NULL && t->cfg->fini != NULL)
        t->cfg->fini();
      exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("[%s] %s::%s\n", ok ? "PASS" : "FAIL", t->suite, t->name);
    failed += !ok;
  }
  printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n",
         shim_ntests, shim_ntests - failed, failed);
  return failed != 0;
}

#endif
