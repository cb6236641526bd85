"""storage_manager's S3 protocol endpoint, driven by boto3 as any S3 application would.

Run by tests/tests/storage_manager.rs (`s3_protocol_via_boto3`), which starts the platform, creates
an access key through the service's own API and passes it here:

    S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_KMS_KEY (a key_manager key name),
    S3_API_URL, S3_ADMIN_TOKEN (the service's own API, to make access keys with scopes)

`cargo xtask test` installs boto3 from PyPI. Every test uses its own bucket.
"""

import base64
import datetime
import hashlib
import hmac
import io
import json
import os
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
import zlib

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]
ACCESS_KEY = os.environ["S3_ACCESS_KEY"]
SECRET_KEY = os.environ["S3_SECRET_KEY"]
KMS_KEY = os.environ["S3_KMS_KEY"]
# storage_manager's own API and an admin's token, to make access keys with scopes.
API_URL = os.environ["S3_API_URL"]
ADMIN_TOKEN = os.environ["S3_ADMIN_TOKEN"]
MIB = 1024 * 1024


def client(secret=SECRET_KEY, access=ACCESS_KEY):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


S3 = client()


def new_bucket():
    name = "b-" + uuid.uuid4().hex[:12]
    S3.create_bucket(Bucket=name)
    return name


def error_code(err):
    return err.response["Error"]["Code"]


def status(err):
    return err.response["ResponseMetadata"]["HTTPStatusCode"]


def keys_of(bucket):
    return [o["Key"] for page in S3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])]


def signed_request(method, path, query="", body=b"", headers=None):
    """A request signed by botocore but sent by urllib, to see S3's raw answer (XML, status)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    url = "%s%s%s" % (ENDPOINT, urllib.parse.quote(path), "?" + query if query else "")
    headers = dict(headers or {})
    headers.setdefault("x-amz-content-sha256", hashlib.sha256(body).hexdigest())
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    req = urllib.request.Request(url, data=body or None, method=method, headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def xml_texts(document, tag):
    """The text of every element named `tag` (any namespace) in an XML answer."""
    return [e.text or "" for e in ET.fromstring(document).iter() if e.tag.split("}")[-1] == tag]


class Buckets(unittest.TestCase):
    def test_create_list_head_delete(self):
        name = new_bucket()
        self.assertIn(name, [b["Name"] for b in S3.list_buckets()["Buckets"]])
        S3.head_bucket(Bucket=name)
        with self.assertRaises(ClientError) as e:
            S3.create_bucket(Bucket=name)
        self.assertEqual(error_code(e.exception), "BucketAlreadyOwnedByYou")
        S3.put_object(Bucket=name, Key="k", Body=b"v")
        with self.assertRaises(ClientError) as e:
            S3.delete_bucket(Bucket=name)
        self.assertEqual(error_code(e.exception), "BucketNotEmpty")
        S3.delete_object(Bucket=name, Key="k")
        S3.delete_bucket(Bucket=name)
        self.assertNotIn(name, [b["Name"] for b in S3.list_buckets()["Buckets"]])
        with self.assertRaises(ClientError) as e:
            S3.head_bucket(Bucket=name)
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

    def test_invalid_name_is_refused(self):
        with self.assertRaises(ClientError) as e:
            S3.create_bucket(Bucket="Bad_Name")
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)


class Objects(unittest.TestCase):
    def setUp(self):
        self.bucket = new_bucket()

    def test_put_get_head_delete_with_metadata(self):
        body = os.urandom(300_000)
        put = S3.put_object(Bucket=self.bucket, Key="dir/ü file.bin", Body=body, ContentType="application/x-test",
                            Metadata={"Owner": "ci"})
        self.assertEqual(put["ETag"], '"%s"' % hashlib.md5(body).hexdigest())
        got = S3.get_object(Bucket=self.bucket, Key="dir/ü file.bin")
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual(got["ContentType"], "application/x-test")
        self.assertEqual(got["Metadata"], {"owner": "ci"})
        head = S3.head_object(Bucket=self.bucket, Key="dir/ü file.bin")
        self.assertEqual(head["ContentLength"], len(body))
        self.assertEqual(head["ETag"], put["ETag"])
        S3.delete_object(Bucket=self.bucket, Key="dir/ü file.bin")
        with self.assertRaises(ClientError) as e:
            S3.get_object(Bucket=self.bucket, Key="dir/ü file.bin")
        self.assertEqual(error_code(e.exception), "NoSuchKey")
        # Deleting what is not there is fine in S3.
        S3.delete_object(Bucket=self.bucket, Key="dir/ü file.bin")

    def test_ranges(self):
        body = bytes(range(256)) * 1000
        S3.put_object(Bucket=self.bucket, Key="r", Body=body)
        for rng, want, content_range in [
            ("bytes=0-9", body[:10], "bytes 0-9/256000"),
            ("bytes=100000-100099", body[100000:100100], "bytes 100000-100099/256000"),
            ("bytes=-7", body[-7:], "bytes 255993-255999/256000"),
        ]:
            got = S3.get_object(Bucket=self.bucket, Key="r", Range=rng)
            self.assertEqual(got["Body"].read(), want, rng)
            self.assertEqual(got["ContentRange"], content_range)
            self.assertEqual(got["ResponseMetadata"]["HTTPStatusCode"], 206)
        with self.assertRaises(ClientError) as e:
            S3.get_object(Bucket=self.bucket, Key="r", Range="bytes=999999-")
        self.assertEqual(error_code(e.exception), "InvalidRange")

    def test_list_objects_v2_with_prefix_delimiter_and_pages(self):
        keys = ["a/1", "a/2", "a/b/3", "c", "d/4"] + ["p/%03d" % i for i in range(25)]
        for k in keys:
            S3.put_object(Bucket=self.bucket, Key=k, Body=k.encode())
        top = S3.list_objects_v2(Bucket=self.bucket, Delimiter="/")
        self.assertEqual([o["Key"] for o in top.get("Contents", [])], ["c"])
        self.assertEqual([p["Prefix"] for p in top["CommonPrefixes"]], ["a/", "d/", "p/"])
        a = S3.list_objects_v2(Bucket=self.bucket, Prefix="a/", Delimiter="/")
        self.assertEqual([o["Key"] for o in a["Contents"]], ["a/1", "a/2"])
        self.assertEqual([p["Prefix"] for p in a["CommonPrefixes"]], ["a/b/"])
        paginator = S3.get_paginator("list_objects_v2")
        pages = list(paginator.paginate(Bucket=self.bucket, Prefix="p/", PaginationConfig={"PageSize": 10}))
        self.assertEqual(len(pages), 3)
        self.assertEqual([o["Key"] for page in pages for o in page["Contents"]], sorted(k for k in keys if k.startswith("p/")))
        after = S3.list_objects_v2(Bucket=self.bucket, StartAfter="p/020")
        self.assertEqual([o["Key"] for o in after["Contents"]], ["p/021", "p/022", "p/023", "p/024"])

    def test_delete_objects(self):
        for k in ["x", "y", "z"]:
            S3.put_object(Bucket=self.bucket, Key=k, Body=b"1")
        out = S3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "x"}, {"Key": "y"}, {"Key": "missing"}]})
        self.assertEqual(sorted(d["Key"] for d in out["Deleted"]), ["missing", "x", "y"])
        self.assertEqual([o["Key"] for o in S3.list_objects_v2(Bucket=self.bucket)["Contents"]], ["z"])

    def test_copy_object_keeps_or_replaces_metadata(self):
        S3.put_object(Bucket=self.bucket, Key="src", Body=b"copy me", ContentType="text/plain", Metadata={"a": "1"})
        other = new_bucket()
        S3.copy_object(Bucket=other, Key="dst", CopySource={"Bucket": self.bucket, "Key": "src"})
        got = S3.get_object(Bucket=other, Key="dst")
        self.assertEqual(got["Body"].read(), b"copy me")
        self.assertEqual((got["ContentType"], got["Metadata"]), ("text/plain", {"a": "1"}))
        S3.copy_object(Bucket=other, Key="dst2", CopySource={"Bucket": self.bucket, "Key": "src"},
                       MetadataDirective="REPLACE", ContentType="text/markdown", Metadata={"b": "2"})
        got = S3.head_object(Bucket=other, Key="dst2")
        self.assertEqual((got["ContentType"], got["Metadata"]), ("text/markdown", {"b": "2"}))

    def test_multipart_upload_of_50_mib(self):
        body = os.urandom(50 * MIB)
        config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4)
        S3.upload_fileobj(io.BytesIO(body), self.bucket, "big.bin", Config=config)
        head = S3.head_object(Bucket=self.bucket, Key="big.bin")
        self.assertEqual(head["ContentLength"], 50 * MIB)
        self.assertTrue(head["ETag"].endswith('-7"'), head["ETag"])  # 6 parts of 8 MiB and one of 2
        out = io.BytesIO()
        S3.download_fileobj(self.bucket, "big.bin", out)
        self.assertEqual(hashlib.sha256(out.getvalue()).hexdigest(), hashlib.sha256(body).hexdigest())

    def test_multipart_by_hand_list_parts_and_abort(self):
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="m")
        part1 = os.urandom(5 * MIB)
        e1 = S3.upload_part(Bucket=self.bucket, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=part1)["ETag"]
        e2 = S3.upload_part(Bucket=self.bucket, Key="m", UploadId=up["UploadId"], PartNumber=2, Body=b"tail")["ETag"]
        parts = S3.list_parts(Bucket=self.bucket, Key="m", UploadId=up["UploadId"])["Parts"]
        self.assertEqual([(p["PartNumber"], p["Size"]) for p in parts], [(1, 5 * MIB), (2, 4)])
        # A wrong ETag is refused and leaves the upload as it was.
        with self.assertRaises(ClientError) as e:
            S3.complete_multipart_upload(Bucket=self.bucket, Key="m", UploadId=up["UploadId"],
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]})
        self.assertEqual(error_code(e.exception), "InvalidPart")
        S3.complete_multipart_upload(Bucket=self.bucket, Key="m", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="m")["Body"].read(), part1 + b"tail")
        # An aborted upload is gone and leaves no object.
        up2 = S3.create_multipart_upload(Bucket=self.bucket, Key="n")
        S3.upload_part(Bucket=self.bucket, Key="n", UploadId=up2["UploadId"], PartNumber=1, Body=b"x")
        S3.abort_multipart_upload(Bucket=self.bucket, Key="n", UploadId=up2["UploadId"])
        with self.assertRaises(ClientError) as e:
            S3.list_parts(Bucket=self.bucket, Key="n", UploadId=up2["UploadId"])
        self.assertEqual(error_code(e.exception), "NoSuchUpload")
        with self.assertRaises(ClientError):
            S3.head_object(Bucket=self.bucket, Key="n")


class Listings(unittest.TestCase):
    """ListObjects v1 and v2 as S3 clients use them (boto3 asks for EncodingType=url by default)."""

    AWKWARD_KEYS = ["asdf+b", "100%/done", "with space", "ünïcödé/日本", "q?x=1&y=2", "plus+and space", "~tilde"]

    def setUp(self):
        self.bucket = new_bucket()

    def test_keys_needing_url_encoding_list_with_v1_and_v2_and_delete(self):
        for k in self.AWKWARD_KEYS:
            S3.put_object(Bucket=self.bucket, Key=k, Body=k.encode())
        want = sorted(self.AWKWARD_KEYS, key=lambda k: k.encode())
        self.assertEqual([o["Key"] for o in S3.list_objects(Bucket=self.bucket)["Contents"]], want)
        self.assertEqual([o["Key"] for o in S3.list_objects_v2(Bucket=self.bucket)["Contents"]], want)
        # On the wire: percent-encoded, '/' kept, and EncodingType echoed.
        code, doc = signed_request("GET", "/" + self.bucket, "encoding-type=url&list-type=2")
        self.assertEqual(code, 200)
        self.assertIn("asdf%2Bb", xml_texts(doc, "Key"))
        self.assertIn("100%25/done", xml_texts(doc, "Key"))
        self.assertEqual(xml_texts(doc, "EncodingType"), ["url"])
        # Without it, keys come back as they are.
        code, doc = signed_request("GET", "/" + self.bucket, "list-type=2")
        self.assertIn("asdf+b", xml_texts(doc, "Key"))
        # Every key listed can be fetched and deleted by what the listing said.
        for k in want:
            self.assertEqual(S3.get_object(Bucket=self.bucket, Key=k)["Body"].read(), k.encode())
        out = S3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys_of(self.bucket)]})
        self.assertEqual(len(out["Deleted"]), len(want))
        self.assertEqual(keys_of(self.bucket), [])
        S3.delete_bucket(Bucket=self.bucket)

    def test_v1_pages_by_marker_with_and_without_delimiter(self):
        keys = ["a/1", "a/2", "b", "c/1", "c/2", "d"] + ["p%02d" % i for i in range(12)]
        for k in keys:
            S3.put_object(Bucket=self.bucket, Key=k, Body=b"x")
        pages = list(S3.get_paginator("list_objects").paginate(Bucket=self.bucket, PaginationConfig={"PageSize": 5}))
        self.assertEqual(len(pages), 4)
        self.assertEqual([o["Key"] for p in pages for o in p.get("Contents", [])], sorted(keys))
        self.assertNotIn("NextMarker", pages[0])  # S3 gives NextMarker only with a delimiter
        # With a delimiter, a page can end on a common prefix; the next one does not repeat it.
        first = S3.list_objects(Bucket=self.bucket, Delimiter="/", MaxKeys=2)
        self.assertTrue(first["IsTruncated"])
        self.assertEqual([o["Key"] for o in first.get("Contents", [])], ["b"])
        self.assertEqual([p["Prefix"] for p in first["CommonPrefixes"]], ["a/"])
        self.assertEqual(first["NextMarker"], "b")
        second = S3.list_objects(Bucket=self.bucket, Delimiter="/", MaxKeys=1, Marker="b")
        self.assertEqual(second["NextMarker"], "c/")
        third = S3.list_objects(Bucket=self.bucket, Delimiter="/", MaxKeys=1, Marker="c/")
        self.assertEqual([o["Key"] for o in third["Contents"]], ["d"])
        self.assertNotIn("CommonPrefixes", third)
        everything = S3.get_paginator("list_objects").paginate(Bucket=self.bucket, Delimiter="/", PaginationConfig={"PageSize": 2})
        seen = [(o["Key"]) for p in everything for o in p.get("Contents", [])]
        self.assertEqual(seen, ["b", "d"] + ["p%02d" % i for i in range(12)])

    def test_owner_and_an_empty_delimiter(self):
        S3.put_object(Bucket=self.bucket, Key="k", Body=b"x")
        v2 = S3.list_objects_v2(Bucket=self.bucket, FetchOwner=True)
        self.assertTrue(v2["Contents"][0]["Owner"]["ID"])
        self.assertNotIn("Owner", S3.list_objects_v2(Bucket=self.bucket)["Contents"][0])
        self.assertEqual(S3.list_objects(Bucket=self.bucket)["Contents"][0]["Owner"]["ID"], v2["Contents"][0]["Owner"]["ID"])
        self.assertNotIn("Delimiter", S3.list_objects_v2(Bucket=self.bucket, Delimiter=""))
        self.assertNotIn("Delimiter", S3.list_objects(Bucket=self.bucket, Delimiter=""))
        with self.assertRaises(ClientError) as e:
            S3.list_objects(Bucket=self.bucket, EncodingType="base64")
        self.assertEqual(error_code(e.exception), "InvalidArgument")

    def test_delete_objects_takes_at_most_1000_keys(self):
        with self.assertRaises(ClientError) as e:
            S3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "k%d" % i} for i in range(1001)]})
        self.assertEqual(error_code(e.exception), "MalformedXML")

    def test_missing_bucket_is_404_no_such_bucket_everywhere(self):
        missing = "missing-" + uuid.uuid4().hex[:8]
        calls = [
            lambda: S3.list_objects(Bucket=missing),
            lambda: S3.list_objects_v2(Bucket=missing),
            lambda: S3.get_bucket_versioning(Bucket=missing),
            lambda: S3.get_bucket_acl(Bucket=missing),
            lambda: S3.get_bucket_cors(Bucket=missing),
            lambda: S3.get_bucket_policy(Bucket=missing),
            lambda: S3.get_bucket_lifecycle_configuration(Bucket=missing),
            lambda: S3.get_bucket_tagging(Bucket=missing),
            lambda: S3.get_bucket_encryption(Bucket=missing),
            lambda: S3.get_bucket_logging(Bucket=missing),
            lambda: S3.get_bucket_notification_configuration(Bucket=missing),
            lambda: S3.put_bucket_versioning(Bucket=missing, VersioningConfiguration={"Status": "Enabled"}),
            lambda: S3.list_object_versions(Bucket=missing),
            lambda: S3.put_object(Bucket=missing, Key="k", Body=b"x"),
            lambda: S3.delete_objects(Bucket=missing, Delete={"Objects": [{"Key": "k"}]}),
        ]
        for call in calls:
            with self.assertRaises(ClientError) as e:
                call()
            self.assertEqual((status(e.exception), error_code(e.exception)), (404, "NoSuchBucket"))

    def test_settings_not_configured_answer_as_s3_does(self):
        self.assertNotIn("Status", S3.get_bucket_versioning(Bucket=self.bucket))
        acl = S3.get_bucket_acl(Bucket=self.bucket)
        self.assertEqual([g["Permission"] for g in acl["Grants"]], ["FULL_CONTROL"])
        for call, want in [
            (S3.get_bucket_cors, (404, "NoSuchCORSConfiguration")),
            (S3.get_bucket_policy, (404, "NoSuchBucketPolicy")),
            (S3.get_bucket_lifecycle_configuration, (404, "NoSuchLifecycleConfiguration")),
            (S3.get_bucket_tagging, (404, "NoSuchTagSet")),
            (S3.get_public_access_block, (404, "NoSuchPublicAccessBlockConfiguration")),
            (S3.get_bucket_encryption, (400, "ServerSideEncryptionConfigurationNotFoundError")),
        ]:
            with self.assertRaises(ClientError) as e:
                call(Bucket=self.bucket)
            self.assertEqual((status(e.exception), error_code(e.exception)), want, call)
        # The canned ACL every bucket has is accepted; ACL grants are refused, not ignored.
        S3.put_bucket_acl(Bucket=self.bucket, ACL="private")
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=self.bucket, Key="k", Body=b"x", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')
        self.assertEqual(error_code(e.exception), "NotImplemented")
        self.assertNotIn("k", keys_of(self.bucket))


class WritesAndReads(unittest.TestCase):
    """Integrity checks, conditional requests and the headers an object keeps."""

    def setUp(self):
        self.bucket = new_bucket()

    def test_content_md5_is_checked(self):
        body = b"checked bytes"
        good = base64.b64encode(hashlib.md5(body).digest()).decode()
        S3.put_object(Bucket=self.bucket, Key="ok", Body=body, ContentMD5=good)
        wrong = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=self.bucket, Key="bad", Body=body, ContentMD5=wrong)
        self.assertEqual((status(e.exception), error_code(e.exception)), (400, "BadDigest"))
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=self.bucket, Key="bad", Body=body, ContentMD5="not-a-digest")
        self.assertEqual((status(e.exception), error_code(e.exception)), (400, "InvalidDigest"))
        self.assertEqual(keys_of(self.bucket), ["ok"])
        # A wrong digest leaves an existing object as it was.
        with self.assertRaises(ClientError):
            S3.put_object(Bucket=self.bucket, Key="ok", Body=b"replacement", ContentMD5=wrong)
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="ok")["Body"].read(), body)

    def test_conditional_get_and_head(self):
        etag = S3.put_object(Bucket=self.bucket, Key="c", Body=b"conditional")["ETag"]
        modified = S3.head_object(Bucket=self.bucket, Key="c")["LastModified"]
        before, after = modified - datetime.timedelta(hours=1), modified + datetime.timedelta(hours=1)
        for read in (S3.get_object, S3.head_object):
            ok = [dict(IfMatch=etag), dict(IfMatch="*"), dict(IfNoneMatch='"0123"'), dict(IfModifiedSince=before),
                  dict(IfUnmodifiedSince=after), dict(IfMatch=etag, IfUnmodifiedSince=before)]
            for headers in ok:
                self.assertEqual(read(Bucket=self.bucket, Key="c", **headers)["ResponseMetadata"]["HTTPStatusCode"], 200, headers)
            for headers, want in [(dict(IfMatch='"0123"'), 412), (dict(IfUnmodifiedSince=before), 412),
                                  (dict(IfNoneMatch=etag), 304), (dict(IfNoneMatch="*"), 304),
                                  (dict(IfModifiedSince=after), 304), (dict(IfModifiedSince=modified), 304),
                                  (dict(IfNoneMatch=etag, IfModifiedSince=before), 304)]:
                with self.assertRaises(ClientError) as e:
                    read(Bucket=self.bucket, Key="c", **headers)
                self.assertEqual(status(e.exception), want, (read.__name__, headers))
        with self.assertRaises(ClientError) as e:
            S3.get_object(Bucket=self.bucket, Key="c", IfMatch='"0123"')
        self.assertEqual(error_code(e.exception), "PreconditionFailed")

    def test_conditional_writes(self):
        first = S3.put_object(Bucket=self.bucket, Key="once", Body=b"first", IfNoneMatch="*")
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=self.bucket, Key="once", Body=b"second", IfNoneMatch="*")
        self.assertEqual((status(e.exception), error_code(e.exception)), (412, "PreconditionFailed"))
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=self.bucket, Key="once", Body=b"second", IfMatch='"0123"')
        self.assertEqual(status(e.exception), 412)
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="once")["Body"].read(), b"first")
        S3.put_object(Bucket=self.bucket, Key="once", Body=b"second", IfMatch=first["ETag"])
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="once")["Body"].read(), b"second")
        # A multipart completion is a write too.
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="once")
        part = S3.upload_part(Bucket=self.bucket, Key="once", UploadId=up["UploadId"], PartNumber=1, Body=b"mp")
        with self.assertRaises(ClientError) as e:
            S3.complete_multipart_upload(Bucket=self.bucket, Key="once", UploadId=up["UploadId"], IfNoneMatch="*",
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        self.assertEqual(status(e.exception), 412)
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="once")["Body"].read(), b"second")
        S3.abort_multipart_upload(Bucket=self.bucket, Key="once", UploadId=up["UploadId"])

    def test_headers_are_kept_and_response_overrides_apply(self):
        expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        kept = dict(CacheControl="max-age=60", ContentDisposition='attachment; filename="r.txt"', ContentEncoding="gzip",
                    ContentLanguage="de-DE", Expires=expires)
        S3.put_object(Bucket=self.bucket, Key="h", Body=b"headers", **kept)
        for read in (S3.get_object, S3.head_object):
            got = read(Bucket=self.bucket, Key="h")
            for name in ["CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage"]:
                self.assertEqual(got[name], kept[name], (read.__name__, name))
            self.assertEqual(got["ResponseMetadata"]["HTTPHeaders"]["expires"], "Wed, 02 Jan 2030 03:04:05 GMT")
        # Multipart uploads and copies keep them too.
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="mp", **kept)
        part = S3.upload_part(Bucket=self.bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"p")
        S3.complete_multipart_upload(Bucket=self.bucket, Key="mp", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        S3.copy_object(Bucket=self.bucket, Key="copy", CopySource={"Bucket": self.bucket, "Key": "h"})
        for key in ["mp", "copy"]:
            self.assertEqual(S3.head_object(Bucket=self.bucket, Key=key)["CacheControl"], "max-age=60", key)
        # response-* parameters (as in presigned download links) override what is stored.
        url = S3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": "h",
                                        "ResponseContentDisposition": "inline", "ResponseContentType": "text/plain"})
        with urllib.request.urlopen(url) as r:
            self.assertEqual((r.headers["Content-Disposition"], r.headers["Content-Type"]), ("inline", "text/plain"))

    def test_streaming_sigv4_chunked_upload(self):
        data = os.urandom(200_000)
        code, answer = streaming_put(self.bucket, "chunked.bin", data, chunk_size=64 * 1024)
        self.assertEqual(code, 200, answer)
        got = S3.get_object(Bucket=self.bucket, Key="chunked.bin")
        self.assertEqual(got["Body"].read(), data)
        self.assertEqual(got["ETag"], '"%s"' % hashlib.md5(data).hexdigest())
        # aws-chunked is how the bytes travelled, not how they are stored.
        self.assertNotIn("ContentEncoding", got)
        # A chunk changed after signing is refused and nothing is stored.
        code, _ = streaming_put(self.bucket, "tampered.bin", data, chunk_size=64 * 1024, tamper=True)
        self.assertEqual(code, 403)
        self.assertEqual(keys_of(self.bucket), ["chunked.bin"])

    def test_transfer_encoding_chunked_without_a_length(self):
        import http.client
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        data = os.urandom(300_000)
        url = urllib.parse.urlparse("%s/%s/te-chunked" % (ENDPOINT, self.bucket))
        for name, sha256 in [("signed", hashlib.sha256(data).hexdigest()), ("unsigned", "UNSIGNED-PAYLOAD")]:
            signed = AWSRequest(method="PUT", url=url.geturl() + name, data=data, headers={"x-amz-content-sha256": sha256})
            SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(signed)
            headers = {k: v for k, v in signed.headers.items() if k.lower() != "content-length"}
            connection = (http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection)(url.netloc)
            # An iterable body and no length: http.client sends it chunked.
            connection.request("PUT", url.path + name, body=iter([data[i:i + 65536] for i in range(0, len(data), 65536)]),
                               headers=headers)
            answer = connection.getresponse()
            self.assertEqual(answer.status, 200, (name, answer.read()))
            self.assertEqual(S3.get_object(Bucket=self.bucket, Key="te-chunked" + name)["Body"].read(), data)


def crc32c(data):
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit via a byte table."""
    table = CRC32C_TABLE
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()
# The check value every CRC-32C implementation gives for "123456789".
assert crc32c(b"123456789") == 0xE3069283


class Checksums(unittest.TestCase):
    """x-amz-checksum-*: verified on upload, in a header or an aws-chunked trailer, and served back."""

    def setUp(self):
        self.bucket = new_bucket()

    def test_header_checksums_are_verified_and_returned(self):
        body = os.urandom(100_000)
        sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
        out = S3.put_object(Bucket=self.bucket, Key="sha", Body=body, ChecksumSHA256=sha256)
        self.assertEqual(out["ChecksumSHA256"], sha256)
        head = S3.head_object(Bucket=self.bucket, Key="sha", ChecksumMode="ENABLED")
        self.assertEqual(head["ChecksumSHA256"], sha256)
        self.assertNotIn("ChecksumSHA256", S3.head_object(Bucket=self.bucket, Key="sha"))
        got = S3.get_object(Bucket=self.bucket, Key="sha", ChecksumMode="ENABLED")
        self.assertEqual((got["Body"].read(), got["ChecksumSHA256"]), (body, sha256))
        # boto3 computes one itself by default (CRC32 today) and checks what comes back.
        out = S3.put_object(Bucket=self.bucket, Key="default", Body=body)
        crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        self.assertEqual(out.get("ChecksumCRC32"), crc32)
        for wrong in [dict(ChecksumCRC32="AAAAAA=="), dict(ChecksumSHA1=base64.b64encode(hashlib.sha1(b"x").digest()).decode())]:
            with self.assertRaises(ClientError) as e:
                S3.put_object(Bucket=self.bucket, Key="wrong", Body=body, **wrong)
            self.assertEqual((status(e.exception), error_code(e.exception)), (400, "BadDigest"))
        self.assertEqual(sorted(keys_of(self.bucket)), ["default", "sha"])
        # Parts are checked too.
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="mp")["UploadId"]
        with self.assertRaises(ClientError) as e:
            S3.upload_part(Bucket=self.bucket, Key="mp", UploadId=up, PartNumber=1, Body=body, ChecksumCRC32="AAAAAA==")
        self.assertEqual(error_code(e.exception), "BadDigest")
        self.assertEqual(S3.list_parts(Bucket=self.bucket, Key="mp", UploadId=up).get("Parts", []), [])
        S3.abort_multipart_upload(Bucket=self.bucket, Key="mp", UploadId=up)

    def test_every_algorithm_is_stored_and_served(self):
        # CRC32, CRC32C, SHA-1 and SHA-256, each given by the client, kept and served back; a wrong
        # CRC32C is refused like the others. (botocore computes CRC32C only with awscrt, so the
        # values here are computed by the test and sent as they are.)
        body = os.urandom(70_000)
        given = {
            "ChecksumCRC32": base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode(),
            "ChecksumCRC32C": base64.b64encode(crc32c(body).to_bytes(4, "big")).decode(),
            "ChecksumSHA1": base64.b64encode(hashlib.sha1(body).digest()).decode(),
            "ChecksumSHA256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
        }
        for member, value in given.items():
            key = member.lower()
            out = S3.put_object(Bucket=self.bucket, Key=key, Body=body, **{member: value})
            self.assertEqual(out.get(member), value, member)
            head = S3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            self.assertEqual(head.get(member), value, member)
        wrong = base64.b64encode(crc32c(body + b"!").to_bytes(4, "big")).decode()
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=self.bucket, Key="wrong-crc32c", Body=body, ChecksumCRC32C=wrong)
        self.assertEqual((status(e.exception), error_code(e.exception)), (400, "BadDigest"))
        self.assertNotIn("wrong-crc32c", keys_of(self.bucket))

    def test_get_object_attributes(self):
        body = os.urandom(1000)
        sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
        put = S3.put_object(Bucket=self.bucket, Key="attrs", Body=body, ChecksumSHA256=sha256)
        attrs = S3.get_object_attributes(Bucket=self.bucket, Key="attrs",
                                         ObjectAttributes=["ETag", "ObjectSize", "StorageClass", "Checksum", "ObjectParts"])
        self.assertEqual((attrs["ETag"].strip('"'), attrs["ObjectSize"], attrs["StorageClass"]),
                         (put["ETag"].strip('"'), 1000, "STANDARD"))
        self.assertEqual(attrs["Checksum"]["ChecksumSHA256"], sha256)
        self.assertNotIn("ObjectParts", attrs)
        self.assertNotIn("ObjectSize", S3.get_object_attributes(Bucket=self.bucket, Key="attrs", ObjectAttributes=["ETag"]))
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="parts")["UploadId"]
        e1 = S3.upload_part(Bucket=self.bucket, Key="parts", UploadId=up, PartNumber=1, Body=os.urandom(5 * MIB))["ETag"]
        e2 = S3.upload_part(Bucket=self.bucket, Key="parts", UploadId=up, PartNumber=2, Body=b"end")["ETag"]
        S3.complete_multipart_upload(Bucket=self.bucket, Key="parts", UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
        attrs = S3.get_object_attributes(Bucket=self.bucket, Key="parts", ObjectAttributes=["ObjectParts", "ObjectSize"])
        self.assertEqual((attrs["ObjectParts"]["TotalPartsCount"], attrs["ObjectSize"]), (2, 5 * MIB + 3))
        with self.assertRaises(ClientError) as e:
            S3.get_object_attributes(Bucket=self.bucket, Key="missing", ObjectAttributes=["ETag"])
        self.assertEqual(status(e.exception), 404)

    def test_trailer_checksum_of_an_aws_chunked_upload(self):
        data = os.urandom(150_000)
        crc32 = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        self.assertEqual(trailer_put(self.bucket, "trailed", data, crc32)[0], 200)
        head = S3.head_object(Bucket=self.bucket, Key="trailed", ChecksumMode="ENABLED")
        self.assertEqual((head["ContentLength"], head["ChecksumCRC32"]), (len(data), crc32))
        code, answer = trailer_put(self.bucket, "bad-trailer", data, "AAAAAA==")
        self.assertEqual(code, 400)
        self.assertIn(b"<Code>BadDigest</Code>", answer)
        self.assertEqual(keys_of(self.bucket), ["trailed"])


def trailer_put(bucket, key, data, crc32, chunk_size=64 * 1024):
    """An unsigned aws-chunked PUT whose CRC32 comes in a trailer after the body
    (STREAMING-UNSIGNED-PAYLOAD-TRAILER), as current AWS SDKs send uploads over HTTPS."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    body = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + chunk_size]), data[i:i + chunk_size]) for i in range(0, len(data), chunk_size))
    body += b"0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % crc32.encode()
    url = "%s/%s/%s" % (ENDPOINT, bucket, key)
    headers = {"content-encoding": "aws-chunked", "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
               "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"}
    signed = AWSRequest(method="PUT", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(signed)
    req = urllib.request.Request(url, data=body, method="PUT", headers=dict(signed.headers.items()))
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def streaming_put(bucket, key, data, chunk_size, tamper=False):
    """A PUT signed chunk by chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, aws-chunked), as the AWS
    SDKs for Java and Go send uploads. Written out here because botocore does not send it."""
    def hmac_sha256(key, text):
        return hmac.new(key, text.encode() if isinstance(text, str) else text, hashlib.sha256)
    amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    scope = "%s/us-east-1/s3/aws4_request" % amz_date[:8]
    signing_key = ("AWS4" + SECRET_KEY).encode()
    for part in [amz_date[:8], "us-east-1", "s3", "aws4_request"]:
        signing_key = hmac_sha256(signing_key, part).digest()
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    encoded_length = sum(len("%x;chunk-signature=" % len(c)) + 64 + 2 + len(c) + 2 for c in chunks)
    url = urllib.parse.urlparse("%s/%s/%s" % (ENDPOINT, bucket, key))
    headers = {
        "content-encoding": "aws-chunked",
        "content-length": str(encoded_length),
        "host": url.netloc,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(len(data)),
    }
    signed = sorted(headers)
    canonical = "\n".join(["PUT", url.path, "", "".join("%s:%s\n" % (h, headers[h]) for h in signed), ";".join(signed),
                           "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    previous = hmac_sha256(signing_key, to_sign).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ACCESS_KEY, scope, ";".join(signed), previous)
    body = b""
    empty = hashlib.sha256(b"").hexdigest()
    for chunk in chunks:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, empty, hashlib.sha256(chunk).hexdigest()])
        previous = hmac_sha256(signing_key, to_sign).hexdigest()
        sent = chunk if not (tamper and chunk) else bytes([chunk[0] ^ 1]) + chunk[1:]
        body += ("%x;chunk-signature=%s\r\n" % (len(chunk), previous)).encode() + sent + b"\r\n"
    req = urllib.request.Request(url.geturl(), data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class MultipartRules(unittest.TestCase):
    def setUp(self):
        self.bucket = new_bucket()

    def complete(self, key, upload_id, etags):
        return S3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in etags]})

    def test_parts_but_the_last_are_at_least_5_mib(self):
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="small")["UploadId"]
        e1 = S3.upload_part(Bucket=self.bucket, Key="small", UploadId=up, PartNumber=1, Body=b"a" * 1024)["ETag"]
        e2 = S3.upload_part(Bucket=self.bucket, Key="small", UploadId=up, PartNumber=2, Body=b"b")["ETag"]
        with self.assertRaises(ClientError) as e:
            self.complete("small", up, [(1, e1), (2, e2)])
        self.assertEqual((status(e.exception), error_code(e.exception)), (400, "EntityTooSmall"))
        # The upload is still there: part 1 sent again at full size completes it.
        big = os.urandom(5 * MIB)
        e1 = S3.upload_part(Bucket=self.bucket, Key="small", UploadId=up, PartNumber=1, Body=big)["ETag"]
        self.complete("small", up, [(1, e1), (2, e2)])
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="small")["Body"].read(), big + b"b")

    def test_a_part_sent_again_replaces_the_first(self):
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="again")["UploadId"]
        first = S3.upload_part(Bucket=self.bucket, Key="again", UploadId=up, PartNumber=1, Body=b"first try")["ETag"]
        second = S3.upload_part(Bucket=self.bucket, Key="again", UploadId=up, PartNumber=1, Body=b"second try")["ETag"]
        parts = S3.list_parts(Bucket=self.bucket, Key="again", UploadId=up)["Parts"]
        self.assertEqual([(p["PartNumber"], p["ETag"]) for p in parts], [(1, second)])
        with self.assertRaises(ClientError) as e:
            self.complete("again", up, [(1, first)])
        self.assertEqual(error_code(e.exception), "InvalidPart")
        self.complete("again", up, [(1, second)])
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="again")["Body"].read(), b"second try")

    def test_a_part_sent_twice_at_once_is_the_one_that_finished_last(self):
        """The part whose first upload starts first but finishes last (a client's retry racing a
        slow original): the later finish is the part, and completion takes its ETag."""
        import http.client
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="raced")["UploadId"]
        slow_body = b"s" * (256 * 1024)
        url = "%s/%s/raced?partNumber=1&uploadId=%s" % (ENDPOINT, self.bucket, up)
        signed = AWSRequest(method="PUT", url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                                                            "Content-Length": str(len(slow_body))})
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(signed)
        endpoint = urllib.parse.urlparse(ENDPOINT)
        slow = http.client.HTTPConnection(endpoint.hostname, endpoint.port)
        slow.putrequest("PUT", "/%s/raced?partNumber=1&uploadId=%s" % (self.bucket, up), skip_accept_encoding=True)
        for name, value in signed.headers.items():
            if name.lower() != "host":
                slow.putheader(name, value)
        slow.endheaders()
        slow.send(slow_body[:1024])  # the original has begun ...
        time.sleep(0.5)
        fast = S3.upload_part(Bucket=self.bucket, Key="raced", UploadId=up, PartNumber=1, Body=b"the retry")["ETag"]
        slow.send(slow_body[1024:])  # ... and ends after its retry
        answer = slow.getresponse()
        self.assertEqual(answer.status, 200, answer.read())
        slow_etag = answer.getheader("ETag")
        slow.close()
        self.assertEqual(slow_etag, '"%s"' % hashlib.md5(slow_body).hexdigest())
        parts = S3.list_parts(Bucket=self.bucket, Key="raced", UploadId=up)["Parts"]
        self.assertEqual([(p["PartNumber"], p["ETag"]) for p in parts], [(1, slow_etag)])
        with self.assertRaises(ClientError) as e:
            self.complete("raced", up, [(1, fast)])
        self.assertEqual(error_code(e.exception), "InvalidPart")
        self.complete("raced", up, [(1, slow_etag)])
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="raced")["Body"].read(), slow_body)

    def test_uploads_and_parts_are_listed_in_pages(self):
        ids = [(k, S3.create_multipart_upload(Bucket=self.bucket, Key=k)["UploadId"]) for k in ["a/1", "a/2", "b", "b", "c"]]
        pages = list(S3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, PaginationConfig={"PageSize": 2}))
        self.assertEqual(len(pages), 3)
        listed = [(u["Key"], u["UploadId"]) for p in pages for u in p.get("Uploads", [])]
        self.assertEqual(sorted(listed), sorted(ids))
        self.assertEqual([k for k, _ in listed], ["a/1", "a/2", "b", "b", "c"])
        rolled = S3.list_multipart_uploads(Bucket=self.bucket, Delimiter="/")
        self.assertEqual([p["Prefix"] for p in rolled["CommonPrefixes"]], ["a/"])
        self.assertEqual([u["Key"] for u in rolled["Uploads"]], ["b", "b", "c"])
        self.assertEqual([u["Key"] for u in S3.list_multipart_uploads(Bucket=self.bucket, Prefix="a/")["Uploads"]], ["a/1", "a/2"])
        key, upload = ids[0]
        for n in range(1, 4):
            S3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=n, Body=b"%d" % n)
        first = S3.list_parts(Bucket=self.bucket, Key=key, UploadId=upload, MaxParts=2)
        self.assertEqual(([p["PartNumber"] for p in first["Parts"]], first["IsTruncated"], first["NextPartNumberMarker"]), ([1, 2], True, 2))
        rest = S3.list_parts(Bucket=self.bucket, Key=key, UploadId=upload, PartNumberMarker=2)
        self.assertEqual(([p["PartNumber"] for p in rest["Parts"]], rest["IsTruncated"]), ([3], False))
        for k, u in ids:
            S3.abort_multipart_upload(Bucket=self.bucket, Key=k, UploadId=u)

    def test_upload_part_copy(self):
        source = os.urandom(5 * MIB + 1234)
        S3.put_object(Bucket=self.bucket, Key="source", Body=source)
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="assembled")["UploadId"]
        copied = S3.upload_part_copy(Bucket=self.bucket, Key="assembled", UploadId=up, PartNumber=1,
                                     CopySource={"Bucket": self.bucket, "Key": "source"}, CopySourceRange="bytes=0-%d" % (5 * MIB - 1))
        e1 = copied["CopyPartResult"]["ETag"]
        self.assertEqual(e1, '"%s"' % hashlib.md5(source[:5 * MIB]).hexdigest())
        e2 = S3.upload_part_copy(Bucket=self.bucket, Key="assembled", UploadId=up, PartNumber=2,
                                 CopySource={"Bucket": self.bucket, "Key": "source"},
                                 CopySourceRange="bytes=%d-%d" % (5 * MIB, len(source) - 1))["CopyPartResult"]["ETag"]
        self.complete("assembled", up, [(1, e1), (2, e2)])
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="assembled")["Body"].read(), source)
        # A whole object as a part, and a source condition that fails.
        up = S3.create_multipart_upload(Bucket=self.bucket, Key="whole")["UploadId"]
        S3.upload_part_copy(Bucket=self.bucket, Key="whole", UploadId=up, PartNumber=1, CopySource={"Bucket": self.bucket, "Key": "source"})
        with self.assertRaises(ClientError) as e:
            S3.upload_part_copy(Bucket=self.bucket, Key="whole", UploadId=up, PartNumber=2, CopySourceIfMatch='"0123"',
                                CopySource={"Bucket": self.bucket, "Key": "source"})
        self.assertEqual(status(e.exception), 412)
        with self.assertRaises(ClientError) as e:
            S3.upload_part_copy(Bucket=self.bucket, Key="whole", UploadId=up, PartNumber=2, CopySourceRange="bytes=0-",
                                CopySource={"Bucket": self.bucket, "Key": "source"})
        self.assertEqual(error_code(e.exception), "InvalidArgument")
        S3.abort_multipart_upload(Bucket=self.bucket, Key="whole", UploadId=up)


class CopiesAndTags(unittest.TestCase):
    def setUp(self):
        self.bucket = new_bucket()

    def test_copy_onto_itself_must_change_something(self):
        S3.put_object(Bucket=self.bucket, Key="self", Body=b"me", Metadata={"v": "1"})
        with self.assertRaises(ClientError) as e:
            S3.copy_object(Bucket=self.bucket, Key="self", CopySource={"Bucket": self.bucket, "Key": "self"})
        self.assertEqual((status(e.exception), error_code(e.exception)), (400, "InvalidRequest"))
        S3.copy_object(Bucket=self.bucket, Key="self", CopySource={"Bucket": self.bucket, "Key": "self"},
                       MetadataDirective="REPLACE", Metadata={"v": "2"})
        got = S3.get_object(Bucket=self.bucket, Key="self")
        self.assertEqual((got["Body"].read(), got["Metadata"]), (b"me", {"v": "2"}))
        with self.assertRaises(ClientError) as e:
            S3.copy_object(Bucket=self.bucket, Key="other", CopySource={"Bucket": self.bucket, "Key": "self"},
                           CopySourceIfNoneMatch=got["ETag"])
        self.assertEqual(status(e.exception), 412, e.exception.response)

    def test_object_tagging(self):
        S3.put_object(Bucket=self.bucket, Key="t", Body=b"tagged", Tagging="team=storage&note=a%2Bb c")
        tags = {t["Key"]: t["Value"] for t in S3.get_object_tagging(Bucket=self.bucket, Key="t")["TagSet"]}
        self.assertEqual(tags, {"team": "storage", "note": "a+b c"})
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="t")["TagCount"], 2)
        etag = S3.head_object(Bucket=self.bucket, Key="t")["ETag"]
        S3.put_object_tagging(Bucket=self.bucket, Key="t", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
        self.assertEqual(S3.get_object_tagging(Bucket=self.bucket, Key="t")["TagSet"], [{"Key": "only", "Value": "one"}])
        self.assertEqual(S3.head_object(Bucket=self.bucket, Key="t")["ETag"], etag)  # tags are not the content
        # Copies keep the tags unless told to replace them.
        S3.copy_object(Bucket=self.bucket, Key="kept", CopySource={"Bucket": self.bucket, "Key": "t"})
        S3.copy_object(Bucket=self.bucket, Key="replaced", CopySource={"Bucket": self.bucket, "Key": "t"},
                       TaggingDirective="REPLACE", Tagging="new=1")
        self.assertEqual(S3.get_object_tagging(Bucket=self.bucket, Key="kept")["TagSet"], [{"Key": "only", "Value": "one"}])
        self.assertEqual(S3.get_object_tagging(Bucket=self.bucket, Key="replaced")["TagSet"], [{"Key": "new", "Value": "1"}])
        S3.delete_object_tagging(Bucket=self.bucket, Key="t")
        self.assertEqual(S3.get_object_tagging(Bucket=self.bucket, Key="t")["TagSet"], [])
        self.assertNotIn("TagCount", S3.get_object(Bucket=self.bucket, Key="t"))
        for bad in [[{"Key": "aws:x", "Value": "1"}], [{"Key": "k%d" % i, "Value": "v"} for i in range(11)],
                    [{"Key": "k", "Value": "semi;colon"}]]:
            with self.assertRaises(ClientError) as e:
                S3.put_object_tagging(Bucket=self.bucket, Key="t", Tagging={"TagSet": bad})
            self.assertEqual((status(e.exception), error_code(e.exception)), (400, "InvalidTag"))
        with self.assertRaises(ClientError) as e:
            S3.get_object_tagging(Bucket=self.bucket, Key="missing")
        self.assertEqual(error_code(e.exception), "NoSuchKey")


def unsigned(method, bucket, key="", headers=None, body=None):
    """A request with no signature, as a browser or curl sends one: (status, headers, body)."""
    req = urllib.request.Request("%s/%s/%s" % (ENDPOINT, bucket, urllib.parse.quote(key)), data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def public_read_policy(bucket, prefix):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
        "Resource": "arn:aws:s3:::%s/%s*" % (bucket, prefix)}]})


class Policies(unittest.TestCase):
    """Bucket policies, canned ACLs and the public access block decide who may do what."""

    def setUp(self):
        self.bucket = new_bucket()
        S3.put_object(Bucket=self.bucket, Key="public/a.txt", Body=b"for everyone")
        S3.put_object(Bucket=self.bucket, Key="private/b.txt", Body=b"for us")

    def test_a_policy_makes_a_prefix_public_read(self):
        self.assertEqual(unsigned("GET", self.bucket, "public/a.txt")[0], 403)
        S3.put_bucket_policy(Bucket=self.bucket, Policy=public_read_policy(self.bucket, "public/"))
        code, _, body = unsigned("GET", self.bucket, "public/a.txt")
        self.assertEqual((code, body), (200, b"for everyone"))
        self.assertEqual(unsigned("GET", self.bucket, "private/b.txt")[0], 403)
        self.assertEqual(unsigned("PUT", self.bucket, "public/new.txt", body=b"x")[0], 403)
        self.assertEqual(unsigned("GET", self.bucket)[0], 403)  # listing was not granted
        self.assertEqual(json.loads(S3.get_bucket_policy(Bucket=self.bucket)["Policy"])["Statement"][0]["Sid"], "PublicRead")
        self.assertTrue(S3.get_bucket_policy_status(Bucket=self.bucket)["PolicyStatus"]["IsPublic"])
        # RestrictPublicBuckets shuts the door without touching the policy.
        S3.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
        self.assertEqual(unsigned("GET", self.bucket, "public/a.txt")[0], 403)
        self.assertFalse(S3.get_bucket_policy_status(Bucket=self.bucket)["PolicyStatus"]["IsPublic"])
        S3.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
        self.assertEqual(unsigned("GET", self.bucket, "public/a.txt")[0], 200)
        with self.assertRaises(ClientError) as e:
            S3.put_bucket_policy(Bucket=self.bucket, Policy=public_read_policy(self.bucket, ""))
        self.assertEqual((status(e.exception), error_code(e.exception)), (403, "AccessDenied"))
        S3.delete_public_access_block(Bucket=self.bucket)
        S3.delete_bucket_policy(Bucket=self.bucket)
        self.assertEqual(unsigned("GET", self.bucket, "public/a.txt")[0], 403)

    def test_a_deny_statement_binds_access_keys(self):
        deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": {"AWS": [ACCESS_KEY]},
                "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::%s/private/*" % self.bucket}]}
        S3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(deny))
        with self.assertRaises(ClientError) as e:
            S3.delete_object(Bucket=self.bucket, Key="private/b.txt")
        self.assertEqual((status(e.exception), error_code(e.exception)), (403, "AccessDenied"))
        out = S3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": "private/b.txt"}, {"Key": "public/a.txt"}]})
        self.assertEqual([(x["Key"], x["Code"]) for x in out["Errors"]], [("private/b.txt", "AccessDenied")])
        self.assertEqual([d["Key"] for d in out["Deleted"]], ["public/a.txt"])
        self.assertEqual(keys_of(self.bucket), ["private/b.txt"])
        S3.delete_bucket_policy(Bucket=self.bucket)
        S3.delete_object(Bucket=self.bucket, Key="private/b.txt")

    def test_malformed_or_unenforceable_policies_are_refused(self):
        for policy in ["not json", json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                               "Resource": "arn:aws:s3:::other-bucket/*"}]}),
                       json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                  "Resource": "arn:aws:s3:::%s/*" % self.bucket,
                                                  "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]})]:
            with self.assertRaises(ClientError) as e:
                S3.put_bucket_policy(Bucket=self.bucket, Policy=policy)
            self.assertEqual((status(e.exception), error_code(e.exception)), (400, "MalformedPolicy"), policy)
        with self.assertRaises(ClientError) as e:
            S3.get_bucket_policy(Bucket=self.bucket)
        self.assertEqual(error_code(e.exception), "NoSuchBucketPolicy")

    def test_canned_acls_map_onto_public_grants(self):
        public = "pub-" + uuid.uuid4().hex[:12]
        S3.create_bucket(Bucket=public, ACL="public-read")
        S3.put_object(Bucket=public, Key="k", Body=b"visible")
        self.assertEqual(unsigned("GET", public, "k")[:3:2], (200, b"visible"))
        self.assertEqual(unsigned("GET", public)[0], 200)  # listing, too
        self.assertEqual(unsigned("PUT", public, "k", body=b"x")[0], 403)
        grants = S3.get_bucket_acl(Bucket=public)["Grants"]
        self.assertIn(("http://acs.amazonaws.com/groups/global/AllUsers", "READ"),
                      [(g["Grantee"].get("URI"), g["Permission"]) for g in grants])
        S3.put_public_access_block(Bucket=public, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
        self.assertEqual(unsigned("GET", public, "k")[0], 403)
        S3.put_public_access_block(Bucket=public, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
        with self.assertRaises(ClientError) as e:
            S3.put_bucket_acl(Bucket=public, ACL="public-read-write")
        self.assertEqual(error_code(e.exception), "AccessDenied")
        S3.put_bucket_acl(Bucket=public, ACL="private")
        S3.delete_public_access_block(Bucket=public)
        self.assertEqual(unsigned("GET", public, "k")[0], 403)
        S3.delete_object(Bucket=public, Key="k")
        S3.delete_bucket(Bucket=public)


class ObjectAcls(unittest.TestCase):
    """Canned ACLs on objects: PutObject, CopyObject, multipart uploads and PutObjectAcl."""

    ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"

    def setUp(self):
        self.bucket = new_bucket()

    def public_grants(self, key, **version):
        grants = S3.get_object_acl(Bucket=self.bucket, Key=key, **version)["Grants"]
        return sorted(g["Permission"] for g in grants if g["Grantee"].get("URI") == self.ALL_USERS)

    def test_a_public_read_object_in_a_private_bucket(self):
        S3.put_object(Bucket=self.bucket, Key="open.txt", Body=b"anyone", ACL="public-read")
        S3.put_object(Bucket=self.bucket, Key="closed.txt", Body=b"us only")
        self.assertEqual(unsigned("GET", self.bucket, "open.txt")[::2], (200, b"anyone"))
        self.assertEqual(unsigned("HEAD", self.bucket, "open.txt")[0], 200)
        self.assertEqual(unsigned("GET", self.bucket, "closed.txt")[0], 403)
        self.assertEqual(unsigned("GET", self.bucket)[0], 403)  # the bucket is not listable
        self.assertEqual(unsigned("PUT", self.bucket, "open.txt", body=b"vandal")[0], 403)
        self.assertEqual(unsigned("DELETE", self.bucket, "open.txt")[0], 403)
        self.assertEqual(self.public_grants("open.txt"), ["READ"])
        self.assertEqual(self.public_grants("closed.txt"), [])
        # An overwrite without an ACL makes the object private again, as in S3.
        S3.put_object(Bucket=self.bucket, Key="open.txt", Body=b"now private")
        self.assertEqual(unsigned("GET", self.bucket, "open.txt")[0], 403)
        # PutObjectAcl publishes and withdraws an existing object.
        S3.put_object_acl(Bucket=self.bucket, Key="closed.txt", ACL="public-read")
        self.assertEqual(unsigned("GET", self.bucket, "closed.txt")[::2], (200, b"us only"))
        S3.put_object_acl(Bucket=self.bucket, Key="closed.txt", ACL="private")
        self.assertEqual(unsigned("GET", self.bucket, "closed.txt")[0], 403)
        with self.assertRaises(ClientError) as e:
            S3.put_object_acl(Bucket=self.bucket, Key="missing.txt", ACL="public-read")
        self.assertEqual(error_code(e.exception), "NoSuchKey")

    def test_copies_and_multipart_uploads_take_the_acl_they_are_given(self):
        S3.put_object(Bucket=self.bucket, Key="src", Body=b"source", ACL="public-read")
        S3.copy_object(Bucket=self.bucket, Key="copy-private", CopySource={"Bucket": self.bucket, "Key": "src"})
        S3.copy_object(Bucket=self.bucket, Key="copy-public", CopySource={"Bucket": self.bucket, "Key": "src"}, ACL="public-read")
        self.assertEqual(unsigned("GET", self.bucket, "copy-private")[0], 403)  # never the source's ACL
        self.assertEqual(unsigned("GET", self.bucket, "copy-public")[::2], (200, b"source"))
        upload = S3.create_multipart_upload(Bucket=self.bucket, Key="big", ACL="public-read")["UploadId"]
        part = S3.upload_part(Bucket=self.bucket, Key="big", UploadId=upload, PartNumber=1, Body=b"m" * 1000)
        S3.complete_multipart_upload(Bucket=self.bucket, Key="big", UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        self.assertEqual(unsigned("GET", self.bucket, "big")[::2], (200, b"m" * 1000))
        self.assertEqual(self.public_grants("big"), ["READ"])
        S3.put_object(Bucket=self.bucket, Key="rw", Body=b"x", ACL="public-read-write")
        self.assertEqual(self.public_grants("rw"), ["READ", "WRITE"])
        self.assertEqual(unsigned("PUT", self.bucket, "rw", body=b"y")[0], 403)  # WRITE means nothing on an object
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=self.bucket, Key="bad", Body=b"x", ACL="log-delivery-write")
        self.assertEqual((status(e.exception), error_code(e.exception)), (400, "InvalidArgument"))
        self.assertNotIn("bad", keys_of(self.bucket))

    def test_the_public_access_block_and_a_deny_policy_win(self):
        S3.put_object(Bucket=self.bucket, Key="open.txt", Body=b"anyone", ACL="public-read")
        S3.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
        self.assertEqual(unsigned("GET", self.bucket, "open.txt")[0], 403)
        S3.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
        self.assertEqual(unsigned("GET", self.bucket, "open.txt")[0], 200)  # a block governs later changes
        for call in [lambda: S3.put_object(Bucket=self.bucket, Key="new.txt", Body=b"x", ACL="public-read"),
                     lambda: S3.put_object_acl(Bucket=self.bucket, Key="open.txt", ACL="public-read-write"),
                     lambda: S3.create_multipart_upload(Bucket=self.bucket, Key="new.txt", ACL="public-read")]:
            with self.assertRaises(ClientError) as e:
                call()
            self.assertEqual((status(e.exception), error_code(e.exception)), (403, "AccessDenied"))
        self.assertNotIn("new.txt", keys_of(self.bucket))
        S3.delete_public_access_block(Bucket=self.bucket)
        S3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps({"Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::%s/*" % self.bucket}]}))
        self.assertEqual(unsigned("GET", self.bucket, "open.txt")[0], 403)

    def test_each_version_keeps_its_own_acl(self):
        S3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        first = S3.put_object(Bucket=self.bucket, Key="doc", Body=b"v1", ACL="public-read")["VersionId"]
        second = S3.put_object(Bucket=self.bucket, Key="doc", Body=b"v2")["VersionId"]
        self.assertEqual(unsigned("GET", self.bucket, "doc")[0], 403)
        self.assertEqual(self.public_grants("doc", VersionId=first), ["READ"])
        self.assertEqual(self.public_grants("doc", VersionId=second), [])
        # An unsigned GET of the first version is decided by that version's ACL.
        with urllib.request.urlopen("%s/%s/doc?versionId=%s" % (ENDPOINT, self.bucket, first)) as r:
            self.assertEqual(r.read(), b"v1")
        S3.put_object_acl(Bucket=self.bucket, Key="doc", VersionId=second, ACL="public-read")
        self.assertEqual(unsigned("GET", self.bucket, "doc")[::2], (200, b"v2"))
        S3.put_object_acl(Bucket=self.bucket, Key="doc", VersionId=first, ACL="private")
        self.assertEqual(self.public_grants("doc", VersionId=first), [])
        for version in (first, second):  # the suite counts one file per current object at its end
            S3.delete_object(Bucket=self.bucket, Key="doc", VersionId=version)


class Cors(unittest.TestCase):
    ORIGIN = "https://app.example.com"

    def setUp(self):
        self.bucket = new_bucket()

    def preflight(self, origin, method, headers=""):
        h = {"Origin": origin, "Access-Control-Request-Method": method}
        if headers:
            h["Access-Control-Request-Headers"] = headers
        return unsigned("OPTIONS", self.bucket, "upload.bin", headers=h)

    def test_preflights_and_answers_follow_the_bucket_rules(self):
        self.assertEqual(self.preflight(self.ORIGIN, "PUT")[0], 403)  # no CORS configuration yet
        S3.put_bucket_cors(Bucket=self.bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": [self.ORIGIN], "AllowedMethods": ["PUT", "GET"], "AllowedHeaders": ["*"],
             "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]})
        code, headers, _ = self.preflight(self.ORIGIN, "PUT", "content-type, x-amz-date")
        self.assertEqual(code, 200)
        self.assertEqual(headers["Access-Control-Allow-Origin"], self.ORIGIN)
        self.assertIn("PUT", headers["Access-Control-Allow-Methods"])
        self.assertEqual(headers["Access-Control-Allow-Headers"], "content-type, x-amz-date")
        self.assertEqual(headers["Access-Control-Max-Age"], "600")
        self.assertEqual(self.preflight("https://evil.example.net", "PUT")[0], 403)
        self.assertEqual(self.preflight(self.ORIGIN, "DELETE")[0], 403)
        # The answer to the request itself carries the headers a browser needs to read it.
        S3.put_object(Bucket=self.bucket, Key="upload.bin", Body=b"x")
        url = S3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": "upload.bin"})
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Origin": self.ORIGIN})) as r:
            self.assertEqual((r.headers["Access-Control-Allow-Origin"], r.headers["Access-Control-Expose-Headers"]),
                             (self.ORIGIN, "ETag"))
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Origin": "https://evil.example.net"})) as r:
            self.assertIsNone(r.headers["Access-Control-Allow-Origin"])
        rules = S3.get_bucket_cors(Bucket=self.bucket)["CORSRules"]
        self.assertEqual((rules[0]["AllowedOrigins"], rules[0]["MaxAgeSeconds"]), ([self.ORIGIN], 600))
        with self.assertRaises(ClientError) as e:
            S3.put_bucket_cors(Bucket=self.bucket, CORSConfiguration={"CORSRules": [
                {"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})
        self.assertEqual(status(e.exception), 400)
        S3.delete_bucket_cors(Bucket=self.bucket)
        self.assertEqual(self.preflight(self.ORIGIN, "PUT")[0], 403)


class Lifecycle(unittest.TestCase):
    """The service under test runs with a 2-second lifecycle "day", applied every second."""

    def test_an_expiration_rule_removes_objects_under_its_prefix(self):
        bucket = new_bucket()
        S3.put_object(Bucket=bucket, Key="tmp/old.log", Body=b"expires")
        S3.put_object(Bucket=bucket, Key="tmp/tagged-keep.log", Body=b"kept: not tagged", Tagging="kind=keep")
        S3.put_object(Bucket=bucket, Key="keep/forever.txt", Body=b"stays")
        up = S3.create_multipart_upload(Bucket=bucket, Key="tmp/stale-upload")["UploadId"]
        S3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
            {"ID": "tmp", "Status": "Enabled", "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "kind", "Value": "scratch"}]}},
             "Expiration": {"Days": 1}},
            {"ID": "tmp-untagged", "Status": "Enabled", "Filter": {"Prefix": "tmp/old"}, "Expiration": {"Days": 1},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
            {"ID": "tmp-stale", "Status": "Enabled", "Filter": {"Prefix": "tmp/stale"},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
            {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Days": 1}}]})
        rules = S3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        self.assertEqual([r["ID"] for r in rules], ["tmp", "tmp-untagged", "tmp-stale", "off"])
        deadline = time.time() + 30
        while time.time() < deadline and "tmp/old.log" in keys_of(bucket):
            time.sleep(0.5)
        while time.time() < deadline and S3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            time.sleep(0.5)
        self.assertEqual(keys_of(bucket), ["keep/forever.txt", "tmp/tagged-keep.log"])
        self.assertEqual(S3.list_multipart_uploads(Bucket=bucket).get("Uploads", []), [])
        with self.assertRaises(ClientError) as e:
            S3.list_parts(Bucket=bucket, Key="tmp/stale-upload", UploadId=up)
        self.assertEqual(error_code(e.exception), "NoSuchUpload")
        with self.assertRaises(ClientError) as e:
            S3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
                {"ID": "glacier", "Status": "Enabled", "Filter": {"Prefix": ""},
                 "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}]})
        self.assertEqual(error_code(e.exception), "NotImplemented")
        S3.delete_bucket_lifecycle(Bucket=bucket)
        with self.assertRaises(ClientError) as e:
            S3.get_bucket_lifecycle_configuration(Bucket=bucket)
        self.assertEqual(error_code(e.exception), "NoSuchLifecycleConfiguration")


class VirtualHosts(unittest.TestCase):
    """The service under test runs with S3_DOMAIN=s3.test: <bucket>.s3.test names the bucket."""

    def request(self, method, bucket, path, query="", body=b""):
        import http.client
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        endpoint = urllib.parse.urlparse(ENDPOINT)
        host = "%s.s3.test:%d" % (bucket, endpoint.port)
        url = "http://%s%s%s" % (host, path, "?" + query if query else "")
        signed = AWSRequest(method=method, url=url, data=body, headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(signed)
        headers = dict(signed.headers.items())
        headers["Host"] = host
        # The name does not resolve: connect to the service's address and name the bucket in Host.
        connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port)
        connection.request(method, path + ("?" + query if query else ""), body=body or None, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()

    def test_buckets_are_addressed_by_host_name(self):
        bucket = new_bucket()
        self.assertEqual(self.request("PUT", bucket, "/dir/hosted.txt", body=b"by virtual host")[0], 200)
        self.assertEqual(S3.get_object(Bucket=bucket, Key="dir/hosted.txt")["Body"].read(), b"by virtual host")
        self.assertEqual(self.request("GET", bucket, "/dir/hosted.txt"), (200, b"by virtual host"))
        code, listing = self.request("GET", bucket, "/", "list-type=2")
        self.assertEqual((code, xml_texts(listing, "Key")), (200, ["dir/hosted.txt"]))
        code, answer = self.request("GET", "no-such-" + uuid.uuid4().hex[:8], "/k")
        self.assertEqual(code, 404)
        self.assertIn(b"NoSuchBucket", answer)


def create_access_key(description, scopes):
    """An access key made through storage_manager's own API (what an admin does): (status, answer)."""
    req = urllib.request.Request(API_URL + "/api/storage_manager/access-keys", method="POST",
                                 data=json.dumps({"description": description, "scopes": scopes}).encode(),
                                 headers={"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


class ScopedAccessKeys(unittest.TestCase):
    """An access key limited to buckets and kinds of access, enforced with the bucket policies."""

    def test_a_read_only_key_for_one_bucket_and_a_write_only_key_for_a_prefix(self):
        suffix = uuid.uuid4().hex[:8]
        photos, uploads, other = "photos-" + suffix, "uploads-" + suffix, "other-" + suffix
        for bucket in (photos, uploads, other):
            S3.create_bucket(Bucket=bucket)
        S3.put_object(Bucket=photos, Key="cat.jpg", Body=b"meow")
        S3.put_object(Bucket=other, Key="secret", Body=b"no")
        code, reader = create_access_key("read-only photos", ["read:" + photos])
        self.assertEqual(code, 200, reader)
        self.assertEqual(reader["scopes"], ["read:" + photos])
        code, writer = create_access_key("uploader", ["write:uploads-*"])
        self.assertEqual(code, 200, writer)
        read_only = client(access=reader["id"], secret=reader["secret"])
        upload_only = client(access=writer["id"], secret=writer["secret"])

        self.assertEqual(read_only.get_object(Bucket=photos, Key="cat.jpg")["Body"].read(), b"meow")
        self.assertEqual([o["Key"] for o in read_only.list_objects_v2(Bucket=photos)["Contents"]], ["cat.jpg"])
        self.assertEqual([b["Name"] for b in read_only.list_buckets()["Buckets"]], [photos])
        denied = [
            lambda: read_only.put_object(Bucket=photos, Key="dog.jpg", Body=b"woof"),
            lambda: read_only.delete_object(Bucket=photos, Key="cat.jpg"),
            lambda: read_only.get_object(Bucket=other, Key="secret"),
            lambda: read_only.create_bucket(Bucket="new-" + suffix),
            lambda: read_only.put_bucket_policy(Bucket=photos, Policy=public_read_policy(photos, "")),
            lambda: upload_only.get_object(Bucket=photos, Key="cat.jpg"),
            lambda: upload_only.put_object(Bucket=other, Key="x", Body=b"x"),
            lambda: upload_only.copy_object(Bucket=uploads, Key="copied", CopySource={"Bucket": photos, "Key": "cat.jpg"}),
        ]
        for call in denied:
            with self.assertRaises(ClientError) as e:
                call()
            self.assertEqual((status(e.exception), error_code(e.exception)), (403, "AccessDenied"))
        upload_only.put_object(Bucket=uploads, Key="in.txt", Body=b"dropped off")
        with self.assertRaises(ClientError) as e:
            upload_only.get_object(Bucket=uploads, Key="in.txt")
        self.assertEqual(error_code(e.exception), "AccessDenied")
        self.assertEqual(S3.get_object(Bucket=uploads, Key="in.txt")["Body"].read(), b"dropped off")
        self.assertEqual(sorted(keys_of(photos)), ["cat.jpg"])

    def test_scopes_that_do_not_parse_are_refused(self):
        for scopes in [["delete:b"], ["read"], ["read:Bad_Name"], ["read:b"] * 51]:
            code, answer = create_access_key("bad", scopes)
            self.assertEqual((code, answer["code"]), (400, "invalid_scopes"), scopes)


def post_form(url, fields, file_name, data):
    """A browser's form upload: multipart/form-data, the file last. (status, headers, body)."""
    boundary = "----aerekos" + uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        body += ('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary, name, value)).encode()
    body += ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\nContent-Type: text/plain\r\n\r\n'
             % (boundary, file_name)).encode() + data + ("\r\n--%s--\r\n" % boundary).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "multipart/form-data; boundary=" + boundary})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    try:
        with urllib.request.build_opener(NoRedirect).open(req) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class PostObject(unittest.TestCase):
    """Browser form uploads (POST object) with a signed policy."""

    def setUp(self):
        self.bucket = new_bucket()

    def test_form_uploads_follow_their_policy(self):
        post = S3.generate_presigned_post(self.bucket, "uploads/form.txt",
                                          Fields={"success_action_status": "201"},
                                          Conditions=[{"success_action_status": "201"}, ["content-length-range", 1, 1000]])
        code, _, body = post_form(post["url"], post["fields"], "form.txt", b"from a form")
        self.assertEqual(code, 201, body)
        self.assertEqual(xml_texts(body, "Key"), ["uploads/form.txt"])
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="uploads/form.txt")["Body"].read(), b"from a form")
        # Too large for the policy's content-length-range: refused, nothing stored.
        post = S3.generate_presigned_post(self.bucket, "uploads/big.txt", Conditions=[["content-length-range", 1, 10]])
        code, _, body = post_form(post["url"], post["fields"], "big.txt", b"x" * 100)
        self.assertEqual(code, 400, body)
        self.assertIn(b"EntityTooLarge", body)
        # A key outside the policy's starts-with: refused.
        post = S3.generate_presigned_post(self.bucket, "uploads/ok.txt", Conditions=[["starts-with", "$key", "uploads/"]])
        fields = dict(post["fields"], key="elsewhere/x.txt")
        code, _, body = post_form(post["url"], fields, "x.txt", b"x")
        self.assertEqual(code, 403, body)
        self.assertIn(b"<Code>AccessDenied</Code><Message>Invalid according to Policy", body)
        # success_action_redirect: 303 to the page, naming what was stored.
        page = "https://app.example.com/uploaded"
        post = S3.generate_presigned_post(self.bucket, "uploads/r.txt", Fields={"success_action_redirect": page},
                                          Conditions=[{"success_action_redirect": page}])
        code, headers, _ = post_form(post["url"], post["fields"], "r.txt", b"redirected")
        self.assertEqual(code, 303)
        self.assertTrue(headers["Location"].startswith(page + "?"), headers["Location"])
        self.assertIn("key=uploads%2Fr.txt", headers["Location"])
        self.assertEqual(sorted(keys_of(self.bucket)), ["uploads/form.txt", "uploads/r.txt"])

    def test_filename_in_the_key_is_the_uploaded_files_name(self):
        # As S3 does: `${filename}` in the form's key becomes the file part's own name, in the
        # stored key, in the 201 answer and in the redirect.
        post = S3.generate_presigned_post(self.bucket, "inbox/${filename}", Fields={"success_action_status": "201"},
                                          Conditions=[["starts-with", "$key", "inbox/"], {"success_action_status": "201"}])
        code, _, body = post_form(post["url"], post["fields"], "Q3 report & notes.pdf", b"%PDF-1.4 a report")
        self.assertEqual(code, 201, body)
        self.assertEqual(xml_texts(body, "Key"), ["inbox/Q3 report & notes.pdf"])
        got = S3.get_object(Bucket=self.bucket, Key="inbox/Q3 report & notes.pdf")
        self.assertEqual(got["Body"].read(), b"%PDF-1.4 a report")
        page = "https://app.example.com/done"
        post = S3.generate_presigned_post(self.bucket, "inbox/${filename}", Fields={"success_action_redirect": page},
                                          Conditions=[["starts-with", "$key", "inbox/"], {"success_action_redirect": page}])
        code, headers, _ = post_form(post["url"], post["fields"], "photo.jpg", b"jpeg bytes")
        self.assertEqual(code, 303)
        self.assertIn("key=inbox%2Fphoto.jpg", headers["Location"])
        self.assertEqual(sorted(keys_of(self.bucket)), ["inbox/Q3 report & notes.pdf", "inbox/photo.jpg"])
        # A key without the placeholder is kept as given, whatever the file is called.
        post = S3.generate_presigned_post(self.bucket, "inbox/fixed.bin")
        self.assertIn(post_form(post["url"], post["fields"], "other-name.bin", b"x")[0], (200, 204))
        self.assertIn("inbox/fixed.bin", keys_of(self.bucket))

    def signed_fields(self, key, policy):
        """The form fields of a POST policy document signed here by hand (botocore always writes
        a valid expiration, and these tests need policies it would not write)."""
        amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        credential = "%s/%s/us-east-1/s3/aws4_request" % (ACCESS_KEY, amz_date[:8])
        policy = dict(policy, conditions=policy.get("conditions", []) + [
            {"bucket": self.bucket}, {"key": key}, {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential}, {"x-amz-date": amz_date}])
        encoded = base64.b64encode(json.dumps(policy).encode()).decode()
        signing_key = ("AWS4" + SECRET_KEY).encode()
        for part in [amz_date[:8], "us-east-1", "s3", "aws4_request"]:
            signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
        return {"key": key, "x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": credential, "x-amz-date": amz_date,
                "policy": encoded, "x-amz-signature": hmac.new(signing_key, encoded.encode(), hashlib.sha256).hexdigest()}

    def test_a_policy_past_its_expiration_or_without_a_valid_one_is_refused(self):
        url = "%s/%s" % (ENDPOINT, self.bucket)
        in_an_hour = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        # The hand-signed form is accepted while its policy is valid ...
        code, _, body = post_form(url, self.signed_fields("ok.txt", {"expiration": in_an_hour}), "ok.txt", b"x")
        self.assertIn(code, (200, 204), body)
        # ... and refused once it has expired (boto3's own form, made to expire a minute ago).
        post = S3.generate_presigned_post(self.bucket, "late.txt", ExpiresIn=-60)
        code, _, body = post_form(post["url"], post["fields"], "late.txt", b"too late")
        self.assertEqual(code, 403, body)
        self.assertIn(b"<Code>AccessDenied</Code>", body)
        # A policy without an expiration, or with one that is no date, is not a policy.
        for policy in [{"conditions": []}, {"expiration": "next tuesday"}]:
            code, _, body = post_form(url, self.signed_fields("bad.txt", policy), "bad.txt", b"x")
            self.assertEqual(code, 400, (policy, body))
            self.assertIn(b"<Code>InvalidPolicyDocument</Code>", body)
        self.assertEqual(keys_of(self.bucket), ["ok.txt"])


class Versioning(unittest.TestCase):
    """Per-bucket versioning: version ids, reads and deletes by version, delete markers, suspension."""

    def test_versions_markers_and_suspension(self):
        b = new_bucket()
        S3.put_object(Bucket=b, Key="k", Body=b"before")  # written unversioned: the null version
        self.assertNotIn("Status", S3.get_bucket_versioning(Bucket=b))
        self.assertNotIn("VersionId", S3.head_object(Bucket=b, Key="k"))  # never versioned: no version id
        S3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        self.assertEqual(S3.get_bucket_versioning(Bucket=b)["Status"], "Enabled")
        v1 = S3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
        v2 = S3.put_object(Bucket=b, Key="k", Body=b"two")["VersionId"]
        self.assertNotEqual(v1, v2)
        got = S3.get_object(Bucket=b, Key="k")
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"two", v2))
        self.assertEqual(S3.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read(), b"one")
        self.assertEqual(S3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read(), b"before")
        self.assertEqual(S3.head_object(Bucket=b, Key="k", VersionId=v1)["ContentLength"], 3)
        listed = S3.list_object_versions(Bucket=b)
        self.assertEqual([(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]], [(v2, True), (v1, False), ("null", False)])
        with self.assertRaises(ClientError) as e:
            S3.get_object(Bucket=b, Key="k", VersionId="no-such-version")
        self.assertEqual((status(e.exception), error_code(e.exception)), (404, "NoSuchVersion"))

        # A delete leaves the versions behind a delete marker.
        deleted = S3.delete_object(Bucket=b, Key="k")
        self.assertTrue(deleted["DeleteMarker"])
        marker = deleted["VersionId"]
        with self.assertRaises(ClientError) as e:
            S3.get_object(Bucket=b, Key="k")
        self.assertEqual(status(e.exception), 404)
        self.assertEqual(keys_of(b), [])
        listed = S3.list_object_versions(Bucket=b)
        self.assertEqual([(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]], [(marker, True)])
        self.assertEqual(len(listed["Versions"]), 3)
        with self.assertRaises(ClientError) as e:
            S3.delete_bucket(Bucket=b)
        self.assertEqual(error_code(e.exception), "BucketNotEmpty")
        # Removing the marker brings the newest version back; removing that, the one before.
        S3.delete_object(Bucket=b, Key="k", VersionId=marker)
        self.assertEqual(S3.get_object(Bucket=b, Key="k")["Body"].read(), b"two")
        S3.delete_object(Bucket=b, Key="k", VersionId=v2)
        self.assertEqual(S3.get_object(Bucket=b, Key="k")["Body"].read(), b"one")

        # Suspended: writes replace the null version and keep the others.
        S3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
        self.assertEqual(S3.put_object(Bucket=b, Key="k", Body=b"suspended")["VersionId"], "null")
        got = S3.get_object(Bucket=b, Key="k", VersionId="null")
        self.assertEqual((got["Body"].read(), got["VersionId"]), (b"suspended", "null"))
        self.assertEqual([v["VersionId"] for v in S3.list_object_versions(Bucket=b)["Versions"]], ["null", v1])
        self.assertEqual(S3.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read(), b"one")

        # Paging, then every version removed by id empties the bucket.
        for i in range(3):
            S3.put_object(Bucket=b, Key="p%d" % i, Body=b"x")
        pages = list(S3.get_paginator("list_object_versions").paginate(Bucket=b, PaginationConfig={"PageSize": 2}))
        everything = [(v["Key"], v["VersionId"]) for p in pages for v in p.get("Versions", []) + p.get("DeleteMarkers", [])]
        self.assertEqual(len(everything), 5)
        out = S3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k, "VersionId": v} for k, v in everything]})
        self.assertEqual(len(out["Deleted"]), 5)
        self.assertNotIn("Versions", S3.list_object_versions(Bucket=b))
        S3.delete_bucket(Bucket=b)

    def test_version_listings_roll_up_by_delimiter_and_page(self):
        b = new_bucket()
        S3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        for key in ["a/1", "a/1", "a/2", "b", "b"]:
            S3.put_object(Bucket=b, Key=key, Body=key.encode())
        top = S3.list_object_versions(Bucket=b, Delimiter="/")
        self.assertEqual([p["Prefix"] for p in top["CommonPrefixes"]], ["a/"])
        self.assertEqual([(v["Key"], v["IsLatest"]) for v in top["Versions"]], [("b", True), ("b", False)])
        pages = list(S3.get_paginator("list_object_versions").paginate(Bucket=b, Delimiter="/", PaginationConfig={"PageSize": 1}))
        self.assertEqual([p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])], ["a/"])
        self.assertEqual([v["Key"] for page in pages for v in page.get("Versions", [])], ["b", "b"])
        inside = S3.list_object_versions(Bucket=b, Prefix="a/", Delimiter="/")
        self.assertEqual([v["Key"] for v in inside["Versions"]], ["a/1", "a/1", "a/2"])
        versions = S3.list_object_versions(Bucket=b)["Versions"]
        S3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]})
        S3.delete_bucket(Bucket=b)

    def test_copies_and_multipart_make_versions(self):
        b = new_bucket()
        S3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        v1 = S3.put_object(Bucket=b, Key="src", Body=b"first")["VersionId"]
        S3.put_object(Bucket=b, Key="src", Body=b"second")
        copied = S3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src", "VersionId": v1})
        self.assertTrue(copied["VersionId"])
        self.assertEqual(S3.get_object(Bucket=b, Key="dst")["Body"].read(), b"first")
        up = S3.create_multipart_upload(Bucket=b, Key="dst")["UploadId"]
        e = S3.upload_part(Bucket=b, Key="dst", UploadId=up, PartNumber=1, Body=b"multipart")["ETag"]
        done = S3.complete_multipart_upload(Bucket=b, Key="dst", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
        self.assertNotEqual(done["VersionId"], copied["VersionId"])
        self.assertEqual(S3.get_object(Bucket=b, Key="dst", VersionId=copied["VersionId"])["Body"].read(), b"first")
        versions = S3.list_object_versions(Bucket=b)["Versions"]
        S3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]})
        S3.delete_bucket(Bucket=b)


class LifecycleOfVersions(unittest.TestCase):
    """Noncurrent-version expiration (the service under test has a 2-second lifecycle day)."""

    def test_earlier_versions_expire_and_current_ones_stay(self):
        b = new_bucket()
        S3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        old = S3.put_object(Bucket=b, Key="logs/a", Body=b"old")["VersionId"]
        new = S3.put_object(Bucket=b, Key="logs/a", Body=b"new")["VersionId"]
        kept_old = S3.put_object(Bucket=b, Key="keep/x", Body=b"1")["VersionId"]
        S3.put_object(Bucket=b, Key="keep/x", Body=b"2")
        S3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
            {"ID": "old-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
        rule = S3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"][0]
        self.assertEqual(rule["NoncurrentVersionExpiration"]["NoncurrentDays"], 1)
        deadline = time.time() + 30
        ids = lambda: [v["VersionId"] for v in S3.list_object_versions(Bucket=b, Prefix="logs/").get("Versions", [])]
        while time.time() < deadline and old in ids():
            time.sleep(0.5)
        self.assertEqual(ids(), [new])
        self.assertEqual(S3.get_object(Bucket=b, Key="logs/a")["Body"].read(), b"new")
        self.assertEqual(S3.get_object(Bucket=b, Key="keep/x", VersionId=kept_old)["Body"].read(), b"1")
        versions = S3.list_object_versions(Bucket=b)["Versions"]
        S3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]})
        S3.delete_bucket(Bucket=b)


class Signatures(unittest.TestCase):
    def setUp(self):
        self.bucket = new_bucket()
        S3.put_object(Bucket=self.bucket, Key="p.txt", Body=b"presigned body")

    def test_presigned_get_with_plain_http(self):
        url = S3.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": "p.txt"}, ExpiresIn=300)
        self.assertIn("X-Amz-Algorithm=AWS4-HMAC-SHA256", url)
        with urllib.request.urlopen(url) as r:
            self.assertEqual(r.read(), b"presigned body")
        # Tampering with the signed URL breaks it.
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.replace("p.txt", "q.txt"))
        self.assertEqual(e.exception.code, 403)

    def test_presigned_put(self):
        url = S3.generate_presigned_url("put_object", Params={"Bucket": self.bucket, "Key": "up.txt"}, ExpiresIn=300)
        req = urllib.request.Request(url, data=b"put by url", method="PUT")
        with urllib.request.urlopen(req) as r:
            self.assertEqual(r.status, 200)
        self.assertEqual(S3.get_object(Bucket=self.bucket, Key="up.txt")["Body"].read(), b"put by url")

    def test_wrong_signature_is_403(self):
        with self.assertRaises(ClientError) as e:
            client(secret="x" * 40).list_objects_v2(Bucket=self.bucket)
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        self.assertEqual(error_code(e.exception), "SignatureDoesNotMatch")

    def test_body_changed_after_signing_is_refused_and_not_stored(self):
        # A PUT signed over the SHA-256 of one body, sent with another of the same length.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        url = "%s/%s/tampered" % (ENDPOINT, self.bucket)
        signed = AWSRequest(method="PUT", url=url, data=b"original body",
                            headers={"x-amz-content-sha256": hashlib.sha256(b"original body").hexdigest()})
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(signed)
        req = urllib.request.Request(url, data=b"tampered body", method="PUT", headers=dict(signed.headers.items()))
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        self.assertEqual(e.exception.code, 400)
        self.assertIn(b"<Code>XAmzContentSHA256Mismatch</Code>", e.exception.read())
        with self.assertRaises(ClientError) as e:
            S3.head_object(Bucket=self.bucket, Key="tampered")
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)

    def test_unknown_access_key_is_403(self):
        with self.assertRaises(ClientError) as e:
            client(access="AKNOSUCHKEY000000000").list_buckets()
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        self.assertEqual(error_code(e.exception), "InvalidAccessKeyId")

    def test_unsigned_request_is_refused(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("%s/%s/p.txt" % (ENDPOINT, self.bucket))
        self.assertEqual(e.exception.code, 403)


class Encryption(unittest.TestCase):
    def test_sse_kms_maps_to_a_key_manager_key(self):
        bucket = new_bucket()
        out = S3.put_object(Bucket=bucket, Key="e", Body=b"sealed", ServerSideEncryption="aws:kms", SSEKMSKeyId=KMS_KEY)
        self.assertEqual((out["ServerSideEncryption"], out["SSEKMSKeyId"]), ("aws:kms", KMS_KEY))
        got = S3.get_object(Bucket=bucket, Key="e")
        self.assertEqual(got["Body"].read(), b"sealed")
        self.assertEqual((got["ServerSideEncryption"], got["SSEKMSKeyId"]), ("aws:kms", KMS_KEY))
        # Multipart under a key too.
        body = os.urandom(12 * MIB)
        config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
        S3.upload_fileobj(io.BytesIO(body), bucket, "big", Config=config,
                          ExtraArgs={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS_KEY})
        got = S3.get_object(Bucket=bucket, Key="big")
        self.assertEqual(got["SSEKMSKeyId"], KMS_KEY)
        self.assertEqual(got["Body"].read(), body)

    def test_unknown_kms_key_and_sse_s3_are_refused(self):
        bucket = new_bucket()
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=bucket, Key="e", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId="no-such-key")
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        with self.assertRaises(ClientError) as e:
            S3.put_object(Bucket=bucket, Key="e", Body=b"x", ServerSideEncryption="AES256")
        self.assertEqual(error_code(e.exception), "InvalidArgument")


if __name__ == "__main__":
    unittest.main(verbosity=2)
