#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The script an operator would write instead of rekey: rotate every object of a bucket to a new KMS key
with the AWS S3 Encryption Client for Python (amazon-s3-encryption-client 4.0).

  s3ec_rotate.py --bucket B --old-key-id OLD --new-key-id NEW [--threads 8] [--prefix P]

Lists the bucket, then in a pool of threads: get_object under the old key (the client decrypts and checks
the GCM tag, buffering the whole plaintext), put_object of the same key under the new key (V3, one shot).
No conditional write, no tags or user metadata carried over, no record of progress: what rekey's
guarantees add is exactly what this script leaves out. bench/peer-script.ts runs it against rekey.

Endpoints and region as the AWS conventions say (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_KMS, AWS_REGION).
Prints one JSON line: {"objects": n, "bytes": plaintext bytes, "failed": n}; exit 1 when any object failed.
Never prints plaintext or key material.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
from s3_encryption.materials import AlgorithmSuite, CommitmentPolicy, KmsKeyring


def clients(threads: int):
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = boto3.session.Session(region_name=region)
    # One connection per thread, as a user sizing the pool to the threads would.
    s3_cfg = Config(s3={"addressing_style": "path"}, max_pool_connections=threads, retries={"mode": "standard"})

    def s3():
        return session.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3"), config=s3_cfg)

    kms = session.client("kms", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_KMS"),
                         config=Config(max_pool_connections=threads, retries={"mode": "standard"}))
    return s3, kms


def s3ec(s3, kms, key_id: str):
    # Reads V2 and V3 (the estate rekey rotates holds both), writes V3 with key commitment.
    cfg = S3EncryptionClientConfig(
        keyring=KmsKeyring(kms_client=kms, kms_key_id=key_id),
        encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT,
    )
    return S3EncryptionClient(wrapped_s3_client=s3(), config=cfg)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--old-key-id", required=True)
    p.add_argument("--new-key-id", required=True)
    p.add_argument("--threads", type=int, default=8)
    a = p.parse_args()

    s3, kms = clients(a.threads)
    reader, writer, lister = s3ec(s3, kms, a.old_key_id), s3ec(s3, kms, a.new_key_id), s3()

    def rotate(key: str) -> int:
        body = reader.get_object(Bucket=a.bucket, Key=key)["Body"].read()
        writer.put_object(Bucket=a.bucket, Key=key, Body=body)
        return len(body)

    keys = [o["Key"]
            for page in lister.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix)
            for o in page.get("Contents", [])]
    done, failed = 0, 0
    with ThreadPoolExecutor(max_workers=a.threads) as pool:
        for future in [pool.submit(rotate, k) for k in keys]:
            try:
                done += future.result()
            except Exception as e:  # one failed object must not stop the others, as in rekey
                failed += 1
                print(f"s3ec_rotate: {type(e).__name__}: {e}", file=sys.stderr)
    print(json.dumps({"objects": len(keys), "bytes": done, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
