"""moto's S3 server, with the AWS rules that moto 5.2 does not implement and
that cairn's immutability tests depend on. Run as
`python3 aws_rules.py -H 127.0.0.1 -p PORT` (moto_server's own options).

moto is a test double of AWS S3, not a storage system. The rules added
here are AWS's documented behaviour, so that the role policies of
docs/STORAGE.md are judged the way AWS judges them; each names where AWS
documents it. A rule moto does not know is refused loudly (an unknown IAM
condition operator raises), never silently allowed.

1. IAM action names: `PutObjectRetention`, `GetObjectRetention` and
   `GetBucketObjectLockConfiguration` are their own actions (moto checks
   them as `PutObject`, `GetObject` and `ListBucket`), and a `PutObject` or
   `CreateMultipartUpload` that sets a retain-until date also needs
   `s3:PutObjectRetention` (AWS PutObject API reference,
   x-amz-object-lock-retain-until-date).
2. IAM conditions: the condition keys of conditional writes,
   `s3:if-none-match` and `s3:ObjectCreationOperation` ("Enforce
   conditional writes on Amazon S3 buckets"), and `s3:prefix` of
   ListBucket, with the operators `Null`, `Bool`, `StringEquals` and
   `StringLike`. A statement whose condition does not hold does not apply
   (moto 5.2 treats it as an explicit deny).
3. Signatures: the query string is signed in its canonical, escaped form
   (SigV4); moto 5.2 checks it unescaped, so any request with a `/` in a
   query value (every ListObjectsV2 with a `prefix=dir/`) fails its
   signature check.
4. Response shapes: GetBucketVersioning answers `<VersioningConfiguration>`
   and CompleteMultipartUpload `<CompleteMultipartUploadResult>` (the S3 API
   reference); moto 5.2 names both roots `...Response`, which the AWS SDK
   for Rust refuses.
5. Object Lock: a retention in COMPLIANCE mode cannot be shortened (nor
   its mode changed) by anyone; one in GOVERNANCE mode only with
   `x-amz-bypass-governance-retention: true` and the
   `s3:BypassGovernanceRetention` permission (S3 user guide, "Object Lock
   retention modes"). moto 5.2 lets anyone shorten either.
"""

import datetime
import fnmatch
import sys
from urllib.parse import parse_qs, quote, unquote, urlparse

from moto.iam import access_control as ac
from moto.s3 import responses as r
from moto.s3.exceptions import AccessDeniedByLock

# 1. Action names.
r.ACTION_MAP["KEY"]["PUT"]["retention"] = "PutObjectRetention"
r.ACTION_MAP["KEY"]["GET"]["retention"] = "GetObjectRetention"
r.ACTION_MAP["BUCKET"]["GET"]["object-lock"] = "GetBucketObjectLockConfiguration"


def _sets_retention(headers):
    return bool(headers.get("x-amz-object-lock-mode") or headers.get("x-amz-object-lock-retain-until-date"))


def _also_needs_put_object_retention(original):
    def wrapped(self, *args, **kwargs):
        query = args[-2] if len(args) >= 2 else {}
        if _sets_retention(self.headers) and "retention" not in query:
            action = self.data.get("Action")
            self.data["Action"] = "PutObjectRetention"
            self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name, key_name=args[-1])
            self.data["Action"] = action
        return original(self, *args, **kwargs)

    return wrapped


r.S3Response._key_response_put = _also_needs_put_object_retention(r.S3Response._key_response_put)
_original_post = r.S3Response._key_response_post


def _key_response_post(self, request, body, bucket_name, query, key_name):
    if _sets_retention(self.headers) and "uploads" in query:
        self.data["Action"] = "PutObjectRetention"
        self._authenticate_and_authorize_s3_action(bucket_name=bucket_name, key_name=key_name)
    return _original_post(self, request, body, bucket_name, query, key_name)


r.S3Response._key_response_post = _key_response_post


# 2. Conditions.
def _request_condition_values(req):
    headers = {k.lower(): v for k, v in req._headers.items()}
    url = urlparse(req._path)
    query = parse_qs(url.query, keep_blank_values=True)
    values = {}
    if "if-none-match" in headers:
        values["s3:if-none-match"] = headers["if-none-match"]
    if "prefix" in query:
        values["s3:prefix"] = query["prefix"][0]
    is_part = "partNumber" in query or "uploads" in query
    is_sub = any(q in query for q in ("retention", "legal-hold", "tagging", "acl"))
    creates = (req._method == "PUT" and not is_part and not is_sub) or (req._method == "POST" and "uploadId" in query)
    values["s3:ObjectCreationOperation"] = "true" if creates else "false"
    return values


def check_action_permitted(self, resource):
    if self._action == "sts:GetCallerIdentity":
        return
    values = _request_condition_values(self)
    permitted = False
    for policy in self._access_key.collect_policies():
        result = ac.IAMPolicy(policy).is_action_permitted(self._action, resource, None, values)
        if result == ac.PermissionResult.DENIED:
            self._raise_access_denied()
        elif result == ac.PermissionResult.PERMITTED:
            permitted = True
    if not permitted:
        self._raise_access_denied()


ac.S3IAMRequest.check_action_permitted = check_action_permitted


def _check_conditions(self, incoming):
    conditions = self._statement.get("Condition")
    if not conditions:
        return True
    incoming = {k.lower(): v for k, v in (incoming or {}).items()}
    for op, pairs in conditions.items():
        for key, expected in pairs.items():
            expected = [str(e) for e in (expected if isinstance(expected, list) else [expected])]
            actual = incoming.get(key.lower())
            if op == "Null":
                holds = str(actual is None).lower() in [e.lower() for e in expected]
            elif op == "Bool":
                holds = actual is not None and actual.lower() in [e.lower() for e in expected]
            elif op == "StringEquals":
                holds = actual is not None and actual in expected
            elif op == "StringLike":
                holds = actual is not None and any(fnmatch.fnmatchcase(actual, e) for e in expected)
            else:
                raise NotImplementedError(f"IAM condition operator {op} is not simulated")
            if not holds:
                return False
    return True


def is_action_permitted(self, action, resource="*", principal=None, incoming=None):
    if "NotAction" in self._statement:
        concerned = not self._check_element_matches("NotAction", action)
    else:
        concerned = self._check_element_matches("Action", action)
    if not concerned or self.is_unknown_principal(self._statement.get("Principal")):
        return ac.PermissionResult.NEUTRAL
    if principal and not self._check_principal(principal):
        return ac.PermissionResult.DENIED
    if not self._check_conditions(incoming):
        return ac.PermissionResult.NEUTRAL
    if self._statement.get("Resource") and not self._check_element_matches("Resource", resource):
        return ac.PermissionResult.NEUTRAL
    if self._statement["Effect"] == "Allow":
        return ac.PermissionResult.PERMITTED
    return ac.PermissionResult.DENIED


ac.IAMPolicyStatement._check_conditions = _check_conditions
ac.IAMPolicyStatement.is_action_permitted = is_action_permitted


# 3. The canonical query string of a signature is escaped.
_original_create_aws_request = ac.IAMRequestBase._create_aws_request


def _create_aws_request(self):
    req = _original_create_aws_request(self)
    base, _, query = req.url.partition("?")
    if query:
        pairs = []
        for pair in query.split("&"):
            k, eq, v = pair.partition("=")
            pairs.append(quote(unquote(k), safe="-_.~") + eq + quote(unquote(v), safe="-_.~"))
        req.url = base + "?" + "&".join(pairs)
    return req


ac.IAMRequestBase._create_aws_request = _create_aws_request


# 4. Root elements of responses.
def _renamed_root(original, wrong, right):
    def wrapped(self, *args, **kwargs):
        resp = original(self, *args, **kwargs)
        if isinstance(resp, tuple) and len(resp) == 3 and isinstance(resp[2], (str, bytes)):
            body = resp[2]
            if isinstance(body, bytes):
                body = body.replace(wrong.encode(), right.encode())
            else:
                body = body.replace(wrong, right)
            return (resp[0], resp[1], body)
        return resp

    return wrapped


r.S3Response.get_bucket_versioning = _renamed_root(
    r.S3Response.get_bucket_versioning, "GetBucketVersioningResponse", "VersioningConfiguration"
)
r.S3Response._key_response_post = _renamed_root(
    r.S3Response._key_response_post, "CompleteMultipartUploadResponse", "CompleteMultipartUploadResult"
)


# 5. Object Lock retention cannot be shortened.
def _parse(t):
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))


_original_put_object_retention = r.S3Response.put_object_retention


def put_object_retention(self):
    key_name = self.parse_key_name()
    key = self.backend.get_object(self.bucket_name, key_name, version_id=self._get_param("versionId"))
    mode, until = self._mode_until_from_body()
    now = datetime.datetime.now(datetime.timezone.utc)
    if key is not None and key.lock_mode and key.lock_until and _parse(key.lock_until) > now:
        shorter = until is None or _parse(until) < _parse(key.lock_until)
        weaker = key.lock_mode == "COMPLIANCE" and mode != "COMPLIANCE"
        if shorter or weaker:
            if key.lock_mode == "COMPLIANCE":
                raise AccessDeniedByLock()
            if self.headers.get("x-amz-bypass-governance-retention", "").lower() != "true":
                raise AccessDeniedByLock()
            self.data["Action"] = "BypassGovernanceRetention"
            self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name, key_name=key_name)
    return _original_put_object_retention(self)


r.S3Response.put_object_retention = put_object_retention

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
