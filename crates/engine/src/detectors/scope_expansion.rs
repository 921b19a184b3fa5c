//! OAuth scope expansion within a session.
//!
//! **Attack.** A stolen session used to consent to or request broader access: directory
//! admin, mail read/write, `offline_access` for a long-lived refresh token (illicit consent,
//! token escalation after an AiTM compromise).
//!
//! **Signal.** Scopes granted after the session's baseline (everything granted within
//! `baseline_period` of the first grant) that the baseline lacks, each weighted by
//! sensitivity: admin-like 5, write-like 3, `offline_access` 3, others 1.
//!
//! **Thresholds and why.** The summed weight must reach `min_weight` (5): one admin scope, or a
//! write scope plus `offline_access`, or five ordinary ones. Confidence is 40 + 10 x weight,
//! at most 95. Policy caps this detector at step-up by default, since incremental consent is
//! also how legitimate apps grow: alone it asks the user to prove themselves; together with
//! another finding it can revoke.
//!
//! **Benign cases it must not flag.** The initial burst of grants at sign-in (the baseline
//! period), re-grants of scopes already held, a read-only scope or two.

use serde::Deserialize;
use vigil_model::{Anomaly, Finding};

use super::Ctx;
use crate::config::{ConfigError, HumanDuration, check_range};

/// Detector name.
pub const NAME: &str = "scope_expansion";

/// Settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Grants within this long of the session's first grant form its baseline.
    pub baseline_period: HumanDuration,
    /// Summed sensitivity weight of new scopes that fires.
    pub min_weight: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            baseline_period: HumanDuration::secs(120),
            min_weight: 5,
        }
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct ScopeExpansion {
    cfg: Config,
}

/// Sensitivity weight of one scope.
pub fn weight(scope: &str) -> u32 {
    let s = scope.to_ascii_lowercase();
    if s.contains("admin")
        || s.contains("directory.")
        || s.contains("rolemanagement")
        || s.contains("full_access")
        || s.contains("sudo")
        || s.ends_with(".manage")
        || s.starts_with("okta.users.manage")
    {
        5
    } else if s == "offline_access"
        || s.contains("write")
        || s.contains("readwrite")
        || s.contains("manage")
        || s.contains("delete")
        || s.contains("send")
    {
        3
    } else {
        1
    }
}

impl ScopeExpansion {
    /// Validates the settings.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        check_range(
            "detectors.scope_expansion.min_weight",
            cfg.min_weight,
            1,
            100,
            "between 1 and 100",
        )?;
        Ok(Self { cfg: cfg.clone() })
    }

    /// How long the baseline stays open after the first grant.
    pub fn baseline_period_ms(&self) -> i64 {
        self.cfg.baseline_period.ms()
    }

    /// Looks at one event.
    pub fn observe(&self, ctx: &Ctx<'_>, out: &mut Vec<Finding>) {
        let Some(s) = ctx.session else { return };
        let ev = ctx.ev;
        if ev.scopes.is_empty() || !ev.success {
            return;
        }
        let s = s.rare();
        match s.baseline_until {
            None => return,
            Some(until) if ev.time_ms <= until => return,
            Some(_) => {}
        }
        let new: Vec<&String> = ev
            .scopes
            .iter()
            .filter(|sc| !s.baseline_scopes.iter().any(|b| **b == ***sc))
            .collect();
        let total: u32 = new.iter().map(|s| weight(s)).sum();
        if total < self.cfg.min_weight {
            return;
        }
        let confidence = (40 + 10 * total).min(95) as u8;
        let baseline = s.baseline_scopes.join(" ");
        let observed = new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        out.push(ctx.finding(
            NAME,
            confidence,
            "Session granted sensitive scopes beyond its baseline".into(),
            format!(
                "Session {} was granted {observed} (sensitivity {total}) beyond its baseline [{baseline}].",
                ev.session_id
            ),
            vec![Anomaly { parameter: "scopes", baseline, observed }],
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::weight;

    #[test]
    fn weights() {
        assert_eq!(weight("Directory.ReadWrite.All"), 5);
        assert_eq!(weight("okta.users.manage"), 5);
        assert_eq!(weight("offline_access"), 3);
        assert_eq!(weight("Mail.Send"), 3);
        assert_eq!(weight("openid"), 1);
    }
}
