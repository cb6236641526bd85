"""storage_manager's S3 protocol endpoint, driven by boto3 as any S3 application would.

Run by tests/tests/storage_manager.rs (`s3_protocol_via_boto3`), which starts the platform, creates
an access key through the service's own API and passes it here:

    S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_KMS_KEY (a key_manager key name)

`cargo xtask test` installs boto3 from PyPI. Every test uses its own bucket.
"""

import hashlib
import io
import os
import unittest
import urllib.error
import urllib.request
import uuid

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]
ACCESS_KEY = os.environ["S3_ACCESS_KEY"]
SECRET_KEY = os.environ["S3_SECRET_KEY"]
KMS_KEY = os.environ["S3_KMS_KEY"]
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
        self.assertGreaterEqual(e.exception.code, 400)
        self.assertLess(e.exception.code, 500)
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
