"""bench/http reference: a Twisted site with static.File over DIR and a
"hello" resource at /hello.  Usage: http_twisted.py PORT DIR"""
import sys

from twisted.internet import reactor
from twisted.web import resource, server, static


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"hello world\n"


root = static.File(sys.argv[2])
root.putChild(b"hello", Hello())
site = server.Site(root)
site.log = lambda request: None  # access log off, as for the others
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
print("listening on 127.0.0.1:%s" % sys.argv[1], flush=True)
reactor.run()
