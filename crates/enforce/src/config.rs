//! The `[enforce]` table of the configuration file.

use std::time::Duration;

use serde::Deserialize;
use vigil_kafka::config::{SecretSource, duration};

/// Settings of `vigil enforce`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforceConfig {
    /// Consumer group of the enforcement instances (not Vigil's detection group).
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Where a SET goes when a receiver refuses it or stays unreachable for `max_attempts`.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Attempts per SET and receiver before it is dead-lettered (at least 1).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt up to `backoff_max`.
    #[serde(default = "default_backoff_initial", with = "duration")]
    pub backoff_initial: Duration,
    /// Longest retry delay, also the cap on a receiver's `Retry-After`.
    #[serde(default = "default_backoff_max", with = "duration")]
    pub backoff_max: Duration,
    /// Time limit of one HTTP request, connection included.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// SETs queued per receiver before the consumer waits.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// How often delivered offsets are committed.
    #[serde(default = "default_commit_interval", with = "duration")]
    pub commit_interval: Duration,
    /// On SIGINT/SIGTERM, how long to wait for queued SETs to be delivered. What is still
    /// queued then is not committed, so the next start delivers it.
    #[serde(default = "default_drain_timeout", with = "duration")]
    pub drain_timeout: Duration,
    /// Where SETs are pushed. Each receiver gets every SET, in consumption order.
    pub receivers: Vec<ReceiverConfig>,
}

/// One SET receiver (RFC 8935 push endpoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Name in logs, metrics and dead-letter headers.
    pub name: String,
    /// Push endpoint, e.g. Okta's `https://ORG.okta.com/security/api/v1/security-events`.
    pub url: String,
    /// Value of the `Authorization` header (`Bearer ...`, `SSWS ...`), from the environment
    /// or a file, never inline: `auth_header = { env = "VIGIL_OKTA_SSF_AUTH" }`.
    #[serde(default)]
    pub auth_header: Option<SecretSource>,
}

fn default_group() -> String {
    "vigil-enforce".into()
}
fn default_dead_letter_topic() -> String {
    "vigil.revocations.undelivered".into()
}
fn default_max_attempts() -> u32 {
    8
}
fn default_backoff_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_queue() -> usize {
    1024
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Why the `[enforce]` table cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is out of range or inconsistent.
    #[error("enforce.{field}: {reason}")]
    Invalid {
        /// The setting.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl EnforceConfig {
    /// Checks what serde cannot: at least one receiver, usable URLs, unique names, sane limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: field.into(),
            reason,
        };
        if self.receivers.is_empty() {
            return Err(invalid(
                "receivers",
                "no receiver configured; add an [[enforce.receivers]] table".into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1".into()));
        }
        if self.queue == 0 {
            return Err(invalid("queue", "must be at least 1".into()));
        }
        if self.backoff_initial > self.backoff_max {
            return Err(invalid(
                "backoff_initial",
                "is longer than backoff_max".into(),
            ));
        }
        for (i, r) in self.receivers.iter().enumerate() {
            let field = format!("receivers[{i}]");
            if r.name.is_empty() {
                return Err(invalid(&format!("{field}.name"), "is empty".into()));
            }
            if self.receivers[..i].iter().any(|o| o.name == r.name) {
                return Err(invalid(
                    &format!("{field}.name"),
                    format!("{:?} is used twice", r.name),
                ));
            }
            let scheme_ok = r.url.starts_with("https://") || r.url.starts_with("http://");
            if !scheme_ok || r.url.len() <= "https://".len() {
                return Err(invalid(
                    &format!("{field}.url"),
                    format!("{:?} is not an http(s) URL", r.url),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> EnforceConfig {
        toml::from_str(s).expect("parses")
    }

    #[test]
    fn defaults_and_validation() {
        let ok = parse(
            r#"receivers = [{ name = "okta", url = "https://example.okta.com/security/api/v1/security-events", auth_header = { env = "X" } }]"#,
        );
        assert_eq!(ok.max_attempts, 8);
        assert_eq!(ok.group_id, "vigil-enforce");
        ok.validate().expect("valid");
        let err = parse("receivers = []")
            .validate()
            .expect_err("no receivers");
        assert!(err.to_string().contains("no receiver configured"), "{err}");
        let err = parse(r#"receivers = [{ name = "a", url = "ftp://x" }]"#)
            .validate()
            .expect_err("bad scheme");
        assert!(err.to_string().contains("not an http(s) URL"), "{err}");
        let err = parse(
            r#"receivers = [{ name = "a", url = "http://x/1" }, { name = "a", url = "http://x/2" }]"#,
        )
        .validate()
        .expect_err("duplicate name");
        assert!(err.to_string().contains("used twice"), "{err}");
        assert!(
            toml::from_str::<EnforceConfig>(
                r#"receivers = [{ name = "a", url = "http://x", auth = "inline" }]"#
            )
            .is_err(),
            "an inline secret field is refused"
        );
    }
}
