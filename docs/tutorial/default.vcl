vcl 4.1;
# roan's tutorial: Varnish in front of a Django site, with the purges roan sends.
#
#     apt-get install varnish varnish-modules
#     cp default.vcl /etc/varnish/default.vcl && systemctl restart varnish
#
# Debian's varnish listens on :6081 and reads /etc/varnish/default.vcl. Adjust the one
# line marked "adjust" if Django does not run on 127.0.0.1:8000.
#
#   PURGE /path                      one URL (200 "Purged N", or 404: recorded not_cached)
#   BAN / + X-Ban-Url: ^/posts/      every URL under a prefix, for that Host
#   PURGE / + xkey-purge: tag1 tag2  every page tagged so (the xkey of varnish-modules);
#                                    roan's CacheTagMiddleware writes the "xkey" header
#
# roan's settings for this cache:
#     ROAN_BACKENDS = {"varnish": {
#         "BACKEND": "roan.backends.varnish.VarnishBackend",
#         "NODES": ["http://127.0.0.1:6081"],
#         "HOSTS": ["127.0.0.1:6081"],   # host and port as readers send them
#     }}
import std;
import purge;   # ships with varnish: purge.hard() says how many objects went
import xkey;    # ships with varnish-modules

# adjust: where Django runs.
backend django { .host = "127.0.0.1"; .port = "8000"; }

# Who may purge: roan's servers only.
acl purgers { "127.0.0.1"; "::1"; }

sub vcl_recv {
    if (req.method == "PURGE" || req.method == "BAN") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
    }
    if (req.method == "PURGE") {
        if (req.http.xkey-purge) {
            set req.http.n-gone = xkey.purge(req.http.xkey-purge);
            return (synth(200, "Invalidated " + req.http.n-gone + " objects"));
        }
        return (hash);
    }
    if (req.method == "BAN") {
        if (req.http.X-Ban-Url) {
            ban("obj.http.x-host == " + req.http.host + " && obj.http.x-url ~ " + req.http.X-Ban-Url);
            return (synth(200, "Banned"));
        }
        return (synth(400, "BAN needs X-Ban-Url"));
    }
    # Signed-in users (the admin) are never cached.
    if (req.http.Cookie ~ "sessionid") {
        return (pass);
    }
}

sub roan_purge {
    set req.http.n-gone = purge.hard();
    if (req.http.n-gone == "0") {
        return (synth(404, "Not in cache"));
    }
    return (synth(200, "Purged " + req.http.n-gone));
}
sub vcl_hit  { if (req.method == "PURGE") { call roan_purge; } }
sub vcl_miss { if (req.method == "PURGE") { call roan_purge; } }

sub vcl_backend_response {
    # Kept on the object so that bans can match on host and path (ban lurker friendly).
    set beresp.http.x-url = bereq.url;
    set beresp.http.x-host = bereq.http.host;
}

sub vcl_deliver {
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
    unset resp.http.x-url;
    unset resp.http.x-host;
    # The tags are for Varnish, not for visitors.
    unset resp.http.xkey;
}

sub vcl_synth {
    if (req.http.n-gone) { set resp.http.X-Purged-Count = req.http.n-gone; }
}
