//! Which S3 failures are retried, which mean "not found", and which stop
//! at once: `classify` on SDK error values built directly, as the SDK
//! hands them over (no server needed).

use aws_sdk_s3::error::{ConnectorError, ErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::SdkBody;

use super::{classify, HttpResponse};
use crate::backend::BackendErrorKind::{self, *};

fn response(status: u16) -> HttpResponse {
    HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
}

/// A service error with this HTTP status, S3 error code and message.
fn service(status: u16, code: Option<&str>, message: Option<&str>) -> SdkError<GetObjectError, HttpResponse> {
    let mut meta = ErrorMetadata::builder();
    if let Some(c) = code {
        meta = meta.code(c);
    }
    if let Some(m) = message {
        meta = meta.message(m);
    }
    SdkError::service_error(GetObjectError::generic(meta.build()), response(status))
}

fn kind_of(status: u16, code: Option<&str>) -> BackendErrorKind {
    classify(&service(status, code, None)).kind
}

#[test]
fn a_missing_object_is_not_found_by_status_or_by_code() {
    assert_eq!(kind_of(404, Some("NoSuchKey")), NotFound);
    assert_eq!(kind_of(404, None), NotFound, "HEAD answers a bare 404, without a body or code");
    assert_eq!(kind_of(400, Some("NoSuchKey")), NotFound);
    assert_eq!(kind_of(400, Some("NotFound")), NotFound);
    let head: SdkError<HeadObjectError, HttpResponse> =
        SdkError::service_error(HeadObjectError::generic(ErrorMetadata::builder().build()), response(404));
    assert_eq!(classify(&head).kind, NotFound);
}

#[test]
fn a_missing_bucket_is_permanent_not_a_missing_object() {
    // A 404 too, but no retry and no "not found" that a caller would take
    // for an absent object (a repository that does not exist yet).
    assert_eq!(kind_of(404, Some("NoSuchBucket")), Permanent);
}

#[test]
fn permission_and_request_errors_are_permanent() {
    assert_eq!(kind_of(403, Some("AccessDenied")), Permanent);
    assert_eq!(kind_of(403, Some("SignatureDoesNotMatch")), Permanent);
    assert_eq!(kind_of(403, Some("InvalidAccessKeyId")), Permanent);
    assert_eq!(kind_of(400, Some("InvalidArgument")), Permanent);
    assert_eq!(kind_of(409, Some("BucketAlreadyExists")), Permanent);
    assert_eq!(kind_of(412, Some("PreconditionFailed")), Permanent);
    assert_eq!(kind_of(416, Some("InvalidRange")), Permanent);
    assert_eq!(kind_of(400, None), Permanent);
}

#[test]
fn server_errors_throttling_and_request_timeouts_are_retried() {
    assert_eq!(kind_of(500, Some("InternalError")), Transient);
    assert_eq!(kind_of(502, None), Transient);
    assert_eq!(kind_of(503, Some("SlowDown")), Transient);
    assert_eq!(kind_of(503, Some("ServiceUnavailable")), Transient);
    assert_eq!(kind_of(504, None), Transient);
    assert_eq!(kind_of(429, None), Transient);
    assert_eq!(kind_of(408, None), Transient);
    // By code alone, whatever the status a server chose for it.
    assert_eq!(kind_of(400, Some("RequestTimeout")), Transient);
    assert_eq!(kind_of(400, Some("SlowDown")), Transient);
    assert_eq!(kind_of(200, Some("InternalError")), Transient, "an error in a 200 body (CompleteMultipartUpload)");
}

#[test]
fn a_service_error_message_names_the_status_code_and_message_only() {
    let f = classify(&service(403, Some("AccessDenied"), Some("Access Denied")));
    assert_eq!(f.message, "HTTP 403 (AccessDenied) Access Denied");
    let f = classify(&service(404, None, None));
    assert_eq!(f.message, "HTTP 404 (no error code)");
}

fn boxed(msg: &str) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(std::io::Error::other(msg.to_string()))
}

#[test]
fn transport_failures_are_retried_unless_the_request_itself_is_at_fault() {
    type E = SdkError<GetObjectError, HttpResponse>;
    let kind = |e: E| classify(&e).kind;
    assert_eq!(kind(SdkError::timeout_error(boxed("attempt timeout"))), Transient);
    assert_eq!(kind(SdkError::dispatch_failure(ConnectorError::io(boxed("connection reset")))), Transient);
    assert_eq!(kind(SdkError::dispatch_failure(ConnectorError::timeout(boxed("connect timeout")))), Transient);
    assert_eq!(kind(SdkError::dispatch_failure(ConnectorError::other(boxed("h2 goaway"), None))), Transient);
    assert_eq!(kind(SdkError::dispatch_failure(ConnectorError::user(boxed("bad header value")))), Permanent);
    assert_eq!(kind(SdkError::response_error(boxed("truncated body"), response(200))), Transient);
    assert_eq!(kind(SdkError::construction_failure(boxed("missing bucket name"))), Permanent);
}

#[test]
fn a_refused_connection_is_unreachable_and_reads_without_debug_text() {
    type E = SdkError<GetObjectError, HttpResponse>;
    let refused: Box<dyn std::error::Error + Send + Sync> =
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    let f = classify(&E::dispatch_failure(ConnectorError::io(refused)));
    assert_eq!(f.kind, Transient);
    assert_eq!(f.code.as_deref(), Some(crate::error::CODE_UNREACHABLE));
    assert_eq!(f.message, "connection failed: io error: connection refused");
    // A transport failure that is no connection problem has no such code.
    let f = classify(&E::dispatch_failure(ConnectorError::other(boxed("h2 goaway"), None)));
    assert_eq!(f.code, None);
    assert!(!f.message.contains('{') && !f.message.contains("Some("), "{}", f.message);
}
