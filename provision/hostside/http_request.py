"""One request to the node's own HTTP API, made on the node (the API binds client_addr, often
127.0.0.1): prints {"status": .., "body": ..}, for an error status too, or {"error": ..} when
the agent does not answer.

    python -c <this file> METHOD URL TIMEOUT_S

The request carries CONSUL_HTTP_TOKEN when set; an https:// URL is asked with the CA and client
certificate of CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY. Standard library only.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request


def tls_context() -> ssl.SSLContext | None:
    """For an https:// URL: the CA and client certificate of CONSUL_CACERT, CONSUL_CLIENT_CERT
    and CONSUL_CLIENT_KEY, as the senate CLI takes them (None: the default context)."""
    ca = os.environ.get("CONSUL_CACERT")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    cert = os.environ.get("CONSUL_CLIENT_CERT")
    if cert:
        ctx.load_cert_chain(cert, os.environ.get("CONSUL_CLIENT_KEY") or None)
    return ctx


def main(argv: list[str]) -> int:
    method, url = argv[0], argv[1]
    try:
        data = b"" if method != "GET" else None
        req = urllib.request.Request(url, method=method, data=data)
        if os.environ.get("CONSUL_HTTP_TOKEN"):
            req.add_header("X-Consul-Token", os.environ["CONSUL_HTTP_TOKEN"])
        with urllib.request.urlopen(req, timeout=float(argv[2]), context=tls_context()) as r:
            print(json.dumps({"status": r.status, "body": r.read().decode()}))
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
    except Exception as e:
        print(json.dumps({"error": str(e)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
