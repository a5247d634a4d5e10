//! What object_store's errors mean for the repository: a short description with what to do,
//! the I/O error kind, and whether the object or the bucket is missing.

/// Says what an object_store error means, without its noise: the message and, for an
/// HTTP status, what to do about it.
pub fn describe(e: &object_store::Error) -> String {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => "not found (no such object, or no such bucket)".into(),
        E::PermissionDenied { .. } => format!(
            "permission denied by the server: {e}; check the policy of the credentials (see \"IAM policy\" in docs/repository.md)"
        ),
        E::Unauthenticated { .. } => format!(
            "the server rejected the credentials: {e}; check repository.access_key_id/secret_access_key, AWS_* variables or the profile"
        ),
        _ => e.to_string(),
    }
}

pub fn io_kind(e: &object_store::Error) -> std::io::ErrorKind {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => std::io::ErrorKind::NotFound,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            std::io::ErrorKind::PermissionDenied
        }
        E::AlreadyExists { .. } | E::Precondition { .. } => std::io::ErrorKind::AlreadyExists,
        _ => std::io::ErrorKind::Other,
    }
}

/// Whether an error is the server saying the object is not there.
pub fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

/// Whether an error says the bucket does not exist (a listing reports it as a generic
/// error with the S3 error code in its text).
pub fn is_no_such_bucket(e: &object_store::Error) -> bool {
    is_not_found(e) || e.to_string().contains("NoSuchBucket")
}
