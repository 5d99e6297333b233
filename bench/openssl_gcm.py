"""OpenSSL's own one-pass AES-256-GCM rate without allocation, the anchor of bench/crypto.ts.

pyca `cryptography` (pinned in scripts/stack-requirements.txt, with the OpenSSL it is built with) runs
`update_into` over one BUFFER_BYTES block into one preallocated output buffer, so the timed loop is
OpenSSL's GCM kernel and nothing else: no allocation, no copy. Prints one JSON line:
{"openssl": version, "encrypt": {"wall": bytes/s, "cpu": bytes/CPU-s}, "decrypt": {...}}: per wall-clock
second like the Node side, and per CPU second of this (single) thread, which holds on a loaded machine.

Usage: python bench/openssl_gcm.py SECONDS BUFFER_BYTES [encrypt|decrypt|both]
"""

import json
import os
import sys
import time

from cryptography.hazmat.backends.openssl import backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# A fresh key and IV every 64 blocks keeps each GCM context far below its 64 GiB per-IV limit.
BLOCKS_PER_CONTEXT = 64


def rate(direction: str, seconds: float, data: bytes, out: memoryview) -> dict[str, float]:
    done = 0
    started, cpu = time.perf_counter(), time.thread_time()
    while True:
        cipher = Cipher(algorithms.AES(os.urandom(32)), modes.GCM(os.urandom(12)))
        context = cipher.encryptor() if direction == "encrypt" else cipher.decryptor()
        for _ in range(BLOCKS_PER_CONTEXT):
            context.update_into(data, out)
            done += len(data)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return {"wall": done / elapsed, "cpu": done / (time.thread_time() - cpu)}


def main() -> None:
    seconds, size = float(sys.argv[1]), int(sys.argv[2])
    directions = ["encrypt", "decrypt"] if len(sys.argv) < 4 or sys.argv[3] == "both" else [sys.argv[3]]
    data = os.urandom(size)
    # update_into needs room for one block less a byte beyond the input.
    out = memoryview(bytearray(size + 15))
    rates = {direction: rate(direction, seconds, data, out) for direction in directions}
    print(json.dumps({"openssl": backend.openssl_version_text(), **rates}))


main()
