/*
 * ct-msg-echo: a message-protocol server that sends every message back to
 * its sender (same header, same content; the content-length is rewritten
 * by the sender as always).  A message whose header has "broadcast": 1 is
 * sent to every connection instead.
 *
 *   ct-msg-echo [--listen ENDPOINT] [--quiet]
 *
 * ENDPOINT defaults to tcp:0:interface=127.0.0.1.  Once listening, the
 * program prints the bound port (or 0 for Unix sockets) on a line of its
 * own on stdout and flushes it, so scripts can start it on port 0.
 * SIGINT/SIGTERM stop it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "ctwist/message.h"

static int quiet;

static void on_message(ct_messenger *m, const ct_msg_header *h,
                       const char *content, size_t len, void *arg) {
  ct_msg_server *s = *(ct_msg_server **)arg;
  int64_t b = 0;
  if (ct_msg_header_get_int(h, "broadcast", &b) == 0 && b != 0)
    ct_msg_server_broadcast(s, h, content, len);
  else
    ct_messenger_send(m, h, content, len);
}

static void on_connect(ct_messenger *m, void *arg) {
  (void)arg;
  if (!quiet)
    ct_log(CT_LOG_INFO, "ct-msg-echo", "connection %llu from %s",
           (unsigned long long)ct_messenger_id(m), ct_messenger_peer_str(m));
}

static void on_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)arg;
  if (!quiet)
    ct_log(CT_LOG_INFO, "ct-msg-echo", "connection %llu closed (%s); %zu left",
           (unsigned long long)ct_messenger_id(m),
           reason != NULL ? ct_err_name(reason->code) : "?", alive);
}

int main(int argc, char **argv) {
  const char *endpoint = "tcp:0:interface=127.0.0.1";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
      endpoint = argv[++i];
    } else if (strcmp(argv[i], "--quiet") == 0) {
      quiet = 1;
    } else {
      fprintf(stderr, "usage: %s [--listen ENDPOINT] [--quiet]\n", argv[0]);
      return 2;
    }
  }
  ct_reactor *r = ct_reactor_new();
  if (r == NULL)
    return 1;
  /* The server pointer is only known after listening; the callbacks get it
   * through this slot. */
  ct_msg_server *server = NULL;
  ct_msg_callbacks cb = {on_connect, on_message, on_close, NULL, &server};
  ct_msg_options opts = {.no_delay = 1};
  ct_failure *err = NULL;
  server = ct_msg_server_listen(r, endpoint, &cb, &opts, &err);
  if (server == NULL) {
    ct_failure_print(err, stderr);
    ct_failure_free(err);
    ct_reactor_free(r);
    return 1;
  }
  int port = ct_msg_server_port(server);
  printf("%d\n", port > 0 ? port : 0);
  fflush(stdout);
  int rc = ct_reactor_run(r);
  ct_msg_server_free(server);
  /* Let the closes run before freeing the reactor. */
  for (int i = 0; i < 4; i++)
    ct_reactor_iterate(r);
  ct_reactor_free(r);
  return rc == 0 ? 0 : 1;
}
