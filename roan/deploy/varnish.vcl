vcl 4.1;
# Varnish in front of a Django site, with the purges roan sends:
#   PURGE /path                      one URL (200 "Purged N" or 404 "Not in cache")
#   BAN / + X-Ban-Url: ^/posts/      every URL matching a regex on the path (prefixes)
#   PURGE / + xkey-purge: tag1 tag2  every object tagged so (needs varnish-modules' xkey);
#                                    the origin tags pages with an "xkey: tag1 tag2" header
# and, with the backend's "SOFT": True, soft purges that mark stale instead of removing:
#   PURGE /path + X-Soft-Purge: 1    purge.soft(0s): TTL zero, grace kept
#   PURGE / + xkey-softpurge: t1 t2  xkey.softpurge(): the same for every tagged object
# A soft-purged page is served stale once, within its grace, while one background fetch
# gets the new copy: a popular page's purge sends one request to the origin, not one per
# waiting reader. Grace comes from the origin's "Cache-Control: stale-while-revalidate=N"
# (Varnish reads it), with the floor set in vcl_backend_response below.
# Every purge carries the page's Host (roan's HOSTS): PURGE finds the object by Host +
# URL, and BAN only bans objects stored for that Host. X-Purged-Count: 0 tells roan that
# nothing was cached (recorded as not_cached, not as a failure).
# roan's tests run this very file, replacing @ORIGIN_HOST@ and @ORIGIN_PORT@, and start
# varnishd with the parameters of varnishd.params beside it (-p name=value each): Varnish
# answers 503 for a response whose headers exceed http_resp_hdr_len (8 KiB by default);
# roan keeps its xkey header under ROAN_TAG_HEADER_LIMIT (2 KiB). Raise them together.
#
# roan settings for this cache:
#     ROAN_BACKENDS = {"varnish": {
#         "BACKEND": "roan.backends.varnish.VarnishBackend",
#         "NODES": ["http://127.0.0.1:6081"],
#         "HOSTS": ["www.example.com"],
#         "SOFT": True,            # optional: mark URLs and tags stale (see above)
#     }}
import std;
import purge;   # ships with varnish: purge.hard() returns how many objects went
import xkey;    # ships with varnish-modules

backend django { .host = "@ORIGIN_HOST@"; .port = "@ORIGIN_PORT@"; }

# Who may purge: roan's servers only. Behind a local proxy or TLS terminator every client
# is 127.0.0.1, so then guard PURGE/BAN with something else too (a secret header).
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
        if (req.http.xkey-softpurge) {
            set req.http.n-gone = xkey.softpurge(req.http.xkey-softpurge);
            return (synth(200, "Marked stale " + req.http.n-gone + " objects"));
        }
        return (hash);
    }
    # Nobody else may send the soft purge headers through to the origin or the hash.
    unset req.http.X-Soft-Purge;
    if (req.method == "BAN") {
        if (req.http.X-Ban-Url) {
            ban("obj.http.x-host == " + req.http.host + " && obj.http.x-url ~ " + req.http.X-Ban-Url);
            return (synth(200, "Banned"));
        }
        return (synth(400, "BAN needs X-Ban-Url"));
    }
}

sub roan_purge {
    if (req.http.X-Soft-Purge) {
        # TTL 0, grace and keep as they were: stale, served within grace while refetched.
        set req.http.n-gone = purge.soft(0s);
    } else {
        set req.http.n-gone = purge.hard();
    }
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
    # Grace: how long an expired or soft-purged page may still be served while one
    # background fetch replaces it. The origin's stale-while-revalidate sets it; at
    # least 30 s here so that a soft purge is soft. (A hard purge or a ban removes the
    # page whatever its grace.)
    if (beresp.grace < 30s) {
        set beresp.grace = 30s;
    }
    # stale-if-error: a background fetch that fails keeps the stale copy instead of
    # replacing it with the error (abandon keeps the object; Varnish 7.1 has no
    # stale-if-error of its own).
    if (beresp.status >= 500 && bereq.is_bgfetch) {
        return (abandon);
    }
    # A 404 for a short time only: crawlers fetch made-up URLs by the thousand. One that
    # read the database carries xkey tags, and a change purges it like any page.
    if (beresp.status == 404 && beresp.ttl > 60s) {
        set beresp.ttl = 60s;
    }
}

sub vcl_deliver {
    if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
    # Past its TTL (expired or soft-purged), served within grace: say so.
    if (obj.hits > 0 && obj.ttl <= 0s) { set resp.http.X-Cache = "STALE"; }
    unset resp.http.x-url;
    unset resp.http.x-host;
    # The tags are Varnish's (kept with the object, read by a purge): a visitor must not
    # learn them (a draft's 404 names its model and key).
    unset resp.http.xkey;
    # The other caches' tag headers, for the same reason (delete the line of the one a
    # CDN in front of this Varnish reads).
    unset resp.http.Cache-Tag;
    unset resp.http.Surrogate-Key;
    unset resp.http.Edge-Cache-Tag;
    unset resp.http.CDN-Tag;
}

sub vcl_synth {
    if (req.http.n-gone) { set resp.http.X-Purged-Count = req.http.n-gone; }
}
