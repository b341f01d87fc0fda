"""bench/http reference: Python's http.server (a thread per connection, as
`python -m http.server`, but HTTP/1.1 so that wrk's keep-alive works),
serving DIR, with /hello answered by a handler.  Usage: http_python.py PORT DIR"""
import functools
import http.server
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/hello":
            body = b"hello world\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass  # access log off


h = functools.partial(Handler, directory=sys.argv[2])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), h)
print("listening on 127.0.0.1:%s" % sys.argv[1], flush=True)
srv.serve_forever()
