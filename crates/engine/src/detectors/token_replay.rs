//! Token replay: a token used where it was never issued.
//!
//! **Attack.** An access token or session token copied from a browser, a log, a ticket or a
//! code repository and presented by someone else: from another session, another device,
//! another client, or after its session ended.
//!
//! **Signal.** Tokens are bound, by keyed hash, to the session, device and client that first
//! used them. A later use that breaks the binding is a replay. A session that keeps being used
//! after logout or revocation is a replayed session cookie.
//!
//! **Thresholds and why.** No statistics: each of these is a broken invariant, so confidence
//! is 95 (another session, after end), 90 (another device) or 85 (another client family). A
//! grace of 30 seconds after logout covers log reordering at the IdP.
//!
//! **Benign cases it must not flag.** The same token reused by its own session, device and
//! client; a token seen with no device or user agent on one side (nothing to compare).

use serde::Deserialize;
use vigil_model::{Anomaly, EventKind, Finding};

use super::Ctx;
use crate::config::{ConfigError, HumanDuration, check_range};

/// Detector name.
pub const NAME: &str = "token_replay";

/// Settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether the detector runs.
    pub enabled: bool,
    /// How long after a logout or revocation late events are still accepted as in flight.
    pub after_end_grace: HumanDuration,
    /// Confidence for a token in another session or after its session ended.
    pub confidence: u8,
    /// Confidence for a token from another device.
    pub device_confidence: u8,
    /// Confidence for a token from another client family.
    pub client_confidence: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            after_end_grace: HumanDuration::secs(30),
            confidence: 95,
            device_confidence: 90,
            client_confidence: 85,
        }
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct TokenReplay {
    cfg: Config,
}

impl TokenReplay {
    /// Validates the settings.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        for (f, v) in [
            ("detectors.token_replay.confidence", cfg.confidence),
            (
                "detectors.token_replay.device_confidence",
                cfg.device_confidence,
            ),
            (
                "detectors.token_replay.client_confidence",
                cfg.client_confidence,
            ),
        ] {
            check_range(f, v, 0, 100, "between 0 and 100")?;
        }
        Ok(Self { cfg: cfg.clone() })
    }

    /// Looks at one event.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        let ev = ctx.ev;
        let grace = self.cfg.after_end_grace.ms();
        // A binding with no session is a token reported exposed before any use; governance
        // handles its use (see crate::governance).
        if let Some(tok) = ev.token
            && let Some(b) = ctx.tokens.get(&tok)
            && !b.session_id.is_empty()
        {
            {
                let hit = if *b.session_id != *ev.session_id {
                    Some((
                        self.cfg.confidence,
                        "Token presented in another session",
                        format!("bound to session {}", b.session_id),
                        format!("session {}", ev.session_id),
                    ))
                } else if b.ended_at.get().is_some_and(|e| ev.time_ms > e + grace)
                    && is_use(ev.kind)
                {
                    Some((
                        self.cfg.confidence,
                        "Token used after its session ended",
                        "session ended".into(),
                        "token used".into(),
                    ))
                } else if b.device != 0 && ctx.obs.device.is_some_and(|d| d != b.device) {
                    Some((
                        self.cfg.device_confidence,
                        "Token presented from another device",
                        "first device".into(),
                        ev.device_id.clone().unwrap_or_default(),
                    ))
                } else if let (Some(a), Some(c)) = (b.ua, ctx.obs.ua)
                    && a.family != c.family
                {
                    Some((
                        self.cfg.client_confidence,
                        "Token presented by another client",
                        crate::ua::family_name(a.family).into(),
                        crate::ua::family_name(c.family).into(),
                    ))
                } else {
                    None
                };
                if let Some((confidence, title, baseline, observed)) = hit {
                    out.push(ctx.finding(
                        NAME,
                        confidence,
                        title.into(),
                        format!(
                            "{title}: token {} (keyed hash) first seen in session {}, now in session {}.",
                            tok, b.session_id, ev.session_id
                        ),
                        vec![Anomaly { parameter: "token_binding", baseline, observed }],
                    ));
                    return;
                }
            }
        }
        if let Some(s) = ctx.session
            && let Some(ended) = s.ended_at()
            && is_use(ev.kind)
            && ev.time_ms > ended + grace
        {
            out.push(ctx.finding(
                NAME,
                self.cfg.confidence,
                "Session used after it ended".into(),
                format!(
                    "Session {} ended {:.0} s before this {} event{}.",
                    ev.session_id,
                    (ev.time_ms - ended) as f64 / 1000.0,
                    ev.kind.as_str(),
                    if s.revoked {
                        " (Vigil had revoked it)"
                    } else {
                        ""
                    }
                ),
                vec![Anomaly {
                    parameter: "session_state",
                    baseline: "ended".into(),
                    observed: ev.kind.as_str().into(),
                }],
            ));
        }
    }
}

/// Whether an event kind is a use of the session (as opposed to its end or a new start).
fn is_use(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access | EventKind::TokenIssued | EventKind::TokenRefreshed | EventKind::Mfa
    )
}
