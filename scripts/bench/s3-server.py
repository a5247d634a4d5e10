#!/usr/bin/env python3
"""scripts/bench/s3-server.py: the S3 server of `scripts/bench.sh s3`: moto's own server
application (what `moto_server -H HOST -p PORT -c CERT -k KEY` runs: werkzeug, threaded, TLS),
started in this process so that the listing benchmark's 100,000 small objects can be put
straight into moto's store before it serves, instead of 100,000 PUTs over HTTPS.

    s3-server.py --host 127.0.0.1 --port PORT --cert server.pem --key server.key \
        [--seed-bucket B --seed-count N --seed-first-segno S \
         --seed-dbagent-prefix P --seed-pgbackrest-prefix Q]

Seeding makes bucket B and, for i in 0..N, the WAL segment name of timeline 1 and segment
number S+i (16 MiB segments) as
  P/wal/<TLI+LOG>/<SEGMENT>.zst                              (dbagent's layout)
  Q/archive/bench/15-1/<TLI+LOG>/<SEGMENT>-<40 hex>.zst      (pgBackRest's layout)
each a few bytes (not real WAL: the listing benchmark only lists them). Prints "ready" on
stdout when it serves.

Two changes to moto's ListObjectsV2, which would otherwise measure moto rather than the
clients at 100,000 keys (87 s to list them here): moto filters and sorts every key of the
bucket for every page of 1,000, and its generic XML serializer spends about 0.4 s per page.
`fast_list_objects_v2` answers the same pages from a sorted index of the bucket's key names
(rebuilt after any change to the bucket's keys), and `list_objects_v2_response` writes the
same XML document directly. Everything else is moto's.
"""

import argparse
import bisect
import socketserver
import sys
import urllib.parse
from xml.sax.saxutils import escape

from moto.core import DEFAULT_ACCOUNT_ID
from moto import settings
from moto.s3.models import FakeDeleteMarker, FakeKey, S3Backend, s3_backends
from moto.s3.responses import S3Response
from moto.s3.utils import _VersionedKeyStore
from moto.utilities.utils import md5_hash
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

SEGS_PER_LOG = 0x100000000 // (16 * 1024 * 1024)


def segment_name(tli: int, segno: int) -> str:
    return f"{tli:08X}{segno // SEGS_PER_LOG:08X}{segno % SEGS_PER_LOG:08X}"


def _invalidating(method):
    def wrapper(self, *args, **kwargs):
        self.__dict__.pop("bench_names", None)
        return method(self, *args, **kwargs)

    return wrapper


for _m in ("__setitem__", "__delitem__", "setlist", "pop", "clear", "update"):
    setattr(_VersionedKeyStore, _m, _invalidating(getattr(_VersionedKeyStore, _m)))


def _names(bucket) -> list:
    keys = bucket.keys
    names = keys.__dict__.get("bench_names")
    if names is None:
        names = sorted(k for k, v in keys.items() if not isinstance(v, FakeDeleteMarker))
        keys.__dict__["bench_names"] = names
    return names


def fast_list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
    """moto's S3Backend.list_objects_v2 (same entries, order, truncation and tokens), without
    going through every key of the bucket for each page."""
    names = _names(bucket)
    prefix = prefix or ""
    after = self._pagination_tokens.get(continuation_token) if continuation_token else start_after
    i = bisect.bisect_left(names, prefix)
    if after:
        i = max(i, bisect.bisect_right(names, after))
    out = []
    while i < len(names) and names[i].startswith(prefix) and len(out) <= max_keys:
        name = names[i]
        rest = name[len(prefix):]
        if delimiter and delimiter in rest:
            folder = prefix + rest.split(delimiter)[0] + delimiter
            if not after or folder > after:  # as moto: entries after the token only
                out.append(folder)
            # on to the first key past the folder
            i = bisect.bisect_left(names, folder[: -len(delimiter)] + chr(ord(delimiter[-1]) + 1), i)
        else:
            out.append(bucket.keys[name])
            i += 1
    if max_keys == 0:
        return [], False, None
    if len(out) > max_keys:
        out = out[:max_keys]
        last = out[-1] if isinstance(out[-1], str) else out[-1].name
        token = md5_hash(last.encode("utf-8")).hexdigest()
        self._pagination_tokens[token] = last
        return out, True, token
    return out, False, None


S3Backend.list_objects_v2 = fast_list_objects_v2


def list_objects_v2_response(self):
    """moto's S3Response.list_objects_v2 (the same request parsing and document), with the XML
    written here instead of by moto's generic serializer."""
    bucket = self.backend.get_bucket(self.bucket_name)
    continuation_token = self.querystring.get("continuation-token", [None])[0]
    if continuation_token == "":
        return _orig_list_objects_v2_response(self)  # moto's InvalidContinuationToken
    querystring = self._get_querystring(self.request, self.uri)
    prefix = querystring.get("prefix", [None])[0]
    if prefix and isinstance(prefix, bytes):
        prefix = prefix.decode("utf-8")
    delimiter = self.querystring.get("delimiter", [None])[0]
    if self.querystring.get("fetch-owner", [False])[0]:
        return _orig_list_objects_v2_response(self)
    max_keys = int(self.querystring.get("max-keys", [settings.get_s3_default_max_keys()])[0])
    start_after = self.querystring.get("start-after", [None])[0]
    encoding_type = self.querystring.get("encoding-type", [None])[0]
    keys, is_truncated, next_token = self.backend.list_objects_v2(
        bucket=bucket,
        prefix=prefix,
        delimiter=delimiter,
        continuation_token=continuation_token,
        start_after=start_after,
        max_keys=max_keys,
    )
    enc = (lambda v: urllib.parse.quote(v)) if encoding_type == "url" else (lambda v: v)
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">']
    out.append(f"<Name>{escape(bucket.name)}</Name><Prefix>{escape(enc(prefix or ''))}</Prefix>")
    out.append(f"<MaxKeys>{max_keys}</MaxKeys><KeyCount>{len(keys)}</KeyCount>")
    out.append(f"<IsTruncated>{'true' if is_truncated else 'false'}</IsTruncated>")
    folders = []
    for k in keys:
        if not isinstance(k, FakeKey):
            folders.append(k)
            continue
        checksum = f"<ChecksumAlgorithm>{k.checksum_algorithm}</ChecksumAlgorithm>" if k.checksum_algorithm else ""
        out.append(
            f"<Contents><Key>{escape(k.safe_name(encoding_type))}</Key>"
            f"<LastModified>{k.last_modified_ISO8601}</LastModified>"
            f"<ETag>{escape(k.etag)}</ETag><Size>{k.size}</Size>{checksum}"
            f"<StorageClass>{k.storage_class}</StorageClass></Contents>"
        )
    if delimiter:
        out.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        out.extend(f"<CommonPrefixes><Prefix>{escape(enc(f))}</Prefix></CommonPrefixes>" for f in folders)
    if encoding_type:
        out.append(f"<EncodingType>{escape(encoding_type)}</EncodingType>")
    if next_token:
        out.append(f"<NextContinuationToken>{next_token}</NextContinuationToken>")
    if not continuation_token and start_after:
        out.append(f"<StartAfter>{escape(enc(start_after))}</StartAfter>")
    out.append("</ListBucketResult>")
    return 200, {"Content-Type": "application/xml"}, "".join(out)


_orig_list_objects_v2_response = S3Response.list_objects_v2
S3Response.list_objects_v2 = list_objects_v2_response


def seed(args: argparse.Namespace) -> None:
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    backend.create_bucket(args.seed_bucket, "us-east-1")
    body = b"not WAL: listing benchmark\n"
    for i in range(args.seed_count):
        name = segment_name(1, args.seed_first_segno + i)
        if args.seed_dbagent_prefix:
            key = f"{args.seed_dbagent_prefix}/wal/{name[:16]}/{name}.zst"
            backend.put_object(args.seed_bucket, key, body, disable_notification=True)
        if args.seed_pgbackrest_prefix:
            key = f"{args.seed_pgbackrest_prefix}/archive/bench/15-1/{name[:16]}/{name}-{i:040x}.zst"
            backend.put_object(args.seed_bucket, key, body, disable_notification=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--seed-bucket")
    p.add_argument("--seed-count", type=int, default=0)
    p.add_argument("--seed-first-segno", type=int, default=1)
    p.add_argument("--seed-dbagent-prefix")
    p.add_argument("--seed-pgbackrest-prefix")
    args = p.parse_args()
    if args.seed_bucket and args.seed_count:
        seed(args)
    # As moto_server's main() does.
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    server = make_server(
        args.host,
        args.port,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=(args.cert, args.key),
    )
    # Python's TLS socket closes without a close_notify alert; a client that reads a body up to
    # the end of the connection (pgBackRest, OpenSSL 3) then fails with "unexpected eof while
    # reading". Send the alert before closing, as a TLS terminator would.
    def shutdown_request(request):
        try:
            request.settimeout(5)
            request.unwrap()
        except (OSError, ValueError):
            pass
        socketserver.TCPServer.shutdown_request(server, request)

    server.shutdown_request = shutdown_request
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
