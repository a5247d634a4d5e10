//! How to reach an S3 bucket: the settings `repository:` gives for `type: s3`, where the
//! credentials come from (the places an SRE expects, in the order the AWS tools use), and
//! the object_store client built from them. Secrets never reach a message: [`S3Options`]'s
//! `Debug` leaves them out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::{ClientOptions, RetryConfig};

/// The settings of an S3 repository.
#[derive(Clone, Default)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` ("" = the bucket's root).
    pub prefix: String,
    pub region: Option<String>,
    /// An S3-compatible server's URL (`https://host:port`); `http://` only when given here.
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    /// The shared credentials/config files' profile (else AWS_PROFILE, else `default`).
    pub profile: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// An extra trusted CA bundle (PEM) for a private endpoint.
    pub ca_file: Option<PathBuf>,
    /// Multipart part size in bytes.
    pub part_size: u64,
    /// One request's timeout.
    pub request_timeout: Duration,
    /// Total time one operation may spend retrying.
    pub retry_timeout: Duration,
    /// Where a small index of the WAL archive's listing is kept between runs (the agent's
    /// state directory); None = in memory only.
    pub cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("profile", &self.profile)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "(set)"),
            )
            .field("ca_file", &self.ca_file)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// The smallest part S3 accepts (all parts but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The default part size: 8 MiB, so a backup holds a few parts in memory whatever its size.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;

impl S3Options {
    /// The repository's URL, for messages and as its identity: `s3://BUCKET/PREFIX`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// What is wrong with these settings, if anything (checked before any request).
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket.is_empty() {
            return Err("repository.bucket is required for type s3".into());
        }
        if self.bucket.contains('/') {
            return Err(format!(
                "repository.bucket `{}` contains `/`: give the bucket's name only and put the path in repository.prefix",
                self.bucket
            ));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(
                "set both repository.access_key_id and repository.secret_access_key, or neither (then the environment, the shared credentials file, web identity or instance metadata are used)".into(),
            );
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("https://") || e.starts_with("http://"))
        {
            return Err(format!(
                "repository.endpoint `{e}` must start with https:// (or http:// for a test server)"
            ));
        }
        if self.part_size < MIN_PART_SIZE || self.part_size > 5 << 30 {
            return Err(format!(
                "repository.part_size {} is outside what S3 accepts (5 MiB to 5 GiB)",
                self.part_size
            ));
        }
        Ok(())
    }

    /// The object_store client for these settings.
    pub fn build(&self) -> Result<Arc<AmazonS3>, String> {
        self.validate()?;
        // The HTTP client's TLS uses the same provider as every other connection dbagent
        // makes (installing it again is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_virtual_hosted_style_request(!self.force_path_style)
            .with_retry(RetryConfig {
                backoff: Default::default(),
                max_retries: 12,
                retry_timeout: self.retry_timeout,
            });
        let profile = self.profile.clone().or_else(|| env("AWS_PROFILE"));
        let shared = SharedFiles::read(profile.as_deref().unwrap_or("default"))?;
        let region = self
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or(shared.region.clone())
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(region);
        // Credentials: the config's, else (for an explicitly chosen profile) the profile's,
        // else the environment's, else the default profile's; else object_store's chain
        // (web identity, container credentials, instance metadata).
        let from_profile = |b: AmazonS3Builder| match &shared.credentials {
            Some((key, secret, token)) => {
                let b = b.with_access_key_id(key).with_secret_access_key(secret);
                match token {
                    Some(t) => b.with_token(t),
                    None => b,
                }
            }
            None => b,
        };
        if let (Some(key), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            b = b.with_access_key_id(key).with_secret_access_key(secret);
            if let Some(t) = &self.session_token {
                b = b.with_token(t);
            }
        } else if (self.profile.is_some() && shared.credentials.is_some())
            || env("AWS_ACCESS_KEY_ID").is_none()
        {
            b = from_profile(b);
        }
        let mut client = ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(Duration::from_secs(10).min(self.request_timeout));
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint.trim_end_matches('/'));
            client = client.with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(ca) = &self.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read repository.ca_file {}: {e}", ca.display()))?;
            let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "repository.ca_file {} holds no PEM certificate: {e}",
                    ca.display()
                )
            })?;
            if certs.is_empty() {
                return Err(format!(
                    "repository.ca_file {} holds no PEM certificate",
                    ca.display()
                ));
            }
            for c in certs {
                client = client.with_root_certificate(c);
            }
        }
        b = b.with_client_options(client);
        b.build().map(Arc::new).map_err(|e| {
            format!(
                "cannot set up the S3 client for {}: {}",
                self.url(),
                super::errors::describe(&e)
            )
        })
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// What the shared files (`~/.aws/credentials`, `~/.aws/config`) say for one profile.
#[derive(Default)]
struct SharedFiles {
    credentials: Option<(String, String, Option<String>)>,
    region: Option<String>,
}

impl SharedFiles {
    fn read(profile: &str) -> Result<SharedFiles, String> {
        let home = env("HOME").map(PathBuf::from);
        let creds_path = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
        let config_path = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
        let mut out = SharedFiles::default();
        let creds = creds_path
            .as_deref()
            .map(|p| read_ini(p, profile, false))
            .transpose()?
            .flatten();
        let config = config_path
            .as_deref()
            .map(|p| read_ini(p, profile, true))
            .transpose()?
            .flatten();
        for section in [creds.as_ref(), config.as_ref()].into_iter().flatten() {
            if out.credentials.is_none()
                && let (Some(k), Some(s)) = (
                    section.get("aws_access_key_id"),
                    section.get("aws_secret_access_key"),
                )
            {
                out.credentials = Some((
                    k.clone(),
                    s.clone(),
                    section.get("aws_session_token").cloned(),
                ));
            }
            if out.region.is_none() {
                out.region = section.get("region").cloned();
            }
        }
        Ok(out)
    }
}

/// The keys of section `profile` of an AWS ini file (`[profile NAME]` in the config file).
/// A missing file is no section; an unreadable one is an error naming it.
fn read_ini(
    path: &Path,
    profile: &str,
    config_file: bool,
) -> Result<Option<std::collections::HashMap<String, String>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Ok(parse_ini(&text, profile, config_file))
}

fn parse_ini(
    text: &str,
    profile: &str,
    config_file: bool,
) -> Option<std::collections::HashMap<String, String>> {
    let wanted = |name: &str| {
        let name = name.trim();
        if config_file && profile != "default" {
            name.strip_prefix("profile").map(str::trim) == Some(profile)
        } else {
            name == profile
        }
    };
    let mut found = None;
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = wanted(name);
            if in_section {
                found.get_or_insert_with(std::collections::HashMap::new);
            }
            continue;
        }
        if in_section
            && let Some((k, v)) = line.split_once('=')
            && let Some(map) = found.as_mut()
        {
            map.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_both_file_styles() {
        let creds = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[backup]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        let d = parse_ini(creds, "default", false).unwrap();
        assert_eq!(d["aws_access_key_id"], "A");
        let b = parse_ini(creds, "backup", false).unwrap();
        assert_eq!(b["aws_session_token"], "T");
        assert!(parse_ini(creds, "other", false).is_none());
        let config = "[default]\nregion = eu-west-1\n[profile backup]\nregion = eu-north-1\n";
        assert_eq!(
            parse_ini(config, "backup", true).unwrap()["region"],
            "eu-north-1"
        );
        assert_eq!(
            parse_ini(config, "default", true).unwrap()["region"],
            "eu-west-1"
        );
    }

    #[test]
    fn settings_are_checked_before_any_request() {
        let ok = S3Options {
            bucket: "b".into(),
            part_size: DEFAULT_PART_SIZE,
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let e = S3Options {
            bucket: "b/x".into(),
            ..ok.clone()
        };
        assert!(e.validate().unwrap_err().contains("repository.prefix"));
        let e = S3Options {
            access_key_id: Some("k".into()),
            ..ok.clone()
        };
        assert!(e.validate().unwrap_err().contains("both"));
        let e = S3Options {
            endpoint: Some("minio:9000".into()),
            ..ok.clone()
        };
        assert!(e.validate().unwrap_err().contains("https://"));
        let debug = format!(
            "{:?}",
            S3Options {
                access_key_id: Some("AKIASECRET".into()),
                secret_access_key: Some("topsecret".into()),
                ..ok
            }
        );
        assert!(
            !debug.contains("AKIASECRET") && !debug.contains("topsecret"),
            "{debug}"
        );
    }
}
