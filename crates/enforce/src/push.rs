//! One SET pushed to one receiver over HTTP (RFC 8935): the request, how the answer is
//! classified, and the retry schedule.

use std::time::Duration;

use crate::config::ReceiverConfig;

/// The media type of a SET in an RFC 8935 push request.
pub const SET_CONTENT_TYPE: &str = "application/secevent+jwt";

/// Longest receiver error text kept for logs and dead-letter headers.
const MAX_REASON: usize = 300;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver accepted the SET (2xx; RFC 8935 says 202).
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// Worth trying again: no answer, a timeout, 408, 429 or 5xx.
    Retry {
        /// Why, for logs and the dead-letter record.
        reason: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// The receiver's `Retry-After`, when it sent one in seconds.
        after: Option<Duration>,
    },
    /// The receiver refused this SET (other 4xx, e.g. RFC 8935 `invalid_request`,
    /// `invalid_key`, `authentication_failed`); sending it again cannot help.
    Refused {
        /// Why, with the receiver's `err` and `description` when it sent them.
        reason: String,
        /// The HTTP status.
        status: u16,
    },
}

/// Classifies an HTTP answer. `body` is the receiver's response text (RFC 8935 §2.3 error
/// JSON, or anything).
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Attempt {
    if (200..300).contains(&status) {
        return Attempt::Delivered { status };
    }
    let detail = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v["err"].is_string() => format!(
            "{}{}{}",
            v["err"].as_str().unwrap_or_default(),
            if v["description"].is_string() {
                ": "
            } else {
                ""
            },
            v["description"].as_str().unwrap_or_default()
        ),
        _ => body.trim().to_owned(),
    };
    let mut reason = format!("HTTP {status}");
    if !detail.is_empty() {
        reason.push(' ');
        reason.push_str(&detail);
    }
    truncate(&mut reason);
    if matches!(status, 408 | 425 | 429) || status >= 500 {
        Attempt::Retry {
            reason,
            status: Some(status),
            after: retry_after,
        }
    } else {
        Attempt::Refused { reason, status }
    }
}

fn truncate(s: &mut String) {
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

/// Delay before attempt `next` (2, 3, ...): `initial` doubled per attempt, at most `max`; a
/// receiver's `Retry-After` wins when longer, still capped at `max`.
pub fn backoff(next: u32, initial: Duration, max: Duration, after: Option<Duration>) -> Duration {
    let exp = next.saturating_sub(2).min(20);
    let d = initial.saturating_mul(1u32 << exp).min(max);
    after.map_or(d, |a| a.min(max).max(d))
}

/// An HTTP client for one receiver.
#[derive(Clone)]
pub struct Pusher {
    agent: ureq::Agent,
    url: String,
    auth: Option<String>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("url", &self.url)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Pusher {
    /// A client for `receiver`, its `Authorization` value already read.
    pub fn new(receiver: &ReceiverConfig, auth: Option<String>, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("vigil-enforce/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::NativeTls)
                    .build(),
            )
            .build()
            .into();
        Self {
            agent,
            url: receiver.url.clone(),
            auth,
        }
    }

    /// POSTs one signed SET and classifies the answer. Blocking: call it off the async
    /// runtime's worker threads.
    pub fn post(&self, jws: &str) -> Attempt {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", SET_CONTENT_TYPE)
            .header("Accept", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        match req.send(jws.as_bytes()) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = resp
                    .into_body()
                    .with_config()
                    .limit(16 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                classify(status, &body, after)
            }
            Err(e) => {
                let mut reason = format!("no answer: {e}");
                truncate(&mut reason);
                Attempt::Retry {
                    reason,
                    status: None,
                    after: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_rfc_8935_reads_them() {
        assert_eq!(classify(202, "", None), Attempt::Delivered { status: 202 });
        assert_eq!(
            classify(200, "ok", None),
            Attempt::Delivered { status: 200 }
        );
        assert_eq!(
            classify(
                400,
                r#"{"err":"invalid_key","description":"Key ID is not valid"}"#,
                None
            ),
            Attempt::Refused {
                reason: "HTTP 400 invalid_key: Key ID is not valid".into(),
                status: 400
            }
        );
        assert!(matches!(
            classify(401, "", None),
            Attempt::Refused { status: 401, .. }
        ));
        let after = Some(Duration::from_secs(3));
        assert_eq!(
            classify(429, "slow down", after),
            Attempt::Retry {
                reason: "HTTP 429 slow down".into(),
                status: Some(429),
                after
            }
        );
        assert!(matches!(
            classify(503, "", None),
            Attempt::Retry {
                status: Some(503),
                ..
            }
        ));
        let Attempt::Refused { reason, .. } = classify(400, &"x".repeat(5000), None) else {
            panic!("400 is a refusal");
        };
        assert!(
            reason.len() <= MAX_REASON + '…'.len_utf8(),
            "{}",
            reason.len()
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        let seq: Vec<u128> = (2..8).map(|n| backoff(n, i, m, None).as_millis()).collect();
        assert_eq!(seq, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            backoff(2, i, m, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(backoff(2, i, m, Some(Duration::from_secs(60))), m);
        assert_eq!(backoff(u32::MAX, i, m, None), m);
    }
}
