# Sourced by bench/http/run.sh and icount.sh: nginx_conf_write DIR WWW PORT
# [TOP-LEVEL DIRECTIVES] writes DIR/nginx.conf for nginx-light serving WWW
# on 127.0.0.1:PORT (one worker, sendfile on, access log off, /hello
# answered by `return 200`).
nginx_conf_write() {
  local dir=$1 www=$2 port=$3 extra=${4:-}
  mkdir -p "$dir/tmp"
  cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
$extra
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000000;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  types { application/octet-stream bin; }
  server {
    listen 127.0.0.1:$port;
    root $www;
    location = /hello { default_type text/plain; return 200 "hello world\n"; }
  }
}
CONF
}
