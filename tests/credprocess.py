"""A ``credential_process`` for the tests: prints the key pair a JSON file names.

In an AWS config file: ``credential_process = PYTHON credprocess.py CURRENT.json LOG``.
CURRENT.json holds ``{"AccessKeyId": ..., "SecretAccessKey": ...}``; a test rewrites it to move
the source to another key, as an SSO or STS broker does when it hands out a new session. Each
run appends a line to LOG, so a test can tell how often the credential chain was re-resolved.

The answer's Expiration lies 12 hours ahead: botocore then never refreshes on its own clock
(advisory 15 min, mandatory 10 min before expiry), and only a re-resolution after the server's
ExpiredToken can pick the new key up. Standard library only: it runs in a fresh interpreter.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    current_path, log_path = Path(argv[1]), Path(argv[2])
    current = json.loads(current_path.read_text())
    with log_path.open("a") as log:
        log.write(current["AccessKeyId"] + "\n")
    expiration = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
    answer = {
        "Version": 1,
        "AccessKeyId": current["AccessKeyId"],
        "SecretAccessKey": current["SecretAccessKey"],
        "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
