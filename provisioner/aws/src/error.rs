//! [`AwsError`]: an EC2 call that failed, with the AWS error code and what the user can do about it.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// An EC2 call (or a wait on EC2) that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} {target}: {}{message}{}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(), hint.map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct AwsError {
    /// The API call or wait, e.g. `RunInstances`.
    pub op: &'static str,
    /// What it was about: a pool, a node, a resource id, the cluster.
    pub target: String,
    /// AWS's error code (`RequestLimitExceeded`, `InvalidAMIID.NotFound`, ...), when AWS answered.
    pub code: Option<String>,
    /// AWS's message, or what went wrong on the way.
    pub message: String,
    /// What to do about it, for the codes dcform knows.
    pub hint: Option<&'static str>,
    /// Worth retrying later (throttling that outlasted the SDK's retries, a dropped connection, a
    /// resource still in use while EC2 releases it).
    pub transient: bool,
}

impl AwsError {
    /// An error of dcform's own making around a call (a missing field in an answer, a wait that timed out).
    pub fn other(op: &'static str, target: impl Into<String>, message: impl Into<String>) -> Self {
        AwsError {
            op,
            target: target.into(),
            code: None,
            message: message.into(),
            hint: None,
            transient: false,
        }
    }

    /// The error of a failed SDK call, classified by its AWS error code.
    pub fn from_sdk<E, R>(op: &'static str, target: impl Into<String>, e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let code = e.code().map(str::to_string);
        let message = match e.message() {
            Some(m) => m.to_string(),
            // No service answer (timeout, refused connection, credentials not found): the
            // context chain says which.
            None => DisplayErrorContext(&e).to_string(),
        };
        let transient = match &e {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
            SdkError::ResponseError(_) => true,
            _ => code.as_deref().is_some_and(is_transient_code),
        };
        let hint = code.as_deref().and_then(hint_for);
        AwsError {
            op,
            target: target.into(),
            code,
            message,
            hint,
            transient,
        }
    }

    /// Whether AWS answered with `code`.
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Whether AWS said the thing is not there (any `*.NotFound` code).
    pub fn is_not_found(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.ends_with(".NotFound"))
    }
}

/// Codes that go away by themselves: throttling (after the SDK's own retries ran out), capacity
/// still being released, a dependency EC2 has not let go of yet.
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "ServiceUnavailable"
            | "Unavailable"
            | "InternalError"
            | "DependencyViolation"
            | "IncorrectState"
    )
}

/// What to do, for the codes users meet.
fn hint_for(code: &str) -> Option<&'static str> {
    Some(match code {
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => {
            "EC2 is throttling this account's API calls; dcform retried with backoff. Run `dcform apply` again in a minute (it continues where it stopped), or lower --parallelism"
        }
        "InstanceLimitExceeded" | "VcpuLimitExceeded" | "MaxSpotInstanceCountExceeded" => {
            "the account's instance or vCPU quota in this region is used up: lower the pool counts, pick a smaller instance_type, or request a higher quota in the Service Quotas console"
        }
        "InsufficientInstanceCapacity" | "InsufficientCapacity" => {
            "AWS has no capacity for this instance type in that zone right now: try again later, choose another instance_type, or list other availability_zones"
        }
        "Unsupported" => {
            "this instance type is not offered in that zone: choose another instance_type or other availability_zones"
        }
        "AuthFailure"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "RequestExpired" => {
            "check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, `aws sso login`), their permissions for EC2, and the machine's clock"
        }
        "OptInRequired" => {
            "the account is not subscribed to this service or AMI: accept its terms in the AWS console"
        }
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" | "InvalidAMIID.Unavailable" => {
            "AMI ids differ per region: check `ami` for this region, or set ami_name/ami_owners to look one up"
        }
        "InvalidInstanceType" | "InvalidParameterValue" => {
            "check instance_type and the other pool settings against what EC2 offers in this region"
        }
        "VpcLimitExceeded"
        | "SubnetLimitExceeded"
        | "SecurityGroupLimitExceeded"
        | "InternetGatewayLimitExceeded"
        | "RulesPerSecurityGroupLimitExceeded" => {
            "a per-region network quota is used up: remove unused VPCs or groups, give vpc_id/subnet_ids to reuse a network, or request a higher quota"
        }
        "InvalidKeyPair.Duplicate" => {
            "a key pair of that name exists with another key: delete it or rename the cluster"
        }
        "InvalidSubnetID.NotFound" | "InvalidVpcID.NotFound" => {
            "the network named in the definition (vpc_id / subnet_ids) is not in this region or account"
        }
        "DependencyViolation" => {
            "EC2 still holds a dependency of this resource; `dcform destroy` again finishes the job"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_transient_and_tells_what_to_do() {
        assert!(is_transient_code("RequestLimitExceeded"));
        assert!(hint_for("RequestLimitExceeded").is_some_and(|h| h.contains("apply")));
        assert!(!is_transient_code("InvalidAMIID.NotFound"));
    }

    #[test]
    fn the_message_names_the_call_the_code_and_the_hint() {
        let e = AwsError {
            op: "RunInstances",
            target: "pool agents".into(),
            code: Some("InstanceLimitExceeded".into()),
            message: "Your quota allows for 0 more running instance(s).".into(),
            hint: hint_for("InstanceLimitExceeded"),
            transient: false,
        };
        let s = e.to_string();
        assert!(
            s.starts_with("RunInstances pool agents: InstanceLimitExceeded: Your quota"),
            "{s}"
        );
        assert!(s.contains("Service Quotas"), "{s}");
    }
}
