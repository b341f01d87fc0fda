"""A Twisted web site for the HTTP interop tests: static.File over a
directory, plus /chunked/N (a body of N bytes written in pieces without a
Content-Length, so Twisted sends it chunked) and /redirect (302 to the
static file given in the query).  Listens on 127.0.0.1 port 0 and prints
"listening on 127.0.0.1:PORT"."""
import sys

from twisted.internet import reactor
from twisted.web import resource, server, static, util


class Chunked(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        n = int(request.postpath[0]) if request.postpath else 0
        left = n
        i = 0
        while left > 0:
            piece = bytes((i + k) % 251 for k in range(min(left, 7919)))
            request.write(piece)
            left -= len(piece)
            i += len(piece)
        request.finish()
        return server.NOT_DONE_YET


class Redirect(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return util.redirectTo(request.args[b"to"][0], request)


root = static.File(sys.argv[1])
root.putChild(b"chunked", Chunked())
root.putChild(b"redirect", Redirect())
port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
print("listening on 127.0.0.1:%d" % port.getHost().port, flush=True)
reactor.run()
