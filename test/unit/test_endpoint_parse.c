/*
 * Endpoint description parsing: a table of good and bad strings for both
 * roles.  A good string is checked through its canonical form (which covers
 * every field), and that form must parse back to itself; a bad string must
 * fail with CT_EBADENDPOINT and a message naming the problem.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "ctwist/endpoint.h"

enum { SERVER = 0, CLIENT = 1 };

typedef struct good_case {
  int role;
  const char *desc;
  const char *canonical;
} good_case;

typedef struct bad_case {
  int role;
  const char *desc;
  const char *needle; /* must appear in the failure message */
} bad_case;

static const good_case goods[] = {
    /* servers: tcp */
    {SERVER, "tcp:8000", "tcp:8000"},
    {SERVER, "tcp:0", "tcp:0"},
    {SERVER, "TCP:65535", "tcp:65535"},
    {SERVER, "tcp:8000:interface=127.0.0.1", "tcp:8000:interface=127.0.0.1"},
    {SERVER, "tcp:port=80:backlog=5", "tcp:80:backlog=5"},
    {SERVER, "tcp:80:127.0.0.1:7", "tcp:80:interface=127.0.0.1:backlog=7"},
    {SERVER, "tcp:80:", "tcp:80"},
    {SERVER, "tcp:interface=127.0.0.1:port=1", "tcp:1:interface=127.0.0.1"},
    {SERVER, "tcp:80:reuseport=1", "tcp:80:reuseport=1"},
    {SERVER, "tcp:80:interface=\\:\\:1", "tcp:80:interface=\\:\\:1"},
    /* tcp6: positional order is port, backlog, interface (Twisted's) */
    {SERVER, "tcp6:8000", "tcp6:8000"},
    {SERVER, "tcp6:8000:interface=\\:\\:1", "tcp6:8000:interface=\\:\\:1"},
    {SERVER, "tcp6:8000:10:\\:\\:1", "tcp6:8000:interface=\\:\\:1:backlog=10"},
    /* unix */
    {SERVER, "unix:/run/x.sock", "unix:/run/x.sock"},
    {SERVER, "unix:/run/x.sock:mode=660", "unix:/run/x.sock:mode=660"},
    {SERVER, "unix:address=/tmp/s:lockfile=0", "unix:/tmp/s:lockfile=0"},
    {SERVER, "unix:path=/tmp/s:backlog=3", "unix:/tmp/s:backlog=3"},
    {SERVER, "unix:/tmp/s:600:9:0",
     "unix:/tmp/s:mode=600:backlog=9:lockfile=0"},
    {SERVER, "unix:@abstract-name", "unix:@abstract-name"},
    {SERVER, "unix:/tmp/a\\:b\\=c", "unix:/tmp/a\\:b\\=c"},
    {SERVER, "unix:/tmp/back\\\\slash", "unix:/tmp/back\\\\slash"},
    /* udp */
    {SERVER, "udp:9000", "udp:9000"},
    {SERVER, "udp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"},
    {SERVER, "udp:53:maxPacketSize=512", "udp:53:maxPacketSize=512"},
    {SERVER, "udp:0:interface=\\:\\:1", "udp:0:interface=\\:\\:1"},
    /* ssl (reserved: parsed, options kept) */
    {SERVER, "ssl:8443:privateKey=k.pem:certKey=c.pem",
     "ssl:8443:privateKey=k.pem:certKey=c.pem"},
    {SERVER, "ssl:443:k.pem:c.pem:TLSv1_METHOD",
     "ssl:443:privateKey=k.pem:certKey=c.pem:sslmethod=TLSv1_METHOD"},
    {SERVER, "ssl:443:extraCertChain=chain.pem",
     "ssl:443:extraCertChain=chain.pem"},
    /* Twisted's tokenizer: after '=' only ':' is an operator */
    {SERVER, "ssl:443:dhParameters=a=b", "ssl:443:dhParameters=a\\=b"},
    /* clients */
    {CLIENT, "tcp:host=example.org:port=80", "tcp:host=example.org:port=80"},
    {CLIENT, "tcp:example.org:80", "tcp:host=example.org:port=80"},
    {CLIENT, "tcp:host=example.org:80", "tcp:host=example.org:port=80"},
    {CLIENT, "tcp:example.org:port=80", "tcp:host=example.org:port=80"},
    {CLIENT, "tcp:127.0.0.1:80:timeout=5",
     "tcp:host=127.0.0.1:port=80:timeout=5"},
    {CLIENT, "tcp:h:1:timeout=2.5", "tcp:host=h:port=1:timeout=2.5"},
    {CLIENT, "tcp:h:1:timeout=0.125", "tcp:host=h:port=1:timeout=0.125"},
    {CLIENT, "tcp:h:1:bindAddress=127.0.0.1",
     "tcp:host=h:port=1:bindAddress=127.0.0.1"},
    {CLIENT, "tcp6:host=\\:\\:1:port=80", "tcp6:host=\\:\\:1:port=80"},
    {CLIENT, "unix:path=/var/foo/bar", "unix:path=/var/foo/bar"},
    {CLIENT, "unix:/var/foo/bar:lockfile=1:timeout=9",
     "unix:path=/var/foo/bar:lockfile=1:timeout=9"},
    {CLIENT, "unix:@abs", "unix:path=@abs"},
    {CLIENT, "udp:host=127.0.0.1:port=53", "udp:host=127.0.0.1:port=53"},
    {CLIENT, "ssl:web.example.com:443:caCertsDir=/etc/ssl/certs",
     "ssl:host=web.example.com:port=443:caCertsDir=/etc/ssl/certs"},
};

static const bad_case bads[] = {
    {SERVER, "", "empty"},
    {SERVER, "8080", "unknown kind '8080'"},
    {SERVER, "foo:80", "unknown kind 'foo'"},
    {SERVER, "port=80", "starts with option 'port'"},
    {SERVER, "tcp", "missing port"},
    {SERVER, "tcp:", "port '' is not a number in 0..65535"},
    {SERVER, "tcp:abc",
     "tcp endpoint: port 'abc' is not a number in 0..65535; expected "
     "tcp:PORT[:interface=ADDR][:backlog=N]"},
    {SERVER, "tcp:65536", "port '65536' is not a number"},
    {SERVER, "tcp:-1", "port '-1'"},
    {SERVER, "tcp:+80", "port '+80'"},
    {SERVER, "tcp: 80", "port ' 80'"},
    {SERVER, "tcp:99999999999999999999", "port '9999"},
    {SERVER, "tcp:80:interface=localhost",
     "interface 'localhost' is not a numeric"},
    {SERVER, "tcp:80:interface=::1", "interface is given twice"},
    {SERVER, "tcp:80:backlog=x", "backlog 'x'"},
    {SERVER, "tcp:80:reuseport=yes", "reuseport 'yes' is not 0 or 1"},
    {SERVER, "tcp:80:bogus=1",
     "unknown option 'bogus' (known: port, interface"},
    {SERVER, "tcp:80:port=81", "port is given twice"},
    {SERVER, "tcp:80:1.2.3.4:5:6", "too many positional arguments (at '6')"},
    {SERVER, "tcp:80\\", "lone backslash"},
    {SERVER, "tcp6:80:interface=127.0.0.1", "not a numeric IPv6 address"},
    {SERVER, "unix:", "path is empty"},
    {SERVER, "unix:@", "abstract socket name is empty"},
    {SERVER, "unix:mode=600", "missing path"},
    {SERVER, "unix:/tmp/s:mode=999", "mode '999' is not an octal"},
    {SERVER, "unix:/tmp/s:mode=17777", "mode '17777'"},
    {SERVER, "unix:/tmp/s:lockfile=2", "lockfile '2' is not 0 or 1"},
    {SERVER,
     "unix:/tmp/"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "path is too long"},
    {SERVER, "unix:/tmp/s:interface=1.2.3.4", "unknown option 'interface'"},
    {SERVER, "udp:80:backlog=5", "unknown option 'backlog'"},
    {SERVER, "udp:80:maxPacketSize=0", "maxPacketSize '0'"},
    {SERVER, "ssl:443:mode=600", "unknown option 'mode'"},
    {SERVER, "tcp:host=x:port=80", "unknown option 'host'"},
    {CLIENT, "tcp:host=example.org", "missing port"},
    {CLIENT, "tcp:port=80", "missing host"},
    {CLIENT, "tcp:example.org:0", "port '0' is not a number in 1..65535"},
    {CLIENT, "tcp:h:80:timeout=0", "timeout '0'"},
    {CLIENT, "tcp:h:80:timeout=-1", "timeout '-1'"},
    {CLIENT, "tcp:h:80:timeout=1e3", "timeout '1e3'"},
    {CLIENT, "tcp:h:80:bindAddress=myhost", "bindAddress 'myhost'"},
    {CLIENT, "tcp:host=:port=80", "host is empty"},
    {CLIENT, "tcp:80", "missing port"},
    {CLIENT, "tcp:h:80:interface=1.2.3.4", "unknown option 'interface'"},
    {CLIENT, "unix:path=/a:mode=600", "unknown option 'mode'"},
    {CLIENT, "udp:host=h:port=1:timeout=3", "unknown option 'timeout'"},
    {CLIENT, "nope:x", "client endpoint: unknown kind 'nope'"},
};

Test(endpoint_parse, good_strings_parse_to_their_canonical_form) {
  for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
    const good_case *g = &goods[i];
    ct_endpoint e = {0};
    ct_failure *err = NULL;
    int rc = g->role == CLIENT ? ct_endpoint_parse_client(g->desc, &e, &err)
                               : ct_endpoint_parse_server(g->desc, &e, &err);
    char msg[512] = "";
    if (err) {
      ct_failure_format(err, msg, sizeof(msg));
    }
    cr_assert_eq(rc, 0, "[%zu] %s: rc %d: %s", i, g->desc, rc, msg);
    cr_assert_null(err);
    cr_assert_eq(e.is_client, g->role == CLIENT);
    char buf[512];
    int n = ct_endpoint_format(&e, buf, sizeof(buf));
    cr_assert_eq((size_t)n, strlen(buf));
    cr_assert_str_eq(buf, g->canonical, "[%zu] %s", i, g->desc);
    /* The canonical form parses back to itself. */
    ct_endpoint again = {0};
    rc = g->role == CLIENT ? ct_endpoint_parse_client(buf, &again, NULL)
                           : ct_endpoint_parse_server(buf, &again, NULL);
    cr_assert_eq(rc, 0, "%s", buf);
    char buf2[512];
    ct_endpoint_format(&again, buf2, sizeof(buf2));
    cr_assert_str_eq(buf2, buf);
    ct_endpoint_clear(&again);
    ct_endpoint_clear(&e);
    cr_assert_eq(e.kind, CT_ENDPOINT_NONE);
  }
}

Test(endpoint_parse, bad_strings_name_the_field) {
  for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
    const bad_case *b = &bads[i];
    ct_endpoint e;
    memset(&e, 0xa5, sizeof(e)); /* the parser must not read it */
    ct_failure *err = NULL;
    int rc = b->role == CLIENT ? ct_endpoint_parse_client(b->desc, &e, &err)
                               : ct_endpoint_parse_server(b->desc, &e, &err);
    cr_assert_eq(rc, CT_EBADENDPOINT, "[%zu] '%s' rc %d", i, b->desc, rc);
    cr_assert_not_null(err, "%s", b->desc);
    cr_assert_eq(err->code, CT_EBADENDPOINT);
    cr_assert_str_eq(err->domain, "endpoint");
    cr_assert(strstr(err->message, b->needle) != NULL,
              "[%zu] '%s': message '%s' lacks '%s'", i, b->desc, err->message,
              b->needle);
    cr_assert(strstr(err->message, "expected") != NULL, "%s", err->message);
    cr_assert_eq(e.kind, CT_ENDPOINT_NONE);
    cr_assert_null(e.params);
    ct_failure_free(err);
    /* Without a failure pointer it still fails, quietly. */
    rc = b->role == CLIENT ? ct_endpoint_parse_client(b->desc, &e, NULL)
                           : ct_endpoint_parse_server(b->desc, &e, NULL);
    cr_assert_eq(rc, CT_EBADENDPOINT);
  }
}

Test(endpoint_parse, table_has_enough_cases) {
  cr_assert_geq(
      sizeof(goods) / sizeof(goods[0]) + sizeof(bads) / sizeof(bads[0]), 40);
}

Test(endpoint_parse, fields_and_defaults) {
  ct_endpoint e = {0};
  cr_assert_eq(ct_endpoint_parse_server("tcp:8000", &e, NULL), 0);
  cr_assert_eq(e.kind, CT_ENDPOINT_TCP);
  cr_assert_eq(e.port, 8000);
  cr_assert_null(e.interface);
  cr_assert_eq(e.backlog, CT_ENDPOINT_DEFAULT_BACKLOG);
  cr_assert_eq(e.reuseport, 0);
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_server("unix:/tmp/x:mode=660", &e, NULL), 0);
  cr_assert_eq(e.kind, CT_ENDPOINT_UNIX);
  cr_assert_str_eq(e.path, "/tmp/x");
  cr_assert_eq(e.mode, 0660);
  cr_assert_eq(e.lockfile, 1);
  cr_assert_eq(e.abstract, 0);
  cr_assert_str_eq(ct_endpoint_get_param(&e, "mode"), "660");
  cr_assert_str_eq(ct_endpoint_get_param(&e, "address"), "/tmp/x");
  cr_assert_null(ct_endpoint_get_param(&e, "backlog"));
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_client("tcp:host=h:port=80", &e, NULL), 0);
  cr_assert_str_eq(e.host, "h");
  cr_assert_eq(e.port, 80);
  cr_assert_float_eq(e.timeout, 30.0, 1e-9);
  cr_assert_null(e.bind_address);
  cr_assert_eq(e.nparams, 2);
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_client("unix:@sock", &e, NULL), 0);
  cr_assert_str_eq(e.path, "sock");
  cr_assert_eq(e.abstract, 1);
  cr_assert_eq(e.lockfile, 0);
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_server("udp:0", &e, NULL), 0);
  cr_assert_eq(e.kind, CT_ENDPOINT_UDP);
  cr_assert_eq(e.max_packet_size, CT_ENDPOINT_DEFAULT_MAX_PACKET);
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_server("ssl:443:privateKey=a\\:b.pem:foo=bar",
                                        &e, NULL),
               0);
  cr_assert_eq(e.kind, CT_ENDPOINT_SSL);
  cr_assert_str_eq(e.private_key, "a:b.pem");
  cr_assert_null(e.cert_key);
  cr_assert_str_eq(ct_endpoint_get_param(&e, "foo"), "bar");
  ct_endpoint_clear(&e);
  ct_endpoint_clear(&e); /* idempotent */
  ct_endpoint_clear(NULL);
}

Test(endpoint_parse, kind_names) {
  cr_assert_str_eq(ct_endpoint_kind_name(CT_ENDPOINT_TCP), "tcp");
  cr_assert_str_eq(ct_endpoint_kind_name(CT_ENDPOINT_TCP6), "tcp6");
  cr_assert_str_eq(ct_endpoint_kind_name(CT_ENDPOINT_UNIX), "unix");
  cr_assert_str_eq(ct_endpoint_kind_name(CT_ENDPOINT_UDP), "udp");
  cr_assert_str_eq(ct_endpoint_kind_name(CT_ENDPOINT_SSL), "ssl");
  cr_assert_str_eq(ct_endpoint_kind_name(CT_ENDPOINT_NONE), "none");
}

Test(endpoint_parse, format_sizes_like_snprintf) {
  ct_endpoint e = {0};
  cr_assert_eq(
      ct_endpoint_parse_server("tcp:8000:interface=127.0.0.1", &e, NULL), 0);
  int n = ct_endpoint_format(&e, NULL, 0);
  cr_assert_eq(n, (int)strlen("tcp:8000:interface=127.0.0.1"));
  char small[5];
  cr_assert_eq(ct_endpoint_format(&e, small, sizeof(small)), n);
  cr_assert_str_eq(small, "tcp:");
  ct_endpoint_clear(&e);
  cr_assert_eq(ct_endpoint_format(&e, small, sizeof(small)), CT_EINVAL);
  cr_assert_eq(ct_endpoint_format(NULL, small, sizeof(small)), CT_EINVAL);
}

Test(endpoint_parse, resolve_server_addresses) {
  ct_endpoint e = {0};
  struct sockaddr_storage ss;
  socklen_t len = 0;

  cr_assert_eq(
      ct_endpoint_parse_server("tcp:8000:interface=127.0.0.1", &e, NULL), 0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, NULL), 0);
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  cr_assert_eq(ss.ss_family, AF_INET);
  cr_assert_eq(len, sizeof(struct sockaddr_in));
  cr_assert_eq(ntohs(s4->sin_port), 8000);
  cr_assert_eq(ntohl(s4->sin_addr.s_addr), INADDR_LOOPBACK);
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_server("tcp:0", &e, NULL), 0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, NULL), 0);
  cr_assert_eq(ss.ss_family, AF_INET);
  cr_assert_eq(s4->sin_addr.s_addr, htonl(INADDR_ANY));
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_server("tcp6:81", &e, NULL), 0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, NULL), 0);
  cr_assert_eq(ss.ss_family, AF_INET6);
  cr_assert_eq(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 81);
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_server("udp:0:interface=\\:\\:1", &e, NULL),
               0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, NULL), 0);
  cr_assert_eq(ss.ss_family, AF_INET6);
  cr_assert_eq(len, sizeof(struct sockaddr_in6));
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_server("unix:/tmp/x.sock", &e, NULL), 0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, NULL), 0);
  struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
  cr_assert_eq(sun->sun_family, AF_UNIX);
  cr_assert_str_eq(sun->sun_path, "/tmp/x.sock");
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_server("unix:@abs", &e, NULL), 0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, NULL), 0);
  cr_assert_eq(sun->sun_path[0], '\0');
  cr_assert_eq(memcmp(sun->sun_path + 1, "abs", 3), 0);
  cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + 4);
  ct_endpoint_clear(&e);

  ct_failure *err = NULL;
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, &err), CT_EINVAL);
  cr_assert_not_null(err);
  ct_failure_free(err);
}

Test(endpoint_parse, resolve_client_addresses) {
  ct_endpoint e = {0};
  struct sockaddr_storage ss;
  socklen_t len = 0;
  cr_assert_eq(ct_endpoint_parse_client("tcp:127.0.0.1:9:bindAddress=127.0.0.1",
                                        &e, NULL),
               0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, NULL), 0);
  cr_assert_eq(ss.ss_family, AF_INET);
  cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9);
  cr_assert_eq(ct_endpoint_resolve_bind(&e, &ss, &len, NULL), 0);
  cr_assert_eq(len, sizeof(struct sockaddr_in));
  cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 0);
  ct_endpoint_clear(&e);

  /* A name is never looked up here (that would block): ct_resolve() does
   * it asynchronously. */
  ct_failure *err = NULL;
  cr_assert_eq(ct_endpoint_parse_client("tcp:localhost:80", &e, NULL), 0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, &err), CT_EDNS);
  cr_assert(strstr(err->message, "ct_resolve") != NULL, "%s", err->message);
  ct_failure_free(err);
  cr_assert_eq(ct_endpoint_resolve_bind(&e, &ss, &len, NULL), 0);
  cr_assert_eq(len, 0);
  ct_endpoint_clear(&e);

  cr_assert_eq(ct_endpoint_parse_client("tcp6:\\:\\:1:80", &e, NULL), 0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, NULL), 0);
  cr_assert_eq(ss.ss_family, AF_INET6);
  ct_endpoint_clear(&e);

  /* ".invalid" never resolves (RFC 6761); it is not even tried. */
  cr_assert_eq(
      ct_endpoint_parse_client("tcp:no-such-host.invalid:80", &e, NULL), 0);
  cr_assert_eq(ct_endpoint_resolve(&e, &ss, &len, &err), CT_EDNS);
  cr_assert_not_null(err);
  cr_assert(strstr(err->message, "no-such-host.invalid") != NULL);
  ct_failure_free(err);
  ct_endpoint_clear(&e);
}
