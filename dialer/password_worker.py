"""The password-hashing worker: a small process that only hashes and verifies passwords (argon2).

The dialer starts it on the first login (`dialer.auth.PasswordWork`) and speaks JSON lines over its
standard input and output; it imports nothing but argon2, so it stays small between hashes.
"""

from __future__ import annotations

import json
import os
import secrets
import sys

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


def main() -> int:
    # The lowest priority, for this process and the threads argon2 starts: on a busy machine a
    # login waits, a debtor on the line does not.
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    hasher = PasswordHasher()
    dummy = ""
    for line in sys.stdin:
        request = json.loads(line)
        password = str(request["password"])
        if request["op"] == "hash":
            reply: dict[str, object] = {"hash": hasher.hash(password)}
        else:
            stored = request.get("hash")
            if stored is None:  # an unknown login: the same work as a wrong password
                dummy = dummy or hasher.hash(secrets.token_urlsafe(16))
            try:
                ok = hasher.verify(stored or dummy, password) and stored is not None
            except (VerificationError, InvalidHashError):
                ok = False
            reply = {"ok": ok}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
