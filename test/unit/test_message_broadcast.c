/*
 * Broadcast to peers that do not read (issue 9, failure 1): one client
 * sends ten 4 MiB messages that the server relays to every other
 * connection; 20 of those never read, 2 read everything.  Recipients share
 * one copy of each message (ct_bytes), so the process grows by about the
 * messages themselves, not by 20 copies of them (the old code reached
 * 836 MB); the healthy peers receive every byte; the slow-consumer limits
 * bound what the non-readers may hold.  Real loopback TCP.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctwist/message.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#define NONREADERS 20
#define READERS 2
#define MESSAGES 10
#define MSG_SIZE (4u * 1024u * 1024u)

static ct_reactor *R;
static ct_msg_server *S;
static size_t connected;
static size_t relayed;

static void on_connect(ct_messenger *m, void *arg) {
  (void)arg;
  (void)m;
  connected++;
}

/* Relay every message to every connection but its sender. */
static void on_message(ct_messenger *m, const ct_msg_header *h,
                       const char *content, size_t len, void *arg) {
  (void)arg;
  ct_messenger *all[64];
  ct_messenger *others[64];
  size_t n = ct_msg_server_messengers(S, all, 64), k = 0;
  for (size_t i = 0; i < n; i++)
    if (all[i] != m)
      others[k++] = all[i];
  cr_assert_eq(ct_msg_server_multicast(S, others, k, h, content, len), k);
  relayed++;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmRSS: %ld", &v) == 1)
      break;
  if (f != NULL)
    fclose(f);
  return v;
}

static int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int rc = connect(fd, (struct sockaddr *)&sin, sizeof sin);
  cr_assert(rc == 0 || errno == EINPROGRESS);
  return fd;
}

Test(message_broadcast, non_readers_do_not_grow_the_process, .timeout = 120) {
  R = ct_reactor_new();
  ct_msg_callbacks cb = {.on_connect = on_connect, .on_message = on_message};
  ct_failure *err = NULL;
  S = ct_msg_server_listen(R, "tcp:0:interface=127.0.0.1", &cb, NULL, &err);
  cr_assert_not_null(S);
  int port = ct_msg_server_port(S);

  /* The frame the sender sends ten times. */
  char *content = malloc(MSG_SIZE);
  for (size_t i = 0; i < MSG_SIZE; i++)
    content[i] = (char)(i * 13 + i / 4096);
  char *frame;
  size_t flen;
  cr_assert_eq(ct_msg_encode(NULL, content, MSG_SIZE, &frame, &flen), 0);
  free(content);

  int snd = raw_connect(port);
  int readers[READERS], non[NONREADERS];
  for (int i = 0; i < NONREADERS; i++)
    non[i] = raw_connect(port);
  for (int i = 0; i < READERS; i++)
    readers[i] = raw_connect(port);
  while (connected < 1 + NONREADERS + READERS)
    ct_reactor_iterate(R);
  long rss0 = rss_kib();
  long peak = rss0;

  size_t sent = 0, total = flen * MESSAGES;
  size_t got[READERS] = {0};
  char *sink = malloc(256 * 1024);
  for (;;) {
    ct_reactor_iterate(R);
    if (sent < total) {
      size_t off = sent % flen;
      ssize_t n = send(snd, frame + off, flen - off, MSG_DONTWAIT);
      if (n > 0)
        sent += (size_t)n;
    }
    int done = 1;
    for (int i = 0; i < READERS; i++) {
      ssize_t n;
      while ((n = recv(readers[i], sink, 256 * 1024, MSG_DONTWAIT)) > 0)
        got[i] += (size_t)n;
      done &= got[i] == total;
    }
    long r = rss_kib();
    if (r > peak)
      peak = r;
    if (done)
      break;
  }
  cr_assert_eq(relayed, MESSAGES);
  for (int i = 0; i < READERS; i++)
    cr_assert_eq(got[i], total, "reader %d got %zu of %zu", i, got[i], total);
  long growth_mib = (peak - rss0) / 1024;
  cr_assert_lt(growth_mib, 64, "RSS grew by %ld MiB", growth_mib);

  close(snd);
  for (int i = 0; i < READERS; i++)
    close(readers[i]);
  for (int i = 0; i < NONREADERS; i++)
    close(non[i]);
  free(sink);
  free(frame);
  ct_msg_server_free(S);
  for (int i = 0; i < 16; i++)
    ct_reactor_iterate(R);
  ct_reactor_free(R);
}
