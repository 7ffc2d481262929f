//! Which failures are worth retrying: the AWS error codes and the Yandex Cloud gRPC status
//! codes, mapped explicitly to [`ProviderError::Retryable`] (throttling, 5xx, capacity,
//! network) or [`ProviderError::Permanent`] (permission, invalid parameter, quota).

use gosling_fleet::ProviderError;

/// EC2 spot request failures after which the same request is sent again on-demand (the
/// capacity codes GitHub's AWS runners fail over on).
pub const SPOT_FALLBACK_CODES: &[&str] = &[
    "UnfulfillableCapacity",
    "MaxSpotInstanceCountExceeded",
    "TargetCapacityLimitExceededException",
    "RequestLimitExceeded",
    "ResourceLimitExceeded",
    "MaxSpotFleetRequestCountExceeded",
    "InsufficientInstanceCapacity",
    "InsufficientCapacityOnHost",
];

/// AWS error codes that may succeed later: throttling, capacity, service trouble.
pub const AWS_RETRYABLE_CODES: &[&str] = &[
    // Throttling.
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    // Capacity.
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientCapacityOnHost",
    "InsufficientReservedInstanceCapacity",
    "InsufficientAddressCapacity",
    "InsufficientVolumeCapacity",
    "InsufficientFreeAddressesInSubnet",
    "UnfulfillableCapacity",
    "TargetCapacityLimitExceededException",
    "SpotMaxPriceTooLow",
    // Service trouble (5xx).
    "InternalError",
    "InternalFailure",
    "ServerInternal",
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "IdempotentParameterMismatch_Retry",
];

/// AWS error codes that will fail again as asked: permissions, bad parameters, quotas.
pub const AWS_PERMANENT_CODES: &[&str] = &[
    // Permission and credentials.
    "UnauthorizedOperation",
    "AuthFailure",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "OptInRequired",
    "Blocked",
    "BlockedException",
    // Invalid parameters.
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "InvalidParameterException",
    "MissingParameter",
    "ValidationError",
    "InvalidAMIID.NotFound",
    "InvalidAMIID.Malformed",
    "InvalidSubnetID.NotFound",
    "InvalidSubnetID.Malformed",
    "InvalidGroup.NotFound",
    "InvalidGroupId.Malformed",
    "InvalidInstanceType",
    "InvalidIAMInstanceProfile.NotFound",
    "Unsupported",
    "UnsupportedOperation",
    "UnsupportedFeatureException",
    "IdempotentParameterMismatch",
    "ClientException",
    "ClusterNotFoundException",
    "PlatformUnknownException",
    "PlatformTaskDefinitionIncompatibilityException",
    // Quotas.
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "MaxSpotFleetRequestCountExceeded",
    "LimitExceededException",
    "ResourceLimitExceeded",
    "VolumeLimitExceeded",
];

/// The verdict on an AWS failure.
pub fn aws_is_retryable(code: Option<&str>, http_status: Option<u16>) -> bool {
    match code {
        Some(c) if AWS_RETRYABLE_CODES.contains(&c) => true,
        Some(c) if AWS_PERMANENT_CODES.contains(&c) => false,
        Some(c) if c.starts_with("Invalid") => false,
        _ => matches!(http_status, Some(429) | Some(500..=599) | None),
    }
}

/// An AWS SDK error as a [`ProviderError`]: network failures and timeouts are retryable,
/// service errors are judged by their code ([`aws_is_retryable`]).
pub fn aws_error<E>(
    provider: &str,
    what: &str,
    err: &aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> ProviderError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_ec2::error::SdkError;
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code();
            let status = Some(service.raw().status().as_u16());
            let message = format!(
                "{what}: {} ({})",
                e.message().unwrap_or("no message"),
                code.unwrap_or("no error code")
            );
            if aws_is_retryable(code, status) {
                ProviderError::retryable(provider, message)
            } else {
                ProviderError::permanent(provider, message)
            }
        }
        SdkError::ConstructionFailure(_) => ProviderError::permanent(
            provider,
            format!("{what}: the request could not be built: {}", describe(err)),
        ),
        _ => ProviderError::retryable(provider, format!("{what}: {}", describe(err))),
    }
}

/// The AWS error code of an SDK error, if the service answered with one.
pub fn aws_code<E>(
    err: &aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> Option<String>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata,
{
    use aws_sdk_ec2::error::SdkError;
    match err {
        SdkError::ServiceError(s) => {
            aws_sdk_ec2::error::ProvideErrorMetadata::code(s.err()).map(str::to_string)
        }
        _ => None,
    }
}

/// An error and its sources on one line.
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        source = e.source();
    }
    s
}

/// gRPC status codes, as Yandex Cloud's REST API and operations report them.
pub mod grpc {
    /// The request was cancelled.
    pub const CANCELLED: i64 = 1;
    /// Unknown error.
    pub const UNKNOWN: i64 = 2;
    /// A parameter is invalid.
    pub const INVALID_ARGUMENT: i64 = 3;
    /// Deadline passed.
    pub const DEADLINE_EXCEEDED: i64 = 4;
    /// No such resource.
    pub const NOT_FOUND: i64 = 5;
    /// The resource exists already.
    pub const ALREADY_EXISTS: i64 = 6;
    /// Not allowed.
    pub const PERMISSION_DENIED: i64 = 7;
    /// Quota or rate limit.
    pub const RESOURCE_EXHAUSTED: i64 = 8;
    /// The system is not in a state for this.
    pub const FAILED_PRECONDITION: i64 = 9;
    /// Concurrency conflict.
    pub const ABORTED: i64 = 10;
    /// Out of range.
    pub const OUT_OF_RANGE: i64 = 11;
    /// Not implemented.
    pub const UNIMPLEMENTED: i64 = 12;
    /// Internal error.
    pub const INTERNAL: i64 = 13;
    /// Unavailable (also: no capacity in the zone right now).
    pub const UNAVAILABLE: i64 = 14;
    /// Data loss.
    pub const DATA_LOSS: i64 = 15;
    /// No or bad credentials.
    pub const UNAUTHENTICATED: i64 = 16;
}

/// The verdict on a Yandex Cloud gRPC status: CANCELLED, UNKNOWN, DEADLINE_EXCEEDED,
/// ABORTED, INTERNAL and UNAVAILABLE are retryable; RESOURCE_EXHAUSTED is retryable when it
/// is a rate limit and permanent when it is a quota (its message says "quota");
/// INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, FAILED_PRECONDITION,
/// OUT_OF_RANGE, UNIMPLEMENTED, DATA_LOSS and UNAUTHENTICATED are permanent.
pub fn yandex_is_retryable(code: i64, message: &str) -> bool {
    match code {
        grpc::CANCELLED
        | grpc::UNKNOWN
        | grpc::DEADLINE_EXCEEDED
        | grpc::ABORTED
        | grpc::INTERNAL
        | grpc::UNAVAILABLE => true,
        grpc::RESOURCE_EXHAUSTED => !message.to_ascii_lowercase().contains("quota"),
        _ => false,
    }
}

/// The gRPC code an HTTP status stands for, when the body says nothing.
pub fn grpc_code_of_http(status: u16) -> i64 {
    match status {
        400 => grpc::INVALID_ARGUMENT,
        401 => grpc::UNAUTHENTICATED,
        403 => grpc::PERMISSION_DENIED,
        404 => grpc::NOT_FOUND,
        409 => grpc::ALREADY_EXISTS,
        429 => grpc::RESOURCE_EXHAUSTED,
        499 => grpc::CANCELLED,
        501 => grpc::UNIMPLEMENTED,
        503 => grpc::UNAVAILABLE,
        504 => grpc::DEADLINE_EXCEEDED,
        500..=599 => grpc::INTERNAL,
        _ => grpc::UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_codes_are_classified() {
        assert!(aws_is_retryable(Some("RequestLimitExceeded"), Some(503)));
        assert!(aws_is_retryable(
            Some("InsufficientInstanceCapacity"),
            Some(500)
        ));
        assert!(!aws_is_retryable(Some("UnauthorizedOperation"), Some(403)));
        assert!(!aws_is_retryable(Some("InvalidParameterValue"), Some(400)));
        assert!(!aws_is_retryable(Some("VcpuLimitExceeded"), Some(400)));
        assert!(!aws_is_retryable(
            Some("InvalidKeyPair.NotFound"),
            Some(400)
        ));
        assert!(aws_is_retryable(None, Some(502)));
        assert!(!aws_is_retryable(None, Some(400)));
        for c in SPOT_FALLBACK_CODES {
            // Every fallback code is classified one way or the other, explicitly.
            assert!(
                AWS_RETRYABLE_CODES.contains(c) || AWS_PERMANENT_CODES.contains(c),
                "{c}"
            );
        }
    }

    #[test]
    fn yandex_codes_are_classified() {
        assert!(yandex_is_retryable(grpc::UNAVAILABLE, ""));
        assert!(yandex_is_retryable(grpc::RESOURCE_EXHAUSTED, "rate limit"));
        assert!(!yandex_is_retryable(
            grpc::RESOURCE_EXHAUSTED,
            "Quota limit compute.instanceCores.count exceeded"
        ));
        assert!(!yandex_is_retryable(grpc::PERMISSION_DENIED, ""));
        assert!(!yandex_is_retryable(grpc::INVALID_ARGUMENT, ""));
        assert_eq!(grpc_code_of_http(409), grpc::ALREADY_EXISTS);
    }
}
