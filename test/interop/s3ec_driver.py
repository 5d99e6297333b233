#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Interop driver: write and read S3EC objects with the real AWS S3 Encryption Client for Python.

Used by rekey's Node tests to prove that what rekey rotates was written by a real S3EC client, and that
what rekey leaves behind is still readable by one. Runs against any S3 + KMS endpoint (moto in tests).

  s3ec_driver.py put  --bucket B --key K --kms-key-id ID --format v2|v3 [--instruction-file]
                      [--context JSON] [--metadata JSON] [--content-type T]
                      [--multipart [--part-size BYTES]] --in FILE
  s3ec_driver.py get  --bucket B --key K --kms-key-id ID [--context JSON]
                      [--policy allow|require|forbid] [--allow-legacy] --out FILE
  s3ec_driver.py get-many < JOBS                    JOBS: JSON array of {id, bucket, key, kmsKeyId, context?};
                                                    one line per job {id, ok, bytes, sha256 | error}
  s3ec_driver.py meta --bucket B --key K            raw S3EC metadata + instruction file, as stored
  s3ec_driver.py create-bucket --bucket B
  s3ec_driver.py create-key [--description TEXT]    symmetric KMS key; prints its KeyId and Arn

Endpoints and region follow the AWS conventions: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_KMS (falling back to
AWS_ENDPOINT_URL), AWS_REGION (falling back to AWS_DEFAULT_REGION, then us-east-1); credentials from the
default chain. S3 uses path-style addressing. Every command prints one JSON line on success (exit 0) and
one line `s3ec_driver: error: ...` on stderr on failure (exit 1; exit 2 for bad usage). Nothing printed
contains a plaintext data key or plaintext object data (only sizes and SHA-256 digests).

JSON printed: put -> op, bucket, key, format, bytes, sha256 (of the plaintext), instruction_file, multipart,
[parts], etag, [instruction_etag], metadata (the S3EC keys on the object, as HeadObject returns them),
[instruction] (the instruction file's JSON map), kms_calls. get -> op, bucket, key, bytes, sha256, etag,
format (v1|v2|v3), metadata_location (object|instruction-file), policy, kms_calls. kms_calls lists each KMS
request the client made: {op, KeyId, EncryptionContext}. meta -> etag, content_length, format,
metadata_location, metadata (all user metadata), instruction ({body, metadata, etag} or null).

What the client (amazon-s3-encryption-client-python 4.0.0) does, and what this driver adds:
- put --format v3: suite ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY (115), policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT.
- put --format v2: suite ALG_AES_256_GCM_IV12_TAG16_NO_KDF, policy FORBID_ENCRYPT_ALLOW_DECRYPT.
- KMS: GenerateDataKey(KeyId=--kms-key-id, KeySpec=AES_256, EncryptionContext=context +
  {"aws:x-amz-cek-alg": "AES/GCM/NoPadding" | "115"}) on put; Decrypt(KeyId=--kms-key-id, CiphertextBlob, stored
  EncryptionContext) on get. There is no discovery keyring: after a rewrap, --kms-key-id must be the NEW key.
- get: the client checks that the stored context minus aws:x-amz-cek-alg equals --context exactly (no
  --context means {}), so an object written with a context needs the same --context to be read.
- --instruction-file: the Python client 4.0.0 reads instruction files but cannot write them (its put_object
  raises in instruction-file mode). The driver therefore encrypts with the client's own pipeline
  (PutEncryptedObjectPipeline / MultipartUploadPipeline: same keys, same metadata map) and stores that map
  the way the S3EC spec and the Java client do: V2 puts every key in `<key>.instruction`; V3 keeps
  x-amz-c/x-amz-d/x-amz-i on the object and puts the rest in the file. The file body is the JSON map and
  the file object carries the user metadata x-amz-crypto-instr-file="" (Java's marker). Reading goes
  through the client's own instruction-file path.
- --multipart: the client's multipart API (create_multipart_upload with the metadata, upload_part in order
  with IsLastPart on the last one, which appends the GCM tag, complete_multipart_upload); at least one part,
  so an empty file is a one-empty-part upload. With --instruction-file the driver drives the client's
  MultipartUploadPipeline itself. Parts are --part-size bytes of plaintext (default and minimum 5 MiB).
- put reads the whole file into memory (the client's put_object encrypts in one shot) and get buffers the
  whole plaintext before writing it (the client verifies the GCM tag before releasing any plaintext):
  fine for test objects of some MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

DRIVER = "s3ec_driver"
INSTRUCTION_SUFFIX = ".instruction"
INSTRUCTION_MARKER = "x-amz-crypto-instr-file"
# Keys that V3 keeps in object metadata when an instruction file is used (S3EC spec, metadata-strategy.md).
V3_OBJECT_KEYS = ("x-amz-c", "x-amz-d", "x-amz-i")
S3EC_KEYS = (
    "x-amz-key", "x-amz-key-v2", "x-amz-iv", "x-amz-cek-alg", "x-amz-wrap-alg", "x-amz-matdesc",
    "x-amz-tag-len", "x-amz-unencrypted-content-length",
    "x-amz-c", "x-amz-3", "x-amz-w", "x-amz-t", "x-amz-m", "x-amz-d", "x-amz-i",
)
MIN_PART = 5 * 1024 * 1024


class UsageError(Exception):
    """A bad flag value (exit 2)."""


# ---------------------------------------------------------------------------------------------------------
# AWS clients


def _env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def region() -> str:
    # botocore reads AWS_DEFAULT_REGION only, not AWS_REGION (measured with botocore 1.44.5).
    return _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"


def make_s3():
    """A plain S3 client. The S3EC client hooks the events of the client it wraps, so the driver gives it
    one of its own and uses another, untouched, for raw reads and writes (HEAD, instruction files)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=region())
    s3_cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"})
    return session.client("s3", endpoint_url=_env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"), config=s3_cfg)


def make_clients():
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=region())
    s3 = make_s3()
    kms = session.client(
        "kms",
        endpoint_url=_env("AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"),
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
    )
    return s3, kms


class KmsTrace:
    """Records which KMS operations the client makes, with which KeyId (never payloads or plaintexts)."""

    def __init__(self, kms):
        self.calls: list[dict] = []
        kms.meta.events.register("provide-client-params.kms.*", self._on_call)

    def _on_call(self, params, model, **_kw):
        entry = {"op": model.name}
        for k in ("KeyId", "SourceKeyId", "DestinationKeyId"):
            if k in params:
                entry[k] = params[k]
        if "EncryptionContext" in params:
            entry["EncryptionContext"] = params["EncryptionContext"]
        self.calls.append(entry)


def make_s3ec(kms, kms_key_id: str, *, fmt: str = "v3", policy: str | None = None, allow_legacy=False):
    from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
    from s3_encryption.materials import AlgorithmSuite, CommitmentPolicy, KmsKeyring

    if fmt == "v2":
        suite = AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF
        pol = CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    else:
        suite = AlgorithmSuite.ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY
        pol = CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    if policy == "allow":  # reads V2 and V3
        suite, pol = AlgorithmSuite.ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY, CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT
    elif policy == "require":  # reads V3 only (the client's default)
        suite, pol = AlgorithmSuite.ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY, CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    elif policy == "forbid":  # reads V2 and V3, writes V2
        suite, pol = AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF, CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT

    keyring = KmsKeyring(kms_client=kms, kms_key_id=kms_key_id, enable_legacy_wrapping_algorithms=allow_legacy)
    cfg = S3EncryptionClientConfig(
        keyring=keyring,
        encryption_algorithm=suite,
        commitment_policy=pol,
        enable_legacy_unauthenticated_modes=allow_legacy,
    )
    return S3EncryptionClient(wrapped_s3_client=make_s3(), config=cfg), cfg


# ---------------------------------------------------------------------------------------------------------
# helpers


def parse_json_map(text: str | None, flag: str) -> dict[str, str] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{flag} is not valid JSON: {e.msg}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UsageError(f"{flag} must be a JSON object of string to string")
    return value


def sha256_file(path: str) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def s3ec_subset(meta: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in meta.items() if k.lower() in S3EC_KEYS or k.lower() == INSTRUCTION_MARKER}


def split_for_instruction_file(meta: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(object metadata, instruction file map) for a content-metadata map, per the S3EC spec."""
    if "x-amz-3" in meta:  # V3: c/d/i stay on the object
        obj = {k: v for k, v in meta.items() if k in V3_OBJECT_KEYS}
        inst = {k: v for k, v in meta.items() if k not in V3_OBJECT_KEYS}
        return obj, inst
    return {}, dict(meta)  # V1/V2: everything in the file


def detect(meta: dict[str, str], instruction: dict | None) -> tuple[str, str]:
    """(format, where the wrapped key is): v1|v2|v3|unknown, object|instruction-file|none."""
    m = {k.lower() for k in meta}
    if "x-amz-key-v2" in m:
        return "v2", "object"
    if "x-amz-key" in m:
        return "v1", "object"
    if "x-amz-3" in m:
        return "v3", "object"
    if {"x-amz-c", "x-amz-d", "x-amz-i"} <= m:
        return "v3", "instruction-file"
    if instruction is not None:
        body = instruction.get("body") if isinstance(instruction.get("body"), dict) else {}
        fmt = "v2" if "x-amz-key-v2" in body else "v1" if "x-amz-key" in body else "unknown"
        return fmt, "instruction-file"
    return "unknown", "none"


def read_instruction_file(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        r = s3.get_object(Bucket=bucket, Key=key + INSTRUCTION_SUFFIX)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    raw = r["Body"].read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return {"body": body, "metadata": r.get("Metadata", {}), "etag": r.get("ETag")}


# ---------------------------------------------------------------------------------------------------------
# commands


def cmd_put(a) -> dict:
    context = parse_json_map(a.context, "--context")
    user_meta = parse_json_map(a.metadata, "--metadata") or {}
    if a.part_size < MIN_PART:
        raise UsageError(f"--part-size must be at least {MIN_PART} bytes")
    size, digest = sha256_file(a.infile)
    s3, kms = make_clients()
    trace = KmsTrace(kms)
    client, cfg = make_s3ec(kms, a.kms_key_id, fmt=a.format)
    extra = {}
    if a.content_type:
        extra["ContentType"] = a.content_type
    out = {"op": "put", "bucket": a.bucket, "key": a.key, "format": a.format, "bytes": size, "sha256": digest,
           "instruction_file": bool(a.instruction_file), "multipart": bool(a.multipart)}

    if not a.instruction_file:
        kw = dict(extra)
        if user_meta:
            kw["Metadata"] = user_meta
        if context is not None:
            kw["EncryptionContext"] = context
        if a.multipart:
            # The client's own multipart API: CreateMultipartUpload carries the S3EC metadata, each UploadPart
            # is encrypted in order, IsLastPart appends the GCM tag. (Its upload_file would fall back to
            # put_object for an empty file; this always uploads at least one part.)
            up = client.create_multipart_upload(Bucket=a.bucket, Key=a.key, **kw)
            r, out["parts"] = upload_parts(
                a, up["UploadId"],
                lambda n, data, last: client.upload_part(Bucket=a.bucket, Key=a.key, UploadId=up["UploadId"],
                                                         PartNumber=n, Body=data, IsLastPart=last),
                client)
        else:
            with open(a.infile, "rb") as f:
                body = f.read()
            r = client.put_object(Bucket=a.bucket, Key=a.key, Body=body, **kw)
        out["etag"] = r.get("ETag")
    else:
        out["etag"], out["instruction_etag"], parts = put_with_instruction_file(s3, cfg, a, context, user_meta, extra)
        if parts:
            out["parts"] = parts

    head = s3.head_object(Bucket=a.bucket, Key=a.key)
    out["metadata"] = s3ec_subset(head.get("Metadata", {}))
    if a.instruction_file:
        inst = read_instruction_file(s3, a.bucket, a.key)
        out["instruction"] = inst["body"] if inst else None
    out["kms_calls"] = trace.calls
    return out


def put_with_instruction_file(s3, cfg, a, context, user_meta, extra) -> tuple[str, str, int]:
    """Encrypt with the client's pipelines, store the metadata in `<key>.instruction`."""
    from s3_encryption.pipelines import MultipartUploadPipeline, PutEncryptedObjectPipeline

    if not a.multipart:
        with open(a.infile, "rb") as f:
            body = f.read()
        ciphertext, meta = PutEncryptedObjectPipeline(cfg.cmm, cfg.encryption_algorithm).encrypt(
            body, encryption_context=context)
        obj_meta, inst = split_for_instruction_file(meta)
        r = s3.put_object(Bucket=a.bucket, Key=a.key, Body=ciphertext, Metadata={**user_meta, **obj_meta}, **extra)
        etag, parts = r.get("ETag"), 0
    else:
        pipeline = MultipartUploadPipeline(cmm=cfg.cmm, encryption_algorithm=cfg.encryption_algorithm,
                                           encryption_context=context or {})
        obj_meta, inst = split_for_instruction_file(pipeline.metadata)
        up = s3.create_multipart_upload(Bucket=a.bucket, Key=a.key, Metadata={**user_meta, **obj_meta}, **extra)
        r, parts = upload_parts(
            a, up["UploadId"],
            lambda n, data, last: s3.upload_part(Bucket=a.bucket, Key=a.key, UploadId=up["UploadId"], PartNumber=n,
                                                 Body=pipeline.encrypt_part(n, data, is_last=last)),
            s3)
        etag = r.get("ETag")
    ri = s3.put_object(Bucket=a.bucket, Key=a.key + INSTRUCTION_SUFFIX, Body=json.dumps(inst).encode(),
                       Metadata={INSTRUCTION_MARKER: ""})
    return etag, ri.get("ETag"), parts


def upload_parts(a, upload_id: str, upload_one, s3like) -> tuple[dict, int]:
    """Upload --in in parts of --part-size (the last part flagged, at least one part), then complete;
    abort the upload on any error."""
    try:
        parts = []
        with open(a.infile, "rb") as f:
            cur = f.read(a.part_size)
            n = 0
            while True:
                nxt = f.read(a.part_size)
                n += 1
                last = not nxt
                pr = upload_one(n, cur, last)
                parts.append({"PartNumber": n, "ETag": pr["ETag"]})
                if last:
                    break
                cur = nxt
        r = s3like.complete_multipart_upload(Bucket=a.bucket, Key=a.key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
        return r, len(parts)
    except BaseException:
        s3like.abort_multipart_upload(Bucket=a.bucket, Key=a.key, UploadId=upload_id)
        raise


def cmd_get(a) -> dict:
    context = parse_json_map(a.context, "--context")
    s3, kms = make_clients()
    trace = KmsTrace(kms)
    client, _ = make_s3ec(kms, a.kms_key_id, policy=a.policy, allow_legacy=a.allow_legacy)
    kw = {}
    if context is not None:
        kw["EncryptionContext"] = context
    r = client.get_object(Bucket=a.bucket, Key=a.key, **kw)
    h = hashlib.sha256()
    n = 0
    tmp = a.outfile + ".part"
    try:
        with open(tmp, "wb") as f:
            while chunk := r["Body"].read(1 << 20):
                f.write(chunk)
                h.update(chunk)
                n += len(chunk)
        os.replace(tmp, a.outfile)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    meta = r.get("Metadata", {})
    fmt, where = detect(meta, None)
    if where == "none":  # V1/V2 with every key in the instruction file
        fmt, where = detect(meta, read_instruction_file(s3, a.bucket, a.key))
    return {"op": "get", "bucket": a.bucket, "key": a.key, "bytes": n, "sha256": h.hexdigest(),
            "etag": r.get("ETag"), "format": fmt, "metadata_location": where,
            "policy": a.policy, "kms_calls": trace.calls}


def cmd_get_many(_a) -> None:
    """Reads many objects in one process (policy allow, legacy on): a reader of a mixed estate. Prints one
    JSON line per job; a job the client refuses prints its error and the others go on."""
    jobs = json.load(sys.stdin)
    _, kms = make_clients()
    clients = {}
    for job in jobs:
        out = {"id": job["id"]}
        try:
            kid = job["kmsKeyId"]
            if kid not in clients:
                clients[kid] = make_s3ec(kms, kid, policy="allow", allow_legacy=True)[0]
            kw = {"EncryptionContext": job["context"]} if job.get("context") is not None else {}
            body = clients[kid].get_object(Bucket=job["bucket"], Key=job["key"], **kw)["Body"].read()
            out.update(ok=True, bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
        except Exception as e:  # noqa: BLE001 - the client's refusal is the result
            out.update(ok=False, error=f"{type(e).__name__}: {one_line(e)}")
        print(json.dumps(out, separators=(",", ":")), flush=True)


def cmd_meta(a) -> dict:
    s3, _ = make_clients()
    head = s3.head_object(Bucket=a.bucket, Key=a.key)
    meta = head.get("Metadata", {})
    inst = read_instruction_file(s3, a.bucket, a.key)
    fmt, where = detect(meta, inst)
    return {"op": "meta", "bucket": a.bucket, "key": a.key, "etag": head.get("ETag"),
            "content_length": head.get("ContentLength"), "format": fmt, "metadata_location": where,
            "metadata": meta, "instruction": inst}


def cmd_create_bucket(a) -> dict:
    s3, _ = make_clients()
    s3.create_bucket(Bucket=a.bucket)  # us-east-1: no LocationConstraint
    return {"op": "create-bucket", "bucket": a.bucket}


def cmd_create_key(a) -> dict:
    _, kms = make_clients()
    md = kms.create_key(Description=a.description, KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")
    md = md["KeyMetadata"]
    return {"op": "create-key", "key_id": md["KeyId"], "arn": md["Arn"]}


# ---------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s3ec_driver.py",
                                description="Write/read S3EC objects with the AWS S3 Encryption Client for Python.")
    sub = p.add_subparsers(dest="cmd", required=True)

    put = sub.add_parser("put", help="encrypt FILE and store it as s3://B/K")
    put.add_argument("--bucket", required=True)
    put.add_argument("--key", required=True)
    put.add_argument("--kms-key-id", required=True, help="KMS key id, ARN or alias used for GenerateDataKey")
    put.add_argument("--format", required=True, choices=("v2", "v3"),
                     help="v2: AES/GCM/NoPadding; v3: committing suite 115")
    put.add_argument("--instruction-file", action="store_true", help="store metadata in <key>.instruction")
    put.add_argument("--context", help='encryption context, JSON object, e.g. {"tenant":"a"}')
    put.add_argument("--metadata", help="extra user metadata, JSON object")
    put.add_argument("--content-type")
    put.add_argument("--multipart", action="store_true", help="multipart upload, even for small files")
    put.add_argument("--part-size", type=int, default=MIN_PART, help=f"part size in bytes (>= {MIN_PART})")
    put.add_argument("--in", dest="infile", required=True)
    put.set_defaults(fn=cmd_put)

    get = sub.add_parser("get", help="read and decrypt s3://B/K into FILE")
    get.add_argument("--bucket", required=True)
    get.add_argument("--key", required=True)
    get.add_argument("--kms-key-id", required=True, help="KMS key the client passes as KeyId to Decrypt")
    get.add_argument("--context", help="encryption context given at put (omit if none)")
    get.add_argument("--policy", choices=("allow", "require", "forbid"), default="allow",
                     help="commitment policy: allow=REQUIRE_ENCRYPT_ALLOW_DECRYPT (reads V2+V3, default), "
                          "require=REQUIRE_ENCRYPT_REQUIRE_DECRYPT (V3 only), forbid=FORBID_ENCRYPT_ALLOW_DECRYPT")
    get.add_argument("--allow-legacy", action="store_true",
                     help="enable legacy CBC content and legacy 'kms' wrapping (V1 objects)")
    get.add_argument("--out", dest="outfile", required=True)
    get.set_defaults(fn=cmd_get)

    many = sub.add_parser("get-many", help="read the objects of a JSON array of jobs on stdin")
    many.set_defaults(fn=cmd_get_many)

    meta = sub.add_parser("meta", help="print the stored S3EC metadata and instruction file")
    meta.add_argument("--bucket", required=True)
    meta.add_argument("--key", required=True)
    meta.set_defaults(fn=cmd_meta)

    cb = sub.add_parser("create-bucket", help="create a bucket")
    cb.add_argument("--bucket", required=True)
    cb.set_defaults(fn=cmd_create_bucket)

    ck = sub.add_parser("create-key", help="create a symmetric KMS key")
    ck.add_argument("--description", default="rekey interop")
    ck.set_defaults(fn=cmd_create_key)
    return p


def one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        result = a.fn(a)
        if result is None:  # get-many printed its own lines
            return 0
    except UsageError as e:
        print(f"{DRIVER}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one line, no traceback
        print(f"{DRIVER}: error: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return 1
    print(json.dumps(result, separators=(",", ":"), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
