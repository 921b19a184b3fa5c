//! What is live right now: every session the engine holds, with its identity type, app, age
//! and whether it is past its lifetime policy; and a summary by type and app.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use vigil_model::IdentityType;

use crate::engine::{Engine, past_lifetime};
use crate::governance::GovernanceConfig;
use crate::state::{SessionState, hash_str};

/// One session as the inventory shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionView {
    /// Session id.
    pub session_id: String,
    /// User id.
    pub user_id: String,
    /// Tenant, when known.
    pub tenant: Option<String>,
    /// `human`, `workload` or `agent`.
    pub identity_type: &'static str,
    /// The application the session was first seen with.
    pub app: Option<String>,
    /// First event, RFC 3339.
    pub first_seen: String,
    /// Last event, RFC 3339.
    pub last_seen: String,
    /// Seconds since the first event.
    pub age_seconds: i64,
    /// Seconds since the last event.
    pub idle_seconds: i64,
    /// Events seen.
    pub events: u32,
    /// `live`, `ended` (logout or IdP revocation) or `revoked` (by Vigil).
    pub status: &'static str,
    /// The policy rule a live session is past, if any (it is revoked at the next sweep).
    pub past_policy: Option<&'static str>,
    /// The session that minted this one, if any.
    pub parent_session_id: Option<String>,
}

/// Live and past-policy counts of one identity type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TypeCounts {
    /// Live sessions.
    pub live: u64,
    /// Live sessions past a lifetime limit.
    pub past_policy: u64,
}

/// The inventory summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// Sessions held, whatever their status.
    pub sessions: u64,
    /// Sessions still live.
    pub live: u64,
    /// Ended by logout or the IdP, still held for replay detection.
    pub ended: u64,
    /// Revoked by Vigil, still held for replay detection.
    pub revoked: u64,
    /// Live sessions by identity type.
    pub by_type: BTreeMap<&'static str, TypeCounts>,
    /// Live sessions by application (`unknown` when none was seen).
    pub by_app: BTreeMap<String, u64>,
    /// Distinct users with a live session (summed over partitions when merged).
    pub users: u64,
    /// Age of the oldest live session, seconds.
    pub oldest_live_seconds: i64,
}

impl Inventory {
    /// Adds another partition's summary.
    pub fn merge(&mut self, o: &Inventory) {
        self.sessions += o.sessions;
        self.live += o.live;
        self.ended += o.ended;
        self.revoked += o.revoked;
        for (t, c) in &o.by_type {
            let e = self.by_type.entry(t).or_default();
            e.live += c.live;
            e.past_policy += c.past_policy;
        }
        for (a, n) in &o.by_app {
            *self.by_app.entry(a.clone()).or_default() += n;
        }
        self.users += o.users;
        self.oldest_live_seconds = self.oldest_live_seconds.max(o.oldest_live_seconds);
    }

    /// The summary of `views`.
    pub fn of(views: &[SessionView]) -> Self {
        let mut inv = Inventory {
            sessions: views.len() as u64,
            ..Default::default()
        };
        let mut users = BTreeSet::new();
        for v in views {
            match v.status {
                "live" => {
                    inv.live += 1;
                    let c = inv.by_type.entry(v.identity_type).or_default();
                    c.live += 1;
                    if v.past_policy.is_some() {
                        c.past_policy += 1;
                    }
                    *inv.by_app
                        .entry(v.app.clone().unwrap_or_else(|| "unknown".into()))
                        .or_default() += 1;
                    users.insert(v.user_id.as_str());
                    inv.oldest_live_seconds = inv.oldest_live_seconds.max(v.age_seconds);
                }
                "ended" => inv.ended += 1,
                _ => inv.revoked += 1,
            }
        }
        inv.users = users.len() as u64;
        inv
    }
}

fn status(st: &SessionState) -> &'static str {
    if st.revoked {
        "revoked"
    } else if st.ended_at().is_some() {
        "ended"
    } else {
        "live"
    }
}

/// The rule a live session's age or idle limit names, if it is past it at `now`.
fn past_policy(g: &GovernanceConfig, st: &SessionState, now: i64) -> Option<&'static str> {
    past_lifetime(g, st, now).map(|(limit, ty, ..)| limit.rule(ty))
}

impl Engine {
    /// Every session held, as of `now` (epoch ms), sorted by session id.
    pub fn session_views(&self, now: i64) -> Vec<SessionView> {
        let fmt = vigil_model::time::format_rfc3339;
        let mut v: Vec<SessionView> = self
            .sessions
            .iter()
            .map(|(id, st)| {
                let status = status(st);
                SessionView {
                    session_id: id.to_string(),
                    user_id: st.user_id.to_string(),
                    tenant: st.tenant.as_deref().map(str::to_owned),
                    identity_type: st.identity.unwrap_or(IdentityType::Human).as_str(),
                    app: st.app.as_deref().map(str::to_owned),
                    first_seen: fmt(st.first_seen),
                    last_seen: fmt(st.last_seen),
                    age_seconds: (now - st.first_seen).max(0) / 1000,
                    idle_seconds: (now - st.last_seen).max(0) / 1000,
                    events: st.events,
                    status,
                    past_policy: (status == "live")
                        .then(|| past_policy(&self.governance, st, now))
                        .flatten(),
                    parent_session_id: st.parent().map(str::to_owned),
                }
            })
            .collect();
        v.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        v
    }

    /// The summary of [`Engine::session_views`], computed without building them, in one
    /// scan of the whole table.
    pub fn inventory(&self, now: i64) -> Inventory {
        let mut scan = InventoryScan::default();
        loop {
            if let Some(inv) = self.inventory_step(&mut scan, now, usize::MAX) {
                return inv;
            }
        }
    }

    /// Goes on with `scan`, looking at up to `budget` sessions (see
    /// [`INVENTORY_STEP`]); returns the summary once the scan has crossed the whole table, and
    /// the next call starts a new one. The runtime takes one step every few hundred
    /// milliseconds, so a partition holding a million sessions never stops for a whole scan.
    pub fn inventory_step(
        &self,
        scan: &mut InventoryScan,
        now: i64,
        budget: usize,
    ) -> Option<Inventory> {
        let InventoryScan {
            cursor,
            inv,
            apps,
            users,
        } = scan;
        if *cursor == 0 && inv.sessions == 0 {
            // Sized once for the table: growing by doubling would rehash every user so far in
            // one step (18 ms at a million sessions, measured).
            users.reserve(self.sessions.len());
        }
        let (_, done) = self.sessions.scan_some(cursor, budget, |_, _, st| {
            inv.sessions += 1;
            match status(st) {
                "live" => {
                    inv.live += 1;
                    let ty = st.identity.unwrap_or(IdentityType::Human).as_str();
                    let c = inv.by_type.entry(ty).or_default();
                    c.live += 1;
                    if past_policy(&self.governance, st, now).is_some() {
                        c.past_policy += 1;
                    }
                    let app = st.app.as_deref().unwrap_or("unknown");
                    match apps.get_mut(app) {
                        Some(n) => *n += 1,
                        None => {
                            apps.insert(app.into(), 1);
                        }
                    }
                    users.insert(hash_str(&st.user_id));
                    inv.oldest_live_seconds = inv
                        .oldest_live_seconds
                        .max((now - st.first_seen).max(0) / 1000);
                }
                "ended" => inv.ended += 1,
                _ => inv.revoked += 1,
            }
        });
        if !done {
            return None;
        }
        let mut inv = std::mem::take(inv);
        inv.users = users.len() as u64;
        inv.by_app = apps.drain().map(|(a, n)| (a.into_string(), n)).collect();
        // The user set is as large as the partition's users: not kept between scans.
        *users = FxHashSet::default();
        Some(inv)
    }
}

/// Sessions one [`Engine::inventory_step`] of the runtime looks at: a few milliseconds (each
/// session's user and app are read and counted: about 0.4 us a session at a million
/// sessions, measured by `benches/engine.rs`).
pub const INVENTORY_STEP: usize = 8192;

/// An inventory under way, taken a slice of the session table at a time
/// ([`Engine::inventory_step`]). The sessions that start, change or end while it is under way
/// are counted as they were when their slice was looked at: the summary is a gauge's reading,
/// not a snapshot of one instant.
#[derive(Debug, Default)]
pub struct InventoryScan {
    /// Where the scan goes on in the session table.
    cursor: usize,
    /// The counts so far (users and apps kept apart below).
    inv: Inventory,
    /// Live sessions by application so far.
    apps: FxHashMap<Box<str>, u64>,
    /// Hashes of the users with a live session so far (64 bits, not the ids: a scan of a
    /// million sessions does not copy a million ids; two users whose ids hash alike would
    /// count as one).
    users: FxHashSet<u64>,
}

#[cfg(test)]
mod tests {
    use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};

    use super::*;
    use crate::{EngineConfig, Output};

    #[test]
    fn views_and_summary_count_types_apps_and_past_policy() {
        let cfg: EngineConfig = toml::from_str(
            "[governance.identity]\nworkload_users = [\"svc-*\"]\n[governance.workload]\nmax_idle = \"10m\"\n",
        )
        .expect("config");
        let mut engine = Engine::new(&cfg).expect("valid");
        let ctx = AdapterContext::new(b"k");
        let mut out = Output::default();
        for line in [
            r#"{"id":"1","time":"2024-05-01T09:00:00Z","kind":"session_start","session_id":"s1","user_id":"alice","app":"Mail"}"#,
            r#"{"id":"2","time":"2024-05-01T09:00:00Z","kind":"session_start","session_id":"s2","user_id":"svc-ci","app":"CI"}"#,
            r#"{"id":"3","time":"2024-05-01T09:01:00Z","kind":"session_start","session_id":"s3","user_id":"bob"}"#,
            r#"{"id":"4","time":"2024-05-01T09:02:00Z","kind":"logout","session_id":"s3","user_id":"bob"}"#,
        ] {
            let ev = parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid");
            engine.process(&ev, &mut out).expect("in order");
        }
        // 09:20: the workload session has been idle 20 minutes, past its 10.
        let now = 1_714_555_200_000;
        let views = engine.session_views(now);
        let s2 = views.iter().find(|v| v.session_id == "s2").expect("s2");
        assert_eq!(s2.identity_type, "workload");
        assert_eq!(s2.past_policy, Some("policy.workload.max_idle"));
        assert_eq!(s2.idle_seconds, 1200);
        let inv = Inventory::of(&views);
        assert_eq!(engine.inventory(now), inv, "both ways agree");
        // Taken one session at a time, as the runtime takes it in steps, it reads the same.
        let mut scan = InventoryScan::default();
        let mut steps = 1;
        let stepwise = loop {
            match engine.inventory_step(&mut scan, now, 1) {
                Some(i) => break i,
                None => steps += 1,
            }
        };
        assert!(steps >= 3, "{steps} steps");
        assert_eq!(stepwise, inv);
        // The next scan starts over and reads the same again.
        assert_eq!(engine.inventory(now), inv);
        assert_eq!((inv.sessions, inv.live, inv.ended), (3, 2, 1));
        assert_eq!(
            inv.by_type["human"],
            TypeCounts {
                live: 1,
                past_policy: 0
            }
        );
        assert_eq!(
            inv.by_type["workload"],
            TypeCounts {
                live: 1,
                past_policy: 1
            }
        );
        assert_eq!(inv.by_app["Mail"], 1);
        assert_eq!(inv.users, 2);
        let mut merged = inv.clone();
        merged.merge(&inv);
        assert_eq!(merged.by_type["workload"].past_policy, 2);
    }
}
