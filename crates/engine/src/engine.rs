//! The engine: one partition's sessions, tokens, detectors and policy.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use vigil_model::{
    Action, Alert, Anomaly, EventKind, Finding, IdentityType, RejectReason, Rejection, Revocation,
    SessionEvent, Severity, TokenHash, WindowStats,
};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::changelog::StateKey;
use crate::config::{ConfigError, EngineConfig, HumanDuration};
use crate::detectors::{Ctx, Detector, Network, Observation};
use crate::governance::{GovernanceConfig, human_ms};
use crate::policy::Policy;
use crate::state::{
    BoundedTable, EvictionCounts, NOT_QUEUED, OptTime, Place, SessionState, Small, due_ticket,
    hash_str, push_capped,
};
use crate::tokens::{RefreshState, TokenBinding};
use crate::ua;

/// Most distinct places remembered per session, for concurrent-use detection.
const MAX_PLACES: usize = 4;
/// Most countries and ASNs remembered per session.
const MAX_NETWORKS: usize = 16;
/// Most baseline scopes remembered per session.
const MAX_SCOPES: usize = 64;
/// Source record ids remembered per session for duplicate detection.
/// How often (in event time) an expiry pass over every table starts.
const SWEEP_EVERY_MS: i64 = 60_000;
/// Most table entries the expiry pass under way looks at per event processed: a pass over a
/// million entries is spread over 125,000 events instead of pausing one of them. Fewer when
/// events come fast enough for fewer to do (see [`sweep_pace`]).
const SWEEP_COST_PER_EVENT: usize = 8;
/// An expiry pass paces itself to take about this fraction of the shortest TTL of event time,
/// at the pace events came during the pass before (a sixteenth: 45 minutes of a 12-hour idle
/// TTL), so an idle entry outlives its TTL by about that much at most, unless even
/// [`SWEEP_COST_PER_EVENT`] entries per event cannot keep up.
const SWEEP_PASSES_PER_TTL: f64 = 16.0;
/// Events a caller reads ahead and passes to [`Engine::prefetch`] together, before processing
/// the group read before them. Each prefetch waits on memory (at 1e5 live sessions and more,
/// most of what an event costs); the waits of a group's events overlap one another, where
/// one event read ahead at a time waits alone (engine bench at 1e5 sessions: parse + process
/// about a fifth faster with groups of 16 than one ahead).
pub const PREFETCH_GROUP: usize = 16;
/// Entries the expiry pass looks at in one go, once enough events have paid for them. Looked
/// at a few per event, each entry's state was read alone and the pass cost about twice as
/// much per event (median event 0.7 -> 1.1-1.5 us at a million live sessions, measured); in
/// runs of a few thousand the reads overlap, and a run takes a few tenths of a millisecond.
const SWEEP_CHUNK: usize = 4096;
/// Table entries the expiry pass looks at per tick of a quiet partition ([`Engine::on_tick`]):
/// a few milliseconds of work, so a record arriving meanwhile waits no longer than that.
const SWEEP_COST_PER_TICK: usize = 65_536;
/// Parsed user agents remembered (by their full text).
const UA_CACHE_ENTRIES: usize = 8192;
/// Most child sessions remembered per parent for delegation revocation.
const MAX_CHILDREN: usize = 32;

/// Entries per event an expiry pass over `entries` looks at, given that the last `events`
/// events covered `elapsed_ms` of event time: enough for the pass to take at most
/// 1/[`SWEEP_PASSES_PER_TTL`] of `shortest_ttl_ms` at that pace, from 1 to
/// [`SWEEP_COST_PER_EVENT`]. A million entries at 100,000 events a second of event time take
/// one each; at a hundred events a second, the most.
fn sweep_pace(entries: usize, elapsed_ms: i64, events: u64, shortest_ttl_ms: i64) -> usize {
    let ms_per_event = elapsed_ms.max(0) as f64 / events.max(1) as f64;
    let needed =
        SWEEP_PASSES_PER_TTL * entries as f64 * ms_per_event / shortest_ttl_ms.max(1) as f64;
    (needed.ceil() as usize).clamp(1, SWEEP_COST_PER_EVENT)
}

/// What processing produced. Reused across events to avoid allocation; the caller drains it.
#[derive(Debug, Default)]
pub struct Output {
    /// Alerts, in order.
    pub alerts: Vec<Alert>,
    /// Revocations, in order.
    pub revocations: Vec<Revocation>,
}

impl Output {
    /// Empties both lists.
    pub fn clear(&mut self) {
        self.alerts.clear();
        self.revocations.clear();
    }
}

/// Counters the engine keeps; the runtime exports them as metrics.
#[derive(Debug, Clone, Default)]
pub struct EngineStats {
    /// Events processed.
    pub events: u64,
    /// Sessions ever created.
    pub sessions_created: u64,
    /// Findings by detector, including those below the alert threshold.
    pub findings: BTreeMap<&'static str, u64>,
    /// Findings below `policy.alert_at`, counted but not alerted.
    pub findings_below_alert: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Revocations issued.
    pub revocations: u64,
    /// Events rejected as later than the out-of-order grace.
    pub late_events: u64,
    /// Events skipped because the session had just processed the same source record.
    pub duplicates: u64,
}

/// Marks session `sid` for the next changelog flush: its state `st` is flagged and its key
/// copied the first time only; a session not held (`None`, any more) is written as a
/// tombstone.
fn mark_for_flush(dirty_sessions: &mut Vec<Box<str>>, sid: &str, st: Option<&mut SessionState>) {
    match st {
        Some(st) if st.dirty => {}
        Some(st) => {
            st.dirty = true;
            dirty_sessions.push(sid.into());
        }
        None => dirty_sessions.push(sid.into()),
    }
}

/// The detection engine for one partition. Pure: time comes only from events (or the `now`
/// given to [`Engine::on_tick`]); no I/O, no clock, no locks.
#[derive(Debug)]
pub struct Engine {
    detectors: Vec<Detector>,
    policy: Policy,
    net: Network,
    /// Boxed: a table slot then costs a key and a pointer, not the whole state, so the
    /// table's spare capacity (a hash table is a quarter to a half empty) stays small.
    pub(crate) sessions: BoundedTable<Box<str>, Box<SessionState>>,
    pub(crate) tokens: BoundedTable<TokenHash, TokenBinding>,
    pub(crate) refresh: BoundedTable<TokenHash, RefreshState>,
    /// Boxed for the same reason as sessions (a baseline is 120 bytes; a user often has one
    /// session, so this table is about as large as the sessions').
    pub(crate) users: BoundedTable<Box<str>, Box<crate::users::UserBaseline>>,
    /// How often (event time) a user baseline that learned nothing is rewritten to the
    /// changelog for its `last_seen`: a hundredth of `user_ttl`, between a minute and an hour.
    user_write_every_ms: i64,
    /// The same for token bindings, from `token_ttl`.
    token_write_every_ms: i64,
    grace_ms: i64,
    window_ms: i64,
    scope_baseline_ms: i64,
    pub(crate) watermark: i64,
    pub(crate) persisted_watermark: i64,
    /// Token, refresh-token and user keys changed since the last changelog drain (recorded
    /// once tracking is on; sessions are in `dirty_sessions`).
    pub(crate) dirty: FxHashSet<StateKey>,
    /// Sessions changed since the last drain, each once (apart from `dirty`: a session
    /// marked is flagged in its own state, which the event marking it has just touched, so
    /// marking costs no lookup in a set of its own; a session no longer held may appear twice).
    pub(crate) dirty_sessions: Vec<Box<str>>,
    tracking: bool,
    /// Event time from which the next expiry pass starts.
    next_sweep: i64,
    /// The table the expiry pass under way is in (an index into [`Engine::sweep_some`]'s
    /// order), `None` between passes.
    sweeping: Option<u8>,
    /// Entries the events since the last step of the pass have paid for.
    sweep_credit: usize,
    /// Entries each event pays for during the pass under way ([`sweep_pace`]).
    sweep_cost: usize,
    /// Event time and events processed when the last pass started, to measure the pace of
    /// event time per event for the next.
    sweep_started: (i64, u64),
    /// The shortest of the tables' TTLs, ms.
    shortest_ttl_ms: i64,
    /// Whether any identity type has an age or idle limit (else no session is queued below).
    lifetime_limits: bool,
    /// Live sessions under an age or idle limit, by the event time it falls due (see
    /// [`Engine::enforce_lifetimes`]). An entry counts while its time is the session's
    /// `lifetime_due` (to the second); others are dropped when they come up.
    lifetimes: BinaryHeap<Reverse<(i64, Box<str>)>>,
    /// Whether `lifetimes` must be built again from the table before it is used.
    pub(crate) lifetimes_stale: bool,
    /// The sessions of each user, for account changes: the user id's hash to the session
    /// table's hashes of their session ids ([`BoundedTable::key_hash`]; hashes, not ids, so
    /// the index copies no strings). Hashes of sessions that left match nothing and are
    /// dropped when the index is built again, once it holds more than twice the sessions
    /// plus 1,024.
    user_sessions: FxHashMap<u64, Small<[u64; 2]>>,
    /// Session hashes in `user_sessions`.
    user_sessions_len: usize,
    /// Whether `user_sessions` must be built again from the table before it is used.
    pub(crate) user_sessions_stale: bool,
    /// Parsed user agents by their text (a pure memo of `ua::parse`).
    ua_cache: FxHashMap<Box<str>, ua::UaInfo>,
    /// The strings sessions' last endpoints share.
    pub(crate) strings: crate::state::Strings,
    findings: Vec<Finding>,
    pub(crate) governance: GovernanceConfig,
    /// Counters.
    pub stats: EngineStats,
}

impl Engine {
    /// Builds an engine, validating the configuration.
    pub fn new(cfg: &EngineConfig) -> Result<Self, ConfigError> {
        let st = &cfg.state;
        crate::config::check_range(
            "state.max_sessions",
            st.max_sessions,
            1,
            1 << 30,
            "between 1 and 2^30",
        )?;
        crate::config::check_range(
            "state.max_tokens",
            st.max_tokens,
            1,
            1 << 30,
            "between 1 and 2^30",
        )?;
        if st.idle_ttl > st.absolute_ttl {
            return Err(ConfigError::OutOfRange {
                field: "state.idle_ttl",
                value: format!("{:?}", st.idle_ttl),
                expected: "no longer than state.absolute_ttl",
            });
        }
        // The state must still hold a session when its policy says to end it.
        for ty in IdentityType::ALL {
            let pol = cfg.governance.policy(ty);
            let (age_field, idle_field) = match ty {
                IdentityType::Human => (
                    "governance.human.max_session_age",
                    "governance.human.max_idle",
                ),
                IdentityType::Workload => (
                    "governance.workload.max_session_age",
                    "governance.workload.max_idle",
                ),
                IdentityType::Agent => (
                    "governance.agent.max_session_age",
                    "governance.agent.max_idle",
                ),
            };
            if let Some(age) = pol.max_session_age
                && age > st.absolute_ttl
            {
                return Err(ConfigError::OutOfRange {
                    field: age_field,
                    value: format!("{age:?}"),
                    expected: "no longer than state.absolute_ttl",
                });
            }
            if let Some(idle) = pol.max_idle
                && idle > st.idle_ttl
            {
                return Err(ConfigError::OutOfRange {
                    field: idle_field,
                    value: format!("{idle:?}"),
                    expected: "no longer than state.idle_ttl",
                });
            }
        }
        let scope_baseline_ms = cfg.detectors.scope_expansion.baseline_period.ms();
        Ok(Self {
            detectors: cfg.detectors.build()?,
            policy: Policy::new(&cfg.policy)?,
            net: Network::new(&cfg.network)?,
            sessions: BoundedTable::new(st.idle_ttl.ms(), st.absolute_ttl.ms(), st.max_sessions),
            tokens: BoundedTable::new(st.token_ttl.ms(), i64::MAX, st.max_tokens),
            refresh: BoundedTable::new(st.token_ttl.ms(), i64::MAX, st.max_tokens),
            users: BoundedTable::new(st.user_ttl.ms(), i64::MAX, st.max_users.max(1)),
            user_write_every_ms: rewrite_period(st.user_ttl.ms()),
            token_write_every_ms: rewrite_period(st.token_ttl.ms()),
            grace_ms: st.out_of_order_grace.ms(),
            window_ms: st.window.ms(),
            scope_baseline_ms,
            watermark: i64::MIN,
            persisted_watermark: i64::MIN,
            dirty: FxHashSet::default(),
            dirty_sessions: Vec::new(),
            tracking: false,
            next_sweep: i64::MIN,
            sweeping: None,
            sweep_credit: 0,
            sweep_cost: SWEEP_COST_PER_EVENT,
            sweep_started: (i64::MIN, 0),
            shortest_ttl_ms: [st.idle_ttl, st.absolute_ttl, st.token_ttl, st.user_ttl]
                .iter()
                .map(|t| t.ms())
                .min()
                .unwrap_or(i64::MAX)
                .max(1),
            lifetime_limits: IdentityType::ALL.iter().any(|t| {
                let p = cfg.governance.policy(*t);
                p.max_session_age.is_some() || p.max_idle.is_some()
            }),
            lifetimes: BinaryHeap::new(),
            lifetimes_stale: false,
            user_sessions: FxHashMap::default(),
            user_sessions_len: 0,
            user_sessions_stale: false,
            ua_cache: FxHashMap::default(),
            strings: crate::state::Strings::default(),
            findings: Vec::new(),
            governance: cfg.governance.clone(),
            stats: EngineStats::default(),
        })
    }

    /// The enabled detectors' names.
    pub fn detector_names(&self) -> Vec<&'static str> {
        self.detectors.iter().map(Detector::name).collect()
    }

    /// Live sessions.
    pub fn live_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// User baselines held.
    pub fn live_users(&self) -> usize {
        self.users.len()
    }

    /// Live token and refresh-token bindings.
    pub fn live_tokens(&self) -> usize {
        self.tokens.len() + self.refresh.len()
    }

    /// Session evictions so far, by cause.
    pub fn evictions(&self) -> EvictionCounts {
        self.sessions.evictions
    }

    /// The newest event time seen, if any.
    pub fn watermark(&self) -> Option<i64> {
        (self.watermark != i64::MIN).then_some(self.watermark)
    }

    /// A session's state, for inspection.
    pub fn session(&self, id: &str) -> Option<&SessionState> {
        self.sessions.get(id).map(|s| &**s)
    }

    /// Asks the CPU for the memory [`Engine::process`] will read for `ev` (its session's
    /// state, its user's baseline, its token's binding, and the keys they are filed under),
    /// so that it is on its way while the events before it are processed. Prefetch
    /// instructions, not loads: the CPU goes on without waiting for them, so the state of a
    /// whole group of events is requested at once. Changes nothing; returns how many of the
    /// three it found (0 to 3).
    pub fn prefetch(&self, ev: &SessionEvent) -> usize {
        use crate::state::Warm;
        let mut found = usize::from(self.sessions.warm_text_key(&ev.session_id));
        found += usize::from(self.users.warm_text_key(&ev.user_id));
        if let Some(t) = ev.token {
            found += usize::from(self.tokens.warm(&t, |_, b| b.warm()));
        }
        found
    }

    /// Processes one event, appending alerts and revocations to `out`. An event later than
    /// the out-of-order grace is rejected (the caller dead-letters it); nothing else fails.
    pub fn process(&mut self, ev: &SessionEvent, out: &mut Output) -> Result<(), Rejection> {
        if self.watermark != i64::MIN && ev.time_ms < self.watermark - self.grace_ms {
            self.stats.late_events += 1;
            return Err(Rejection::new(
                RejectReason::LateEvent,
                format!(
                    "event time {} is {} s behind the newest event, beyond the {} s out-of-order grace",
                    vigil_model::time::format_rfc3339(ev.time_ms),
                    (self.watermark - ev.time_ms) / 1000,
                    self.grace_ms / 1000
                ),
            ));
        }
        self.watermark = self.watermark.max(ev.time_ms);
        if self.watermark >= self.next_sweep {
            self.enforce_lifetimes(self.watermark, out);
            self.start_sweep(self.watermark);
        }
        // Every event pays for SWEEP_COST_PER_EVENT entries of the expiry pass, taken a
        // chunk at a time: a pass over every table takes as many events as it needs, so a
        // backlog covering many minutes of event time in a few seconds does not rescan a
        // million sessions every few events, and no event waits for a whole table. Memory
        // stays bounded by the caps meanwhile.
        if self.sweeping.is_some() {
            self.sweep_credit += self.sweep_cost;
            let entries = self.table_entries();
            if self.sweep_credit >= SWEEP_CHUNK.min(entries) {
                let budget = std::mem::take(&mut self.sweep_credit);
                self.sweep_some(self.watermark, budget);
            }
        }
        match ev.kind {
            EventKind::UserLifecycle => {
                self.stats.events += 1;
                self.user_lifecycle(ev, out);
                return Ok(());
            }
            EventKind::TokenExposed => {
                self.stats.events += 1;
                self.token_exposed(ev, out);
                return Ok(());
            }
            _ => {}
        }
        let id_hash = hash_str(&ev.source_id);
        // The session is looked up once for the duplicate check and the detectors.
        let session = self.sessions.get(ev.session_id.as_str()).map(|s| &**s);
        if session.is_some_and(|s| s.recent_ids().contains(&id_hash)) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        let new_session = session.is_none();
        self.stats.events += 1;
        let obs = Self::observe_event(&mut self.ua_cache, self.net.default_accuracy_km, ev);

        self.findings.clear();
        // An MFA event's client is usually the authenticator (a phone app answering a push),
        // a second device by design: it neither tests nor teaches the session's device,
        // client and location baselines.
        let second_device = ev.kind == EventKind::Mfa;
        if !second_device {
            let ctx = Ctx {
                ev,
                obs: &obs,
                session,
                tokens: &self.tokens,
                refresh: &self.refresh,
                net: &self.net,
                user: self.users.get(ev.user_id.as_str()).map(|u| &**u),
            };
            for d in &self.detectors {
                d.observe(&ctx, &mut self.findings);
            }
        }

        if new_session {
            self.stats.sessions_created += 1;
            let mut st = Box::new(SessionState::new(ev, &mut self.strings));
            st.identity = Some(self.identity_of(ev));
            self.queue_lifetime(&ev.session_id, &mut st);
            self.index_user_session(&ev.user_id, &ev.session_id);
            self.sessions.insert(ev.session_id.as_str().into(), st);
        }
        let findings = std::mem::take(&mut self.findings);
        self.apply_policy(ev, &findings, out);
        self.findings = findings;
        self.govern(ev, new_session, out);
        // Marks the session for the changelog while it holds it.
        let held = self.update_session(ev, &obs);
        let (ended, revoked) = held.unwrap_or((None, false));
        let token_changed = self.update_tokens(ev, &obs, ended);
        self.update_user(ev, &obs, new_session, revoked);
        if self.tracking {
            if held.is_none() {
                mark_for_flush(&mut self.dirty_sessions, &ev.session_id, None);
            }
            self.mark_dirty(ev, token_changed);
        }
        Ok(())
    }

    /// Starts recording which keys change, for [`Engine::drain_changes`]. Call before the
    /// first event when the state is to be made durable.
    pub fn track_changes(&mut self) {
        if !self.tracking {
            self.tracking = true;
            self.sessions.track_evictions();
            self.tokens.track_evictions();
            self.refresh.track_evictions();
            self.users.track_evictions();
        }
    }

    /// Marks a session for the next changelog flush; its key is copied only the first time.
    fn mark_session_dirty(&mut self, sid: &str) {
        let st = self.sessions.get_mut(sid).map(|b| &mut **b);
        mark_for_flush(&mut self.dirty_sessions, sid, st);
    }

    /// Marks the event's token and refresh tokens for the next changelog flush (its session
    /// is marked by [`Engine::update_session`]).
    fn mark_dirty(&mut self, ev: &SessionEvent, token_changed: bool) {
        if token_changed && let Some(t) = ev.token {
            self.dirty.insert(StateKey::Token(t));
        }
        for r in [ev.refresh_token, ev.new_refresh_token]
            .into_iter()
            .flatten()
        {
            self.dirty.insert(StateKey::Refresh(r));
        }
    }

    /// Periodic work driven by the runtime's clock when no events arrive: revokes sessions
    /// past their lifetime policy (into `out`) and goes on expiring idle state, a bounded
    /// number of entries per call.
    pub fn on_tick(&mut self, now_ms: i64, out: &mut Output) {
        self.enforce_lifetimes(now_ms, out);
        if now_ms >= self.next_sweep {
            self.start_sweep(now_ms);
        }
        if self.sweeping.is_some() {
            self.sweep_some(now_ms, SWEEP_COST_PER_TICK);
        }
    }

    /// The identity type of a new session: the source's word, else the configured rules.
    fn identity_of(&self, ev: &SessionEvent) -> IdentityType {
        ev.identity_type.unwrap_or_else(|| {
            self.governance.identity.classify(
                &ev.user_id,
                ev.client_id.as_deref(),
                ev.app.as_deref(),
            )
        })
    }

    /// A stand-in event naming a stored session, for revocations that no event of the
    /// session itself caused. `cause` becomes the source id the revocation id derives from.
    fn subject_event(sid: &str, st: &SessionState, time_ms: i64, cause: &str) -> SessionEvent {
        SessionEvent {
            time_ms,
            kind: EventKind::Revocation,
            session_id: sid.to_owned(),
            parent_session_id: st.parent().map(str::to_owned),
            user_id: st.user_id.to_string(),
            tenant: st.tenant.as_deref().map(str::to_owned),
            source_id: cause.to_owned(),
            identity_type: st.identity,
            ..SessionEvent::empty(vigil_model::SourceFormat::Native)
        }
    }

    /// Revokes session `sid` for `rule` and, transitively, the sessions it minted. Sessions
    /// already revoked are left alone.
    fn revoke(
        &mut self,
        sid: &str,
        time_ms: i64,
        cause: &str,
        rule: &'static str,
        reason: String,
        out: &mut Output,
    ) {
        let mut work = vec![(sid.to_owned(), rule, reason)];
        while let Some((id, rule, reason)) = work.pop() {
            let Some(st) = self.sessions.get_mut(id.as_str()) else {
                continue;
            };
            if st.revoked {
                continue;
            }
            st.revoked = true;
            st.end_at(time_ms);
            let children = st.take_children();
            let subject = Self::subject_event(&id, st, time_ms, cause);
            let text = format!(
                "Vigil revoked session {id} of user {}: {reason} ({rule}).",
                st.user_id
            );
            self.stats.revocations += 1;
            out.revocations
                .push(Revocation::new(&subject, vec![rule], text));
            if self.tracking {
                self.mark_session_dirty(&id);
            }
            for c in children {
                work.push((
                    c.to_string(),
                    "delegation.parent_ended",
                    format!("the session that minted it, {id}, was revoked"),
                ));
            }
        }
    }

    /// Governance for one session event, after the detectors: delegation links, exposed
    /// tokens, and the lifetime policy of the session's identity type.
    fn govern(&mut self, ev: &SessionEvent, new_session: bool, out: &mut Output) {
        let sid = ev.session_id.as_str();
        if new_session && let Some(p) = ev.parent_session_id.as_deref() {
            match self.sessions.get_mut(p) {
                Some(parent) if parent.revoked || parent.ended_at().is_some() => {
                    let why = format!("the session that minted it, {p}, had already ended");
                    self.revoke(
                        sid,
                        ev.time_ms,
                        &ev.source_id,
                        "delegation.parent_ended",
                        why,
                        out,
                    );
                    return;
                }
                Some(parent)
                    if parent.rare().children.len() < MAX_CHILDREN
                        && !parent.rare().children.iter().any(|c| **c == *sid) =>
                {
                    parent.rare_mut().children.push(sid.into());
                    if self.tracking {
                        self.mark_session_dirty(p);
                    }
                }
                _ => {}
            }
        }
        let Some(st) = self.sessions.get(sid) else {
            return;
        };
        if (ev.kind.ends_session() || st.revoked) && !st.rare().children.is_empty() {
            let children = self
                .sessions
                .get_mut(sid)
                .map(|st| st.take_children())
                .unwrap_or_default();
            for c in children {
                let why = format!("the session that minted it, {sid}, ended");
                self.revoke(
                    &c,
                    ev.time_ms,
                    &ev.source_id,
                    "delegation.parent_ended",
                    why,
                    out,
                );
            }
        }
        let Some(st) = self.sessions.get(sid) else {
            return;
        };
        if st.revoked || st.ended_at().is_some() || !ev.success {
            return;
        }
        if let Some(t) = ev.token
            && let Some(at) = self.tokens.get(&t).and_then(|b| b.exposed_at.get())
        {
            let when = vigil_model::time::format_rfc3339(at);
            self.exposure_alert(
                ev,
                "Exposed token used",
                format!("A token reported exposed at {when} was used by session {sid}."),
                ev.found_in.as_deref(),
                out,
            );
            let why = format!("it used a token reported exposed at {when}");
            self.revoke(
                sid,
                ev.time_ms,
                &ev.source_id,
                "token_exposed.used",
                why,
                out,
            );
            return;
        }
        let ty = st.identity.unwrap_or(IdentityType::Human);
        if ty != IdentityType::Human
            && let Some(name) = ev.event_name.as_deref()
            && self
                .governance
                .task_end_events
                .iter()
                .any(|p| crate::governance::glob(p, name))
        {
            let why = format!("its task ended ({name})");
            self.revoke(sid, ev.time_ms, &ev.source_id, "task.ended", why, out);
            return;
        }
        let pol = self.governance.policy(ty);
        let (age, idle) = (ev.time_ms - st.first_seen, ev.time_ms - st.last_seen);
        let mut broken: Option<(Limit, String)> = None;
        if let Some(max) = pol.max_session_age
            && age > max.ms()
        {
            broken = Some((
                Limit::SessionAge,
                format!("the session is {} old, beyond {:?}", human_ms(age), max),
            ));
        } else if let Some(max) = pol.max_idle
            && idle > max.ms()
        {
            broken = Some((
                Limit::Idle,
                format!("the session was idle {}, beyond {:?}", human_ms(idle), max),
            ));
        } else if let Some(max) = pol.max_token_lifetime
            && let Some(t) = ev.token
            && let Some(b) = self.tokens.get(&t)
            && ev.time_ms - b.first_seen > max.ms()
        {
            broken = Some((
                Limit::TokenLifetime,
                format!(
                    "its token has been in use {}, beyond {:?}",
                    human_ms(ev.time_ms - b.first_seen),
                    max
                ),
            ));
        } else if let Some(scope) = pol.disallowed(&ev.scopes) {
            broken = Some((
                Limit::Scopes,
                format!(
                    "scope {scope:?} is not allowed for {} sessions",
                    ty.as_str()
                ),
            ));
        }
        if let Some((limit, why)) = broken {
            let rule = limit.rule(ty);
            self.revoke(sid, ev.time_ms, &ev.source_id, rule, why, out);
        }
    }

    /// Revokes live sessions past their type's age or idle limit, as of `now`: those whose
    /// entry in the lifetime queue has come up (a session used since it was queued is queued
    /// again for its new time). Costs nothing until one is due, however many sessions there
    /// are.
    fn enforce_lifetimes(&mut self, now: i64, out: &mut Output) {
        if !self.lifetime_limits {
            return;
        }
        if self.lifetimes_stale {
            self.requeue_lifetimes();
        }
        let mut due: Vec<(Box<str>, Limit, IdentityType, String)> = Vec::new();
        while self
            .lifetimes
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now)
        {
            let Some(Reverse((at, id))) = self.lifetimes.pop() else {
                break;
            };
            // An entry whose time is not the session's any more was queued again since, or
            // belongs to a session that left the table.
            let Some(st) = self.sessions.get_mut(&*id) else {
                continue;
            };
            if st.lifetime_due != due_ticket(at) {
                continue;
            }
            st.lifetime_due = NOT_QUEUED;
            if st.revoked || st.ended_at().is_some() {
                continue;
            }
            if let Some((limit, ty, went, max)) = past_lifetime(&self.governance, st, now) {
                let why = if limit == Limit::SessionAge {
                    format!(
                        "the session reached {} of age, beyond {max:?}",
                        human_ms(went)
                    )
                } else {
                    format!(
                        "the session has been idle {}, beyond {max:?}",
                        human_ms(went)
                    )
                };
                due.push((id, limit, ty, why));
            } else if let Some(next) = lifetime_due(&self.governance, st) {
                st.lifetime_due = due_ticket(next);
                self.lifetimes.push(Reverse((next, id)));
            }
        }
        due.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, limit, ty, why) in due {
            let rule = limit.rule(ty);
            self.revoke(&id, now, rule, rule, why, out);
        }
    }

    /// Puts a new session in the lifetime queue, if its type has an age or idle limit.
    fn queue_lifetime(&mut self, id: &str, st: &mut SessionState) {
        if !self.lifetime_limits {
            return;
        }
        if let Some(at) = lifetime_due(&self.governance, st) {
            // Entries of sessions that left the table wait until their time comes; once they
            // outnumber the sessions held, the queue is built again from the table (a pass
            // over the sessions, paid for by as many sessions leaving).
            if self.lifetimes.len() >= 2 * self.sessions.len() + 1024 {
                self.requeue_lifetimes();
            }
            st.lifetime_due = due_ticket(at);
            self.lifetimes.push(Reverse((at, id.into())));
        }
    }

    /// Files a new session under its user, for account changes.
    fn index_user_session(&mut self, user: &str, sid: &str) {
        // Hashes of sessions that left stay until the index is built again: once they
        // outnumber the sessions held (a pass over the sessions, paid for by as many
        // sessions leaving).
        if self.user_sessions_len >= 2 * self.sessions.len() + 1024 {
            self.index_user_sessions();
        }
        let h = BoundedTable::<Box<str>, Box<SessionState>>::key_hash(sid);
        self.user_sessions
            .entry(hash_str(user))
            .or_default()
            .push(h);
        self.user_sessions_len += 1;
    }

    /// Builds the sessions-by-user index from the sessions held: after a restore, and when
    /// it lists more departed sessions than live ones.
    fn index_user_sessions(&mut self) {
        self.user_sessions_stale = false;
        self.user_sessions.clear();
        self.user_sessions_len = self.sessions.len();
        for (id, st) in self.sessions.iter() {
            let h = BoundedTable::<Box<str>, Box<SessionState>>::key_hash(&**id);
            self.user_sessions
                .entry(hash_str(&st.user_id))
                .or_default()
                .push(h);
        }
    }

    /// Builds the lifetime queue from the sessions held: after a restore, which replaces
    /// sessions wholesale, and when the queue holds more departed sessions than live ones.
    fn requeue_lifetimes(&mut self) {
        self.lifetimes_stale = false;
        let mut queue = Vec::with_capacity(self.sessions.len());
        for (id, st) in self.sessions.iter_mut() {
            st.lifetime_due = NOT_QUEUED;
            if st.revoked || st.ended_at().is_some() {
                continue;
            }
            if let Some(at) = lifetime_due(&self.governance, st) {
                st.lifetime_due = due_ticket(at);
                queue.push(Reverse((at, id.clone())));
            }
        }
        self.lifetimes = BinaryHeap::from(queue);
    }

    /// Every live session of the user ends when the account is deactivated, suspended,
    /// deleted, reset or its credentials change.
    fn user_lifecycle(&mut self, ev: &SessionEvent, out: &mut Output) {
        let Some(change) = ev.lifecycle else {
            return;
        };
        if !ev.success {
            return;
        }
        if self.user_sessions_stale {
            self.index_user_sessions();
        }
        let mut victims: Vec<String> = Vec::new();
        for &h in self
            .user_sessions
            .get(&hash_str(&ev.user_id))
            .map_or(&[][..], |l| &l[..])
        {
            for (k, s) in self.sessions.with_hash(h) {
                if *s.user_id == *ev.user_id
                    && !s.revoked
                    && s.ended_at().is_none()
                    && (ev.tenant.is_none() || s.tenant.as_deref() == ev.tenant.as_deref())
                {
                    victims.push(k.to_string());
                }
            }
        }
        victims.sort();
        victims.dedup();
        let rule = lifecycle_rule(change);
        for v in victims {
            let why = format!("the user's account change ({})", change.as_str());
            self.revoke(&v, ev.time_ms, &ev.source_id, rule, why, out);
        }
    }

    /// A token found exposed: the session holding it is revoked at once with a critical
    /// alert; a token that is not live is remembered so any later use is revoked.
    fn token_exposed(&mut self, ev: &SessionEvent, out: &mut Output) {
        let Some(t) = ev.token else {
            return;
        };
        let found = ev.found_in.as_deref().unwrap_or("an unnamed place");
        if self.tracking {
            self.dirty.insert(StateKey::Token(t));
        }
        let holder = match self.tokens.get_mut(&t) {
            Some(b) => {
                b.exposed_at.get_or_insert(ev.time_ms);
                b.last_seen = b.last_seen.max(ev.time_ms);
                Some(b.session_id.to_string())
            }
            None => {
                self.tokens.insert(
                    t,
                    TokenBinding {
                        session_id: "".into(),
                        device: 0,
                        ua: None,
                        first_seen: ev.time_ms,
                        last_seen: ev.time_ms,
                        ended_at: OptTime::NONE,
                        exposed_at: Some(ev.time_ms).into(),
                    },
                );
                None
            }
        };
        let Some(sid) = holder else {
            return;
        };
        let Some(st) = self.sessions.get(sid.as_str()) else {
            return;
        };
        if st.revoked || st.ended_at().is_some() {
            return;
        }
        let subject = Self::subject_event(&sid, st, ev.time_ms, &ev.source_id);
        self.exposure_alert(
            &subject,
            "Live session token exposed",
            format!("A token of live session {sid} was found exposed in {found}."),
            Some(found),
            out,
        );
        let why = format!("its token was found exposed in {found}");
        self.revoke(&sid, ev.time_ms, &ev.source_id, "token_exposed", why, out);
    }

    fn exposure_alert(
        &mut self,
        subject: &SessionEvent,
        title: &str,
        detail: String,
        found_in: Option<&str>,
        out: &mut Output,
    ) {
        let finding = Finding {
            detector: "token_exposure",
            confidence: 100,
            severity: Severity::Critical,
            title: title.to_owned(),
            detail,
            before: None,
            after: None,
            anomalies: vec![Anomaly {
                parameter: "found_in",
                baseline: "not exposed".into(),
                observed: found_in.unwrap_or("unknown").to_owned(),
            }],
        };
        *self.stats.findings.entry("token_exposure").or_default() += 1;
        self.stats.alerts += 1;
        out.alerts.push(Alert::new(
            subject,
            finding,
            Action::Revoke,
            WindowStats::default(),
            100,
        ));
    }

    /// Entries the expiry pass goes through: those of all four tables.
    fn table_entries(&self) -> usize {
        self.sessions.len() + self.tokens.len() + self.refresh.len() + self.users.len()
    }

    /// Starts an expiry pass unless one is under way (paced by [`sweep_pace`]); the next
    /// starts a minute of event time later at the earliest.
    fn start_sweep(&mut self, now: i64) {
        if self.sweeping.is_none() {
            let (then, events_then) = self.sweep_started;
            let entries = self.table_entries();
            self.sweep_cost = if then == i64::MIN {
                SWEEP_COST_PER_EVENT
            } else {
                sweep_pace(
                    entries,
                    now.saturating_sub(then),
                    self.stats.events.saturating_sub(events_then),
                    self.shortest_ttl_ms,
                )
            };
            self.sweep_started = (now, self.stats.events);
        }
        self.sweeping.get_or_insert(0);
        self.next_sweep = now.saturating_add(SWEEP_EVERY_MS);
    }

    /// Goes on with the expiry pass under way, table after table, looking at up to `budget`
    /// entries; shared strings no session holds any more go once the pass is over.
    fn sweep_some(&mut self, now: i64, mut budget: usize) {
        while let Some(table) = self.sweeping
            && budget > 0
        {
            let (spent, done) = match table {
                0 => self.sessions.sweep_some(now, budget),
                1 => self.tokens.sweep_some(now, budget),
                2 => self.refresh.sweep_some(now, budget),
                _ => self.users.sweep_some(now, budget),
            };
            budget = budget.saturating_sub(spent);
            if done {
                self.sweeping = (table < 3).then_some(table + 1);
                if self.sweeping.is_none() {
                    self.strings.purge();
                    self.sweep_credit = 0;
                }
            }
        }
    }

    /// What the detectors and the state updates need from an event, computed once: hashes of
    /// its device, address and client, its place, and its parsed user agent (memoised in
    /// `ua_cache`). A function of the fields it uses, so the caller keeps its session borrowed.
    fn observe_event(
        ua_cache: &mut FxHashMap<Box<str>, ua::UaInfo>,
        default_accuracy_km: u32,
        ev: &SessionEvent,
    ) -> Observation {
        /// The hash of the address's text form, formatted on the stack (IPv4 by hand: the
        /// formatting machinery cost more than the rest of the observation).
        fn hash_ip(ip: std::net::IpAddr) -> u64 {
            use std::io::Write;
            let mut buf = [0u8; 64];
            let n = match ip {
                std::net::IpAddr::V4(v4) => ipv4_text(v4.octets(), &mut buf),
                std::net::IpAddr::V6(_) => {
                    let mut w = &mut buf[..];
                    let _ = write!(w, "{ip}");
                    64 - w.len()
                }
            };
            hash_str(std::str::from_utf8(&buf[..n]).unwrap_or_default())
        }
        let device = ev.device_id.as_deref().map(hash_str);
        let place =
            if ev.geo.coordinates().is_some() || ev.geo.asn.is_some() || ev.geo.country.is_some() {
                let mut p = Place::at(ev.geo.coordinates());
                p.accuracy_km = ev.geo.accuracy_km.unwrap_or(default_accuracy_km);
                p.asn = ev.geo.asn.unwrap_or(0);
                p.country = ev.geo.country.as_deref().map_or(0, |c| {
                    if c.bytes().any(|b| b.is_ascii_lowercase()) {
                        hash_str(&c.to_ascii_uppercase())
                    } else {
                        hash_str(c)
                    }
                });
                p.device = device.unwrap_or(0);
                p.first_seen = ev.time_ms;
                p.last_seen = ev.time_ms;
                Some(p)
            } else {
                None
            };
        let ua_hash = ev.user_agent.as_deref().map(hash_str);
        // Keyed by the full text, not its hash: a crafted user agent must not be able to
        // collide its way into another client's parse.
        let ua = ev
            .user_agent
            .as_deref()
            .map(|text| match ua_cache.get(text) {
                Some(info) => *info,
                None => {
                    // A tenant has few distinct user agents; the memo starts over if not.
                    if ua_cache.len() >= UA_CACHE_ENTRIES {
                        ua_cache.clear();
                    }
                    let info = ua::parse(text);
                    ua_cache.insert(text.into(), info);
                    info
                }
            });
        Observation {
            ua,
            device,
            ip: ev.ip.map(hash_ip),
            ua_hash,
            place,
        }
    }

    fn apply_policy(&mut self, ev: &SessionEvent, findings: &[Finding], out: &mut Output) {
        if findings.is_empty() {
            return;
        }
        let window = self.policy.evidence_window_ms;
        let Some(s) = self.sessions.get_mut(ev.session_id.as_str()) else {
            return;
        };
        let stats_window = s.window_stats(ev.time_ms, self.window_ms);
        let already_revoked = s.revoked;
        let r = s.rare_mut();
        // Findings older than the evidence window go (with their detector tags).
        if r.recent_finding_detectors.len() != r.recent_findings.len() {
            r.recent_finding_detectors = vec![u8::MAX; r.recent_findings.len()];
        }
        let mut i = 0;
        while i < r.recent_findings.len() {
            if ev.time_ms - r.recent_findings[i].0 <= window {
                i += 1;
            } else {
                r.recent_findings.remove(i);
                r.recent_finding_detectors.remove(i);
            }
        }
        let mut revoke_detectors = Vec::new();
        for f in findings {
            *self.stats.findings.entry(f.detector).or_default() += 1;
            let idx = crate::detectors::NAMES
                .iter()
                .position(|n| *n == f.detector)
                .map_or(u8::MAX, |i| i as u8);
            // The same signal repeated is one piece of evidence: each detector counts once,
            // with its strongest recent finding (a VPN user toggling all day stays one weak
            // finding, not a pile of them).
            let mut strongest: Small<[(u8, u8); 8]> = Small::new();
            for (&(_, c), &d) in r.recent_findings.iter().zip(&r.recent_finding_detectors) {
                match strongest
                    .iter_mut()
                    .find(|(sd, _)| *sd == d && d != u8::MAX)
                {
                    Some(e) => e.1 = e.1.max(c),
                    None => strongest.push((d, c)),
                }
            }
            let own = strongest
                .iter()
                .filter(|(d, _)| *d == idx && idx != u8::MAX)
                .map(|(_, c)| *c)
                .max()
                .unwrap_or(0)
                .max(f.confidence);
            let others: Small<[u8; 8]> = strongest
                .iter()
                .filter(|(d, _)| *d != idx || idx == u8::MAX)
                .map(|(_, c)| *c)
                .collect();
            let decision = self.policy.decide(f.detector, own, &others);
            if r.recent_findings.len() >= 8 {
                r.recent_findings.remove(0);
                r.recent_finding_detectors.remove(0);
            }
            push_capped(&mut r.recent_findings, (ev.time_ms, f.confidence), 8);
            push_capped(&mut r.recent_finding_detectors, idx, 8);
            let Some(action) = decision.action else {
                self.stats.findings_below_alert += 1;
                continue;
            };
            if action == Action::Revoke && !already_revoked {
                revoke_detectors.push(f.detector);
            }
            self.stats.alerts += 1;
            out.alerts.push(Alert::new(
                ev,
                f.clone(),
                action,
                stats_window,
                decision.risk,
            ));
        }
        if !revoke_detectors.is_empty() {
            s.revoked = true;
            s.end_at(ev.time_ms);
            let reasons: Vec<&str> = findings
                .iter()
                .filter(|f| revoke_detectors.contains(&f.detector))
                .map(|f| f.title.as_str())
                .collect();
            let reason = format!(
                "Vigil revoked session {} of user {}: {} ({}).",
                ev.session_id,
                ev.user_id,
                reasons.join("; "),
                revoke_detectors.join(", ")
            );
            self.stats.revocations += 1;
            out.revocations
                .push(Revocation::new(ev, revoke_detectors, reason));
        }
    }

    /// Updates the session with the event and marks it for the changelog; returns when the
    /// session ended, if it has, and whether it is revoked (`None` when it is not held).
    fn update_session(
        &mut self,
        ev: &SessionEvent,
        obs: &Observation,
    ) -> Option<(Option<i64>, bool)> {
        let scope_baseline_ms = self.scope_baseline_ms;
        let same_km = self.net.same_place_km;
        let s = self.sessions.get_mut(ev.session_id.as_str())?;
        // Marked for the next changelog flush here, where the session is at hand, rather than
        // looked up again.
        if self.tracking {
            mark_for_flush(&mut self.dirty_sessions, &ev.session_id, Some(&mut **s));
        }
        s.events = s.events.saturating_add(1);
        s.remember_id(hash_str(&ev.source_id));
        s.last_seen = s.last_seen.max(ev.time_ms);
        s.rate.record(ev.time_ms);
        if ev.kind.ends_session() {
            s.end_at(ev.time_ms);
        }
        // A failed request says someone tried; it does not teach the session's baseline, nor
        // does an MFA answer from the authenticator device.
        if !ev.success || ev.kind == EventKind::Mfa {
            return Some((s.ended_at(), s.revoked));
        }
        if let Some(d) = obs.device {
            s.saw_device(d);
            s.devices.insert(d, ev.time_ms);
        }
        if let Some(u) = obs.ua {
            s.ua.get_or_insert(u);
        }
        if let Some(h) = obs.ua_hash {
            s.user_agents.insert(h, ev.time_ms);
        }
        if let Some(ip) = obs.ip {
            s.ips.insert(ip, ev.time_ms);
        }
        if let Some(p) = obs.place {
            if p.country != 0
                && !s.countries.contains(&p.country)
                && s.countries.len() < MAX_NETWORKS
            {
                push_capped(&mut s.countries, p.country, MAX_NETWORKS);
            }
            if p.asn != 0 {
                s.asn_window.insert(u64::from(p.asn), ev.time_ms);
                if !s.asns.contains(&p.asn) && s.asns.len() < MAX_NETWORKS {
                    push_capped(&mut s.asns, p.asn, MAX_NETWORKS);
                }
            }
            if let Some(i) = s.places.iter().position(|q| q.same_as(&p, same_km)) {
                let mut q = s.places.remove(i);
                q.last_seen = q.last_seen.max(ev.time_ms);
                s.places.push(q);
            } else {
                if s.places.len() >= MAX_PLACES {
                    s.places.remove(0);
                }
                push_capped(&mut s.places, p, MAX_PLACES);
            }
            s.set_last_place(p);
        }
        if !ev.scopes.is_empty() {
            let r = s.rare_mut();
            let until = *r
                .baseline_until
                .get_or_insert(ev.time_ms + scope_baseline_ms);
            if ev.time_ms <= until {
                for sc in &ev.scopes {
                    if r.baseline_scopes.len() < MAX_SCOPES
                        && !r.baseline_scopes.iter().any(|b| **b == **sc)
                    {
                        r.baseline_scopes.push(sc.as_str().into());
                    }
                }
            }
        }
        if s.app.is_none() {
            s.app = ev.app.as_deref().map(|a| self.strings.get(a));
        }
        let first_device = s.device().unwrap_or(0);
        s.last_endpoint
            .assign(ev, obs.device, first_device, &mut self.strings);
        Some((s.ended_at(), s.revoked))
    }

    /// Teaches the user's baseline: sessions started, and the countries, networks and
    /// devices of successful events (not MFA answers from the authenticator) on sessions
    /// nothing was found on and not revoked (`revoked`, from [`Engine::update_session`]).
    fn update_user(
        &mut self,
        ev: &SessionEvent,
        obs: &Observation,
        new_session: bool,
        revoked: bool,
    ) {
        use crate::users::UserBaseline;
        let uid = ev.user_id.as_str();
        let Some((u, first)) = self.users.get_or_insert_with(uid, || {
            (
                uid.into(),
                Box::new(UserBaseline {
                    first_seen: ev.time_ms,
                    last_seen: ev.time_ms,
                    ..Default::default()
                }),
            )
        }) else {
            return;
        };
        // The baseline is written to the changelog when it learned something, and otherwise
        // at most once per `user_write_every_ms` of `last_seen` (all its expiry reads): most
        // events teach it nothing and need not rewrite it. A restored baseline's `last_seen`
        // may be that much old, which moves its idle expiry at most 1% of `user_ttl` earlier.
        let mut changed = first || new_period(u.last_seen, ev.time_ms, self.user_write_every_ms);
        u.last_seen = u.last_seen.max(ev.time_ms);
        if new_session {
            u.sessions = u.sessions.saturating_add(1);
            changed = true;
        }
        // Only events nothing was found on teach: an attacker's network or place must not
        // become familiar through the very events that exposed it.
        let suspect = !self.findings.is_empty() || revoked;
        if ev.success && ev.kind != EventKind::Mfa && !suspect {
            if let Some(p) = obs.place {
                if let Some((lat, lon)) = p.coords() {
                    changed |= UserBaseline::learn(&mut u.places, crate::users::cell(lat, lon));
                }
                if p.country != 0 {
                    changed |= UserBaseline::learn(&mut u.countries, p.country);
                }
                if p.asn != 0 {
                    changed |= UserBaseline::learn(&mut u.asns, p.asn);
                }
            }
            if let Some(d) = obs.device {
                changed |= UserBaseline::learn(&mut u.devices, d);
            }
        }
        if self.tracking && changed {
            self.dirty.insert(StateKey::User(uid.into()));
        }
    }

    /// Updates the token tables (`ended`: when the event's session ended, if it has, from
    /// [`Engine::update_session`]); returns whether the event's token binding changed enough
    /// to be written to the changelog: created, ended, or its `last_seen` into a new
    /// `token_write_every_ms` period (as user baselines: most uses of a token change nothing
    /// but its `last_seen`, which only its idle expiry reads).
    fn update_tokens(&mut self, ev: &SessionEvent, obs: &Observation, ended: Option<i64>) -> bool {
        let every = self.token_write_every_ms;
        let mut changed = false;
        if let Some(t) = ev.token {
            match self.tokens.get_mut(&t) {
                Some(b) => {
                    changed = new_period(b.last_seen, ev.time_ms, every);
                    b.last_seen = b.last_seen.max(ev.time_ms);
                    if *b.session_id == *ev.session_id && ended.is_some() && b.ended_at.is_none() {
                        b.ended_at = ended.into();
                        changed = true;
                    }
                }
                None if ev.success => {
                    changed = true;
                    self.tokens.insert(
                        t,
                        TokenBinding {
                            session_id: ev.session_id.as_str().into(),
                            device: obs.device.unwrap_or(0),
                            ua: obs.ua,
                            first_seen: ev.time_ms,
                            last_seen: ev.time_ms,
                            ended_at: ended.into(),
                            exposed_at: OptTime::NONE,
                        },
                    );
                }
                None => {}
            }
        }
        if ev.kind.ends_session() {
            // Tokens of an ended session stay bound so later use is caught as replay; their
            // bindings learn the end time as they are next seen, and this session's own
            // token (if the event names it) learns it now.
            if let Some(t) = ev.token
                && let Some(b) = self.tokens.get_mut(&t)
                && b.ended_at.is_none()
            {
                b.ended_at = Some(ev.time_ms).into();
                changed = true;
            }
        }
        if !ev.success {
            return changed;
        }
        if ev.kind == EventKind::TokenRefreshed
            && let Some(r) = ev.refresh_token
        {
            let rotated = ev.new_refresh_token.is_some();
            match self.refresh.get_mut(&r) {
                Some(st) => {
                    st.last_seen = st.last_seen.max(ev.time_ms);
                    if rotated && st.redeemed_at.is_none() {
                        st.redeemed_at = Some(ev.time_ms).into();
                        st.redeemed_device = obs.device.unwrap_or(0);
                        st.redeemed_ip = obs.ip.unwrap_or(0);
                    }
                }
                None => {
                    self.refresh.insert(
                        r,
                        RefreshState {
                            session_id: ev.session_id.as_str().into(),
                            redeemed_at: rotated.then_some(ev.time_ms).into(),
                            redeemed_device: obs.device.unwrap_or(0),
                            redeemed_ip: obs.ip.unwrap_or(0),
                            first_seen: ev.time_ms,
                            last_seen: ev.time_ms,
                        },
                    );
                }
            }
        }
        if let Some(n) = ev.new_refresh_token
            && self.refresh.get(&n).is_none()
        {
            self.refresh.insert(
                n,
                RefreshState {
                    session_id: ev.session_id.as_str().into(),
                    redeemed_at: OptTime::NONE,
                    redeemed_device: 0,
                    redeemed_ip: 0,
                    first_seen: ev.time_ms,
                    last_seen: ev.time_ms,
                },
            );
        }
        changed
    }
}

/// How often (event time) state that changed only its `last_seen` is rewritten to the
/// changelog: a hundredth of the TTL its expiry reads it for, between a minute and an hour.
fn rewrite_period(ttl_ms: i64) -> i64 {
    (ttl_ms / 100).clamp(60_000, 3_600_000)
}

/// Whether `now` moves a `last_seen` into a later period of `every` ms (counted from the
/// epoch): when state that changed nothing else is due to be rewritten.
fn new_period(last_seen: i64, now: i64, every: i64) -> bool {
    now > last_seen && last_seen.div_euclid(every) != now.div_euclid(every)
}

/// The first event time at which `st` is past its type's age or idle limit, if the type has
/// either.
fn lifetime_due(g: &GovernanceConfig, st: &SessionState) -> Option<i64> {
    let pol = g.policy(st.identity.unwrap_or(IdentityType::Human));
    // Past a limit means beyond it: a millisecond after `first_seen + max`.
    let after = |t: i64, max: HumanDuration| t.saturating_add(max.ms()) + 1;
    let age = pol.max_session_age.map(|m| after(st.first_seen, m));
    let idle = pol.max_idle.map(|m| after(st.last_seen, m));
    match (age, idle) {
        (Some(a), Some(i)) => Some(a.min(i)),
        (a, i) => a.or(i),
    }
}

/// The age or idle limit `st` is past at `now`, if any: the limit, the session's identity
/// type, how far it went (its age or idle time, ms) and the limit's value.
pub(crate) fn past_lifetime(
    g: &GovernanceConfig,
    st: &SessionState,
    now: i64,
) -> Option<(Limit, IdentityType, i64, HumanDuration)> {
    let ty = st.identity.unwrap_or(IdentityType::Human);
    let pol = g.policy(ty);
    let (age, idle) = (now - st.first_seen, now - st.last_seen);
    if let Some(max) = pol.max_session_age
        && age > max.ms()
    {
        Some((Limit::SessionAge, ty, age, max))
    } else if let Some(max) = pol.max_idle
        && idle > max.ms()
    {
        Some((Limit::Idle, ty, idle, max))
    } else {
        None
    }
}

/// Which lifetime limit a session broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Limit {
    SessionAge,
    Idle,
    TokenLifetime,
    Scopes,
}

impl Limit {
    /// The rule name in revocations: `policy.<type>.<limit>`.
    pub(crate) fn rule(self, ty: IdentityType) -> &'static str {
        use IdentityType::{Agent, Human, Workload};
        match (ty, self) {
            (Human, Limit::SessionAge) => "policy.human.max_session_age",
            (Human, Limit::Idle) => "policy.human.max_idle",
            (Human, Limit::TokenLifetime) => "policy.human.max_token_lifetime",
            (Human, Limit::Scopes) => "policy.human.allowed_scopes",
            (Workload, Limit::SessionAge) => "policy.workload.max_session_age",
            (Workload, Limit::Idle) => "policy.workload.max_idle",
            (Workload, Limit::TokenLifetime) => "policy.workload.max_token_lifetime",
            (Workload, Limit::Scopes) => "policy.workload.allowed_scopes",
            (Agent, Limit::SessionAge) => "policy.agent.max_session_age",
            (Agent, Limit::Idle) => "policy.agent.max_idle",
            (Agent, Limit::TokenLifetime) => "policy.agent.max_token_lifetime",
            (Agent, Limit::Scopes) => "policy.agent.allowed_scopes",
        }
    }
}

/// The rule name of a lifecycle revocation.
fn lifecycle_rule(change: vigil_model::LifecycleChange) -> &'static str {
    use vigil_model::LifecycleChange as L;
    match change {
        L::Deactivated => "lifecycle.deactivated",
        L::Suspended => "lifecycle.suspended",
        L::Deleted => "lifecycle.deleted",
        L::PasswordReset => "lifecycle.password_reset",
        L::MfaReset => "lifecycle.mfa_reset",
        L::CredentialsChanged => "lifecycle.credentials_changed",
    }
}

/// Writes an IPv4 address as `Ipv4Addr`'s `Display` does (dotted decimal, no padding) into
/// `buf`; returns its length.
fn ipv4_text(octets: [u8; 4], buf: &mut [u8]) -> usize {
    let mut n = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + (o / 10) % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_model::adapters::{AdapterContext, InputFormat, parse_record};

    #[test]
    fn ipv4_text_is_what_display_writes() {
        let mut buf = [0u8; 64];
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 42, 128, 255] {
                let ip = std::net::Ipv4Addr::new(a, b, 255 - b, a / 3);
                let n = ipv4_text(ip.octets(), &mut buf);
                assert_eq!(std::str::from_utf8(&buf[..n]), Ok(ip.to_string().as_str()));
            }
        }
    }

    fn event(ctx: &AdapterContext, session: usize, seq: usize, minute: i64) -> SessionEvent {
        let line = format!(
            r#"{{"id":"e{seq}","time":{},"kind":"access","session_id":"s{session}","user_id":"u{session}","ip":"81.2.69.10"}}"#,
            1_714_550_400_000i64 + minute * 60_000
        );
        parse_record(line.as_bytes(), InputFormat::Native, ctx).expect("valid")
    }

    /// An engine whose sessions expire after 5 idle minutes, holding `n` sessions seen at
    /// minute 0.
    fn five_minutes_idle_with(ctx: &AdapterContext, n: usize) -> Engine {
        let mut cfg = EngineConfig::default();
        cfg.state.idle_ttl = crate::config::HumanDuration::secs(300);
        let mut engine = Engine::new(&cfg).expect("valid");
        let mut out = Output::default();
        for s in 0..n {
            engine.process(&event(ctx, s, s, 0), &mut out).expect("ok");
        }
        engine
    }

    /// Expiry takes a few entries per event, a chunk at a time, never a whole table at once,
    /// and in the end expires every idle session.
    #[test]
    fn expiry_goes_a_chunk_at_a_time_then_expires_everything_idle() {
        let ctx = AdapterContext::new(b"k");
        let n = 10_000;
        let mut engine = five_minutes_idle_with(&ctx, n);
        let mut out = Output::default();
        assert_eq!(engine.live_sessions(), n);
        // Events from one session, from 6 minutes on: the others are idle, and no event
        // expires more than the chunk its predecessors paid for.
        let (mut most, mut expiring_events) = (0, 0);
        for i in 0..5000 {
            let before = engine.live_sessions();
            engine
                .process(&event(&ctx, 0, n + i, 6 + i as i64 / 10), &mut out)
                .expect("ok");
            let gone = before - engine.live_sessions();
            most = most.max(gone);
            expiring_events += usize::from(gone > 0);
        }
        assert!(most <= SWEEP_CHUNK, "an event expired {most} sessions");
        assert!(
            expiring_events >= 2,
            "expiry came in {expiring_events} goes"
        );
        assert_eq!(engine.live_sessions(), 1, "only the active session is left");
    }

    /// The expiry pass looks at fewer entries per event when event time passes slowly per
    /// event, enough to finish within a sixteenth of the shortest TTL, and never more than
    /// [`SWEEP_COST_PER_EVENT`].
    #[test]
    fn the_expiry_pass_paces_itself_by_event_time() {
        let day = 86_400_000;
        // A million entries, 100,000 events a second of event time, a 12-hour TTL: one each.
        assert_eq!(sweep_pace(1_000_000, 1_000, 100_000, day / 2), 1);
        // A hundred events a second: 16 * 1e6 * 10 ms / 12 h = 3.7, so four.
        assert_eq!(sweep_pace(1_000_000, 1_000, 100, day / 2), 4);
        // Slower still, or a short TTL: the most.
        assert_eq!(
            sweep_pace(1_000_000, 1_000, 10, day / 2),
            SWEEP_COST_PER_EVENT
        );
        assert_eq!(sweep_pace(10, 60_000, 1, 300_000), SWEEP_COST_PER_EVENT);
        // No events since the last pass (one the clock of a quiet partition started): the
        // pace is not known, so the most; no event time passed: the least.
        assert_eq!(sweep_pace(1_000, 60_000, 0, day), SWEEP_COST_PER_EVENT);
        assert_eq!(sweep_pace(1_000, 0, 1_000, day), 1);

        // In the engine: 10,000 sessions with a 12-hour idle TTL and events 1 ms of event
        // time apart; the second pass is paced at one entry per event, and the pass still
        // ends (the strings no session holds are purged when it does).
        let ctx = AdapterContext::new(b"k");
        let mut engine = Engine::new(&EngineConfig::default()).expect("valid");
        let mut out = Output::default();
        let start = 1_714_550_400_000i64;
        let at = |s: usize, seq: usize, ms: i64| {
            let line = format!(
                r#"{{"id":"e{seq}","time":{},"kind":"access","session_id":"s{s}","user_id":"u{s}"}}"#,
                start + ms
            );
            parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid")
        };
        assert_eq!(engine.sweep_cost, SWEEP_COST_PER_EVENT);
        let mut seq = 0;
        while engine.sweep_started.0 < start + SWEEP_EVERY_MS {
            engine
                .process(&at(seq % 10_000, seq, seq as i64), &mut out)
                .expect("ok");
            seq += 1;
        }
        assert_eq!(engine.sweep_cost, 1, "paced after {seq} events");
        let first = engine.sweep_started.0;
        while engine.sweeping.is_some() {
            engine
                .process(&at(seq % 10_000, seq, seq as i64), &mut out)
                .expect("ok");
            seq += 1;
        }
        assert_eq!(engine.sweep_started.0, first, "the same pass ended");
        // A clock slow for the TTL (a minute of event time per event, a minute's idle TTL)
        // takes the most again.
        let mut cfg = EngineConfig::default();
        cfg.state.idle_ttl = crate::config::HumanDuration::secs(60);
        let mut engine = Engine::new(&cfg).expect("valid");
        for i in 0..3 {
            engine
                .process(&at(i, i, i as i64 * SWEEP_EVERY_MS), &mut out)
                .expect("ok");
        }
        assert_eq!(engine.sweep_cost, SWEEP_COST_PER_EVENT);
    }

    /// An engine whose humans may idle 10 minutes and whose workloads may live 30.
    fn with_lifetimes() -> Engine {
        let cfg: EngineConfig = toml::from_str(
            "[governance.identity]\nworkload_users = [\"svc-*\"]\n[governance.human]\nmax_idle = \"10m\"\n[governance.workload]\nmax_session_age = \"30m\"\n",
        )
        .expect("config");
        Engine::new(&cfg).expect("valid")
    }

    fn session_event(
        ctx: &AdapterContext,
        sid: &str,
        user: &str,
        seq: usize,
        ms: i64,
    ) -> SessionEvent {
        let line = format!(
            r#"{{"id":"e{seq}","time":{},"kind":"access","session_id":"{sid}","user_id":"{user}","ip":"81.2.69.10"}}"#,
            1_714_550_400_000i64 + ms
        );
        parse_record(line.as_bytes(), InputFormat::Native, ctx).expect("valid")
    }

    /// The lifetime queue revokes exactly the sessions a look at every session finds past
    /// their limits, whenever it is asked, with sessions of both types used at scattered
    /// times in between.
    #[test]
    fn the_lifetime_queue_finds_what_a_full_scan_finds() {
        let ctx = AdapterContext::new(b"k");
        let mut engine = with_lifetimes();
        let mut out = Output::default();
        let mut seq = 0;
        let mut revoked = std::collections::BTreeSet::new();
        for step in 0..120i64 {
            let now = step * 30_000;
            // A few sessions used at this step: the same ones come back at varying gaps.
            for k in 0..5i64 {
                let n = (step * 7 + k * 13) % 40;
                // Half the humans go quiet after 20 minutes.
                if n % 4 != 0 && n < 20 && step > 40 {
                    continue;
                }
                let (sid, user) = if n % 4 == 0 {
                    (format!("w{n}"), format!("svc-{n}"))
                } else {
                    (format!("h{n}"), format!("user{n}"))
                };
                seq += 1;
                let _ = engine.process(&session_event(&ctx, &sid, &user, seq, now), &mut out);
            }
            out.clear();
            let t = 1_714_550_400_000i64 + now + 15_000;
            // What a look at every live session finds past its limit now.
            let mut expected: Vec<String> = engine
                .sessions
                .iter()
                .filter(|(_, st)| !st.revoked && st.ended_at().is_none())
                .filter(|(_, st)| past_lifetime(&engine.governance, st, t).is_some())
                .map(|(id, _)| id.to_string())
                .collect();
            expected.sort();
            engine.on_tick(t, &mut out);
            let got: Vec<String> = out.revocations.iter().map(|r| format!("{r:?}")).collect();
            assert_eq!(got.len(), expected.len(), "at {t}: {expected:?} {got:?}");
            for (g, e) in got.iter().zip(&expected) {
                assert!(g.contains(e.as_str()), "{g} is not {e}");
            }
            revoked.extend(expected);
            out.clear();
        }
        assert!(
            revoked.iter().any(|s| s.starts_with('w'))
                && revoked.iter().any(|s| s.starts_with('h')),
            "both limits revoked sessions: {revoked:?}"
        );
    }

    /// Sessions read back from the changelog are under their limits as before.
    #[test]
    fn restored_sessions_are_queued_for_their_lifetimes() {
        let ctx = AdapterContext::new(b"k");
        let mut a = with_lifetimes();
        a.track_changes();
        let mut out = Output::default();
        for (i, sid) in ["h1", "h2", "w1"].into_iter().enumerate() {
            let user = if sid.starts_with('w') {
                "svc-a"
            } else {
                "alice"
            };
            a.process(&session_event(&ctx, sid, user, i, 0), &mut out)
                .expect("ok");
        }
        let mut records = Vec::new();
        a.drain_changes(&mut records);
        let mut b = with_lifetimes();
        for (k, v) in records {
            b.restore(k, v);
        }
        // 11 minutes on: both humans idle past 10 minutes; the workload has 19 minutes left.
        let t = 1_714_550_400_000i64 + 11 * 60_000;
        b.on_tick(t, &mut out);
        assert_eq!(out.revocations.len(), 2, "{:?}", out.revocations);
        out.clear();
        b.on_tick(t + 20 * 60_000, &mut out);
        assert_eq!(out.revocations.len(), 1, "the workload at 31 minutes");
    }

    /// Sessions that leave the table leave their queue entries behind; the queue is built
    /// again before they outnumber the live sessions by much.
    #[test]
    fn the_lifetime_queue_stays_bounded_by_the_sessions_held() {
        let ctx = AdapterContext::new(b"k");
        let cfg: EngineConfig = toml::from_str(
            "[state]\nmax_sessions = 100\n[governance.human]\nmax_session_age = \"12h\"\n",
        )
        .expect("config");
        let mut engine = Engine::new(&cfg).expect("valid");
        let mut out = Output::default();
        let mut most = 0;
        for i in 0..20_000usize {
            let sid = format!("s{i}");
            engine
                .process(&session_event(&ctx, &sid, "u", i, i as i64), &mut out)
                .expect("ok");
            out.clear();
            most = most.max(engine.lifetimes.len());
        }
        assert!(engine.sessions.len() <= 100);
        assert!(most <= 2 * 100 + 1024 + 1, "the queue held {most}");
    }

    /// An account change revokes exactly the live sessions of the user that a look at every
    /// session finds, while sessions churn through a full table (capacity evictions), some
    /// end, and ids come back after they left.
    #[test]
    fn account_changes_find_every_live_session_of_the_user() {
        let ctx = AdapterContext::new(b"k");
        let cfg: EngineConfig = toml::from_str("[state]\nmax_sessions = 50\n").expect("config");
        let mut engine = Engine::new(&cfg).expect("valid");
        let mut out = Output::default();
        let mut x = 12345u64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut seq = 0;
        let mut revoked = 0;
        for round in 0..40 {
            for _ in 0..100 {
                seq += 1;
                let (sid, user) = (format!("s{}", next(400)), format!("u{}", next(10)));
                let kind = if next(10) == 0 { "logout" } else { "access" };
                let line = format!(
                    r#"{{"id":"e{seq}","time":{},"kind":"{kind}","session_id":"{sid}","user_id":"{user}"}}"#,
                    1_714_550_400_000i64 + seq
                );
                let ev = parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid");
                let _ = engine.process(&ev, &mut out);
            }
            out.clear();
            let user = format!("u{}", round % 10);
            let mut expected: Vec<String> = engine
                .sessions
                .iter()
                .filter(|(_, s)| *s.user_id == *user && !s.revoked && s.ended_at().is_none())
                .map(|(k, _)| k.to_string())
                .collect();
            expected.sort();
            seq += 1;
            let line = format!(
                r#"{{"id":"e{seq}","time":{},"kind":"user_lifecycle","user_id":"{user}","lifecycle":"password_reset"}}"#,
                1_714_550_400_000i64 + seq
            );
            let ev = parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid");
            engine.process(&ev, &mut out).expect("ok");
            let got: Vec<String> = out.revocations.iter().map(|r| format!("{r:?}")).collect();
            assert_eq!(got.len(), expected.len(), "{user}: {expected:?} {got:?}");
            for (g, e) in got.iter().zip(&expected) {
                assert!(g.contains(&format!("session {e} ")), "{g} is not {e}");
            }
            revoked += got.len();
            out.clear();
            assert!(engine.user_sessions_len <= 2 * engine.sessions.len() + 1024 + 1);
        }
        assert!(revoked > 20, "{revoked} sessions revoked in all");
    }

    /// Sessions read back from the changelog are found by an account change.
    #[test]
    fn account_changes_find_restored_sessions() {
        let ctx = AdapterContext::new(b"k");
        let mut a = Engine::new(&EngineConfig::default()).expect("valid");
        a.track_changes();
        let mut out = Output::default();
        for (i, (sid, user)) in [
            ("a1", "alice"),
            ("b1", "bob"),
            ("a2", "alice"),
            ("a3", "alice"),
        ]
        .into_iter()
        .enumerate()
        {
            a.process(&session_event(&ctx, sid, user, i, 0), &mut out)
                .expect("ok");
        }
        let mut records = Vec::new();
        a.drain_changes(&mut records);
        let mut b = Engine::new(&EngineConfig::default()).expect("valid");
        for (k, v) in records {
            b.restore(k, v);
        }
        let line = r#"{"id":"lc","time":1714550401000,"kind":"user_lifecycle","user_id":"alice","lifecycle":"deactivated"}"#;
        let ev = parse_record(line.as_bytes(), InputFormat::Native, &ctx).expect("valid");
        b.process(&ev, &mut out).expect("ok");
        assert_eq!(out.revocations.len(), 3, "{:?}", out.revocations);
    }

    /// A quiet partition's ticks expire idle state too, a bounded number of entries each.
    #[test]
    fn ticks_expire_idle_state() {
        let ctx = AdapterContext::new(b"k");
        let mut engine = five_minutes_idle_with(&ctx, 1000);
        let mut out = Output::default();
        let now = 1_714_550_400_000i64 + 10 * 60_000;
        engine.on_tick(now, &mut out);
        assert_eq!(engine.live_sessions(), 0);
        assert_eq!(engine.evictions().idle, 1000);
    }

    /// Reading ahead changes nothing: the sample records, with and without each one's state
    /// read while the one before it is processed, give the same alerts, revocations and
    /// changelog.
    #[test]
    fn prefetch_changes_nothing() {
        let ctx = AdapterContext::new(b"k");
        let text = include_str!("../../../tests/data/samples/native.jsonl");
        let events: Vec<SessionEvent> = text
            .lines()
            .map(|l| parse_record(l.as_bytes(), InputFormat::Native, &ctx).expect("valid"))
            .collect();
        let run = |ahead: bool| {
            let mut engine = Engine::new(&EngineConfig::default()).expect("valid");
            engine.track_changes();
            let (mut out, mut seen, mut changes) = (Output::default(), Vec::new(), Vec::new());
            let mut read = 0;
            for (i, ev) in events.iter().enumerate() {
                if ahead && let Some(next) = events.get(i + 1) {
                    read += engine.prefetch(next);
                }
                let _ = engine.process(ev, &mut out);
                seen.push(format!("{:?} {:?}", out.alerts, out.revocations));
                out.clear();
            }
            engine.drain_changes(&mut changes);
            (seen, format!("{changes:?}"), read)
        };
        let (plain, ahead) = (run(false), run(true));
        assert!(
            plain.0.iter().any(|o| o.contains("Revoke")),
            "the samples revoke"
        );
        assert_ne!(ahead.2, 0, "the read-ahead found state to read");
        assert_eq!(plain.0, ahead.0);
        assert_eq!(plain.1, ahead.1);
    }
}
