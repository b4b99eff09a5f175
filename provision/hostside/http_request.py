"""One request to the node's own HTTP API, made on the node (the API binds client_addr, often
127.0.0.1): prints {"status": .., "body": ..}, for an error status too, or {"error": ..} when
the agent does not answer.

    python -c <this file> METHOD URL TIMEOUT_S

Standard library only.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    method, url = argv[0], argv[1]
    try:
        data = b"" if method != "GET" else None
        req = urllib.request.Request(url, method=method, data=data)
        with urllib.request.urlopen(req, timeout=float(argv[2])) as r:
            print(json.dumps({"status": r.status, "body": r.read().decode()}))
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
    except Exception as e:
        print(json.dumps({"error": str(e)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
