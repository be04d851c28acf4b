//! The EC2 client: credentials, region and endpoint the AWS way (`aws-config`), HTTPS through rustls
//! with the ring provider, and the SDK's standard retry (exponential backoff with full jitter) for
//! throttling and transient errors.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls;

use crate::AwsError;

/// How to reach EC2. Everything left `None` comes from the environment, profiles, SSO or the
/// instance role, as with the AWS CLI (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_EC2`, ...).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Region, e.g. `us-east-1` (else `AWS_REGION` / the profile's).
    pub region: Option<String>,
    /// Endpoint override for EC2-compatible endpoints such as moto (else `AWS_ENDPOINT_URL_EC2` /
    /// `AWS_ENDPOINT_URL` / the real EC2).
    pub endpoint: Option<String>,
    /// Retries of throttled or failed calls, first attempt included (default 8).
    pub max_attempts: Option<u32>,
    /// First retry delay; each next one doubles, with jitter, up to 20 s (default 500 ms).
    pub initial_backoff: Option<Duration>,
    /// Fixed credentials (access key id, secret) instead of the default chain: for tests against
    /// moto, which accepts any.
    pub static_credentials: Option<(String, String)>,
    /// The state's lineage: resources are tagged `dcform:lineage` with it and looked up by it too,
    /// so two clusters of one name in one account never adopt or delete each other's. `None`: by
    /// cluster name alone (`destroy --cluster` before it knows which lineage, older states).
    pub lineage: Option<String>,
}

/// An EC2 client and the region it talks to.
#[derive(Debug, Clone)]
pub struct Ec2 {
    pub(crate) client: aws_sdk_ec2::Client,
    region: String,
    pub(crate) lineage: Option<String>,
}

impl Ec2 {
    /// Loads credentials and region and builds the client. Makes no call yet: a missing credential
    /// shows on the first call, with the SDK's explanation.
    pub async fn connect(settings: &Settings) -> Result<Ec2, AwsError> {
        // The SDK's default HTTPS client uses aws-lc-rs (a C build with cmake); the workspace's
        // TLS is rustls with ring, so the client is built here with that provider.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let retry = RetryConfig::standard()
            .with_max_attempts(settings.max_attempts.unwrap_or(8))
            .with_initial_backoff(
                settings
                    .initial_backoff
                    .unwrap_or(Duration::from_millis(500)),
            )
            .with_max_backoff(Duration::from_secs(20));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(retry)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(r) = &settings.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some((id, secret)) = &settings.static_credentials {
            loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                id,
                secret,
                None,
                None,
                "dcform-static",
            ));
        }
        if let Some(e) = &settings.endpoint {
            loader = loader.endpoint_url(e.clone());
        }
        let config = loader.load().await;
        let Some(region) = config.region().map(|r| r.to_string()) else {
            return Err(AwsError {
                hint: Some(
                    "set region in the provider \"aws\" block, AWS_REGION, or a profile's region",
                ),
                ..AwsError::other("configure", "EC2 client", "no AWS region is set")
            });
        };
        let client = aws_sdk_ec2::Client::new(&config);
        Ok(Ec2 {
            client,
            region,
            lineage: settings.lineage.clone(),
        })
    }

    /// The region this client talks to.
    pub fn region(&self) -> &str {
        &self.region
    }
}
