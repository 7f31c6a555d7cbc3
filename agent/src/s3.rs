//! The agent's S3 client, one builder for every store it keeps in the cluster's bucket (the
//! failover lease and members, the backups). Callers set the region, timeouts and retries on
//! the loader; what every store needs is set here once.

/// Builds the client from `loader`. `endpoint` overrides AWS_ENDPOINT_URL (which the SDK
/// honours by itself).
pub async fn client(
    loader: aws_config::ConfigLoader,
    endpoint: Option<&str>,
) -> aws_sdk_s3::Client {
    let loader = match endpoint {
        Some(url) => loader.endpoint_url(url),
        None => loader,
    };
    let conf = loader.load().await;
    // Path-style on an endpoint override (LocalStack, the node host's forwarder), where
    // virtual-hosted bucket names do not resolve.
    let path_style = endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(path_style)
            // A plain body with a Content-Length, not aws-chunked with a trailing checksum: a
            // writer killed mid-request then leaves no object behind (seen with LocalStack,
            // which stored the partial chunked upload). Integrity is the stores' own (the
            // lease's ETags, the backups' SHA-256 in their manifest).
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build(),
    )
}
