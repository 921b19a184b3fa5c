//! Session lifetime governance: how long trust may live, per kind of identity.
//!
//! Anomaly detectors catch a stolen session in use; governance ends sessions whose purpose is
//! over, by the same CAEP revocation path:
//!
//! - **Identity types.** Each session is a human's, a workload's (service account) or an AI
//!   agent's (delegated automation): from the source (`identity_type` in the native schema) or
//!   from [`IdentityRules`] on user id, client id and app.
//! - **Lifetime policy per type** ([`TypePolicy`]): maximum session age, maximum idle time,
//!   maximum token lifetime and allowed scopes. A session past a limit is revoked, the rule
//!   named in `reason_admin` (`policy.agent.max_session_age`, ...). Age and idle limits are
//!   also enforced on sessions that go quiet, when the engine sweeps (every minute of event
//!   time, or on the runtime's tick).
//! - **Account lifecycle.** A deactivation, suspension, deletion, password or MFA reset or
//!   credential change revokes every live session of the user held by this engine.
//! - **Task-bound sessions.** A workload or agent session that reports a configured end-of-task
//!   event (`task_end_events`) is revoked, with the sessions it minted.
//! - **Delegation.** A session minted by another (`parent_session_id`: token exchange, an
//!   agent acting for a user) is revoked when its parent ends or is revoked, and at once if it
//!   appears after its parent ended.
//! - **Token exposure.** A `token_exposed` event revokes the session holding the token and
//!   raises a critical alert; an exposed token that is not live is remembered, and any later
//!   use of it is revoked as replay.
//!
//! Everything here is off by default except lifecycle, delegation and exposure handling,
//! which only act on explicit events.

use serde::Deserialize;
use vigil_model::IdentityType;

use crate::config::HumanDuration;

/// The `[engine.governance]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// How sessions are classified when the source does not say.
    pub identity: IdentityRules,
    /// Limits for people's sessions.
    pub human: TypePolicy,
    /// Limits for service accounts and workload identities.
    pub workload: TypePolicy,
    /// Limits for AI agents and delegated automation.
    pub agent: TypePolicy,
    /// Event names (`*` patterns) that end a workload's or agent's task: a session of those
    /// types that reports one is revoked (`task.ended`), and so are the sessions it minted.
    /// Matched against the native `event`, Okta `eventType` or OCSF `activity_name`.
    pub task_end_events: Vec<String>,
}

impl GovernanceConfig {
    /// The policy of one identity type.
    pub fn policy(&self, t: IdentityType) -> &TypePolicy {
        match t {
            IdentityType::Human => &self.human,
            IdentityType::Workload => &self.workload,
            IdentityType::Agent => &self.agent,
        }
    }
}

/// Patterns that make a session a workload's or an agent's; everything else is human. A
/// pattern is matched whole, with `*` standing for any run of characters (`svc-*`,
/// `*@serviceaccounts.example.com`, `*agent*`). Agent rules are tried first.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityRules {
    /// User ids of service accounts.
    pub workload_users: Vec<String>,
    /// OAuth client ids of workloads (client-credentials apps, CI systems).
    pub workload_clients: Vec<String>,
    /// Apps only workloads use.
    pub workload_apps: Vec<String>,
    /// User ids of agents.
    pub agent_users: Vec<String>,
    /// OAuth client ids of agents (MCP clients, assistants acting for users).
    pub agent_clients: Vec<String>,
    /// Apps only agents use.
    pub agent_apps: Vec<String>,
}

impl IdentityRules {
    /// The type of a session by its user, client and app.
    pub fn classify(&self, user: &str, client: Option<&str>, app: Option<&str>) -> IdentityType {
        let any =
            |pats: &[String], v: Option<&str>| v.is_some_and(|v| pats.iter().any(|p| glob(p, v)));
        if any(&self.agent_users, Some(user))
            || any(&self.agent_clients, client)
            || any(&self.agent_apps, app)
        {
            IdentityType::Agent
        } else if any(&self.workload_users, Some(user))
            || any(&self.workload_clients, client)
            || any(&self.workload_apps, app)
        {
            IdentityType::Workload
        } else {
            IdentityType::Human
        }
    }
}

/// Matches `text` against `pattern`, where `*` matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    if !text.ends_with(last) {
        return false;
    }
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Lifetime limits of one identity type; absent limits do not apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TypePolicy {
    /// Longest a session may live from its first event.
    pub max_session_age: Option<HumanDuration>,
    /// Longest a session may go without an event; used again after that, it is revoked.
    pub max_idle: Option<HumanDuration>,
    /// Longest a token may be used after it was first seen.
    pub max_token_lifetime: Option<HumanDuration>,
    /// Scopes the type may be granted (`*` patterns allowed); empty: any.
    pub allowed_scopes: Vec<String>,
}

impl TypePolicy {
    /// The first granted scope the policy does not allow.
    pub fn disallowed<'a>(&self, scopes: &'a [String]) -> Option<&'a str> {
        if self.allowed_scopes.is_empty() {
            return None;
        }
        scopes
            .iter()
            .find(|s| !self.allowed_scopes.iter().any(|p| glob(p, s)))
            .map(String::as_str)
    }
}

/// Formats a duration in milliseconds for a reason text: `1h 2m`, `45s`.
pub fn human_ms(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    humantime::format_duration(std::time::Duration::from_secs(secs as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_strings() {
        assert!(glob("svc-*", "svc-backup"));
        assert!(!glob("svc-*", "my-svc-backup"));
        assert!(glob("*@sa.example.com", "ci@sa.example.com"));
        assert!(glob("*agent*", "mcp-agent-7"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"), "prefix and suffix must not overlap");
    }

    #[test]
    fn agents_win_over_workloads_and_humans_are_the_rest() {
        let rules = IdentityRules {
            workload_users: vec!["svc-*".into()],
            agent_clients: vec!["0oa-mcp-*".into()],
            ..Default::default()
        };
        assert_eq!(rules.classify("svc-ci", None, None), IdentityType::Workload);
        assert_eq!(
            rules.classify("svc-ci", Some("0oa-mcp-1"), None),
            IdentityType::Agent
        );
        assert_eq!(
            rules.classify("alice", Some("0oa-web"), Some("Mail")),
            IdentityType::Human
        );
    }

    #[test]
    fn allowed_scopes_name_the_first_stray_one() {
        let p = TypePolicy {
            allowed_scopes: vec!["read:*".into(), "openid".into()],
            ..Default::default()
        };
        let ok = ["openid".to_owned(), "read:mail".to_owned()];
        assert_eq!(p.disallowed(&ok), None);
        let bad = ["read:mail".to_owned(), "admin:org".to_owned()];
        assert_eq!(p.disallowed(&bad), Some("admin:org"));
        assert_eq!(TypePolicy::default().disallowed(&bad), None);
    }
}
