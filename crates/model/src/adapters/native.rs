//! Vigil's native JSON schema, `schemas/session-event.v1.json`.
//!
//! The schema API gateways and custom emitters write to. Tokens arrive as identifiers
//! (`token_id`, such as a JWT `jti`), hashed here with the deployment key, or as keyed hashes
//! computed upstream (`token_hash`); raw bearer values are not part of the schema.

use super::json::Value;

use super::json::{
    get, opt_bool, opt_f64, opt_id, opt_ip, opt_str, opt_u32, req_str, req_time, scopes,
};
use super::{AdapterContext, token_field};
use crate::event::{EventKind, Geo, IdentityType, LifecycleChange, SessionEvent, SourceFormat};
use crate::reject::{RejectReason, Rejection};

/// Whether a record looks like the native schema: `kind` plus either id, so a record that
/// lacks one of them is rejected for that field rather than as an unknown format.
pub fn detect(v: &Value) -> bool {
    v.get("kind").is_some()
        && (v.get("session_id").is_some()
            || v.get("user_id").is_some()
            || v.get("token_hash").is_some()
            || v.get("token_id").is_some())
}

/// Maps one native record.
pub fn parse(v: &Value, ctx: &AdapterContext) -> Result<SessionEvent, Rejection> {
    let kind_str = req_str(v, &["kind"], "kind")?;
    let kind = EventKind::parse(kind_str).ok_or_else(|| {
        Rejection::field(
            RejectReason::InvalidValue,
            "kind",
            format!(
                "field kind has unknown value {:?}",
                super::json::clip(kind_str, 40)
            ),
        )
    })?;
    let geo = Geo {
        country: opt_str(v, &["geo", "country"], "geo.country")?.map(str::to_owned),
        city: opt_str(v, &["geo", "city"], "geo.city")?.map(str::to_owned),
        lat: opt_f64(v, &["geo", "lat"], "geo.lat")?,
        lon: opt_f64(v, &["geo", "lon"], "geo.lon")?,
        accuracy_km: opt_u32(v, &["geo", "accuracy_km"], "geo.accuracy_km")?,
        asn: opt_u32(v, &["asn"], "asn")?,
        as_org: opt_str(v, &["as_org"], "as_org")?.map(str::to_owned),
        is_proxy: opt_bool(v, &["is_proxy"], "is_proxy")?,
    };
    if get(v, &["geo"]).is_some_and(|g| !g.is_object()) {
        return Err(Rejection::wrong_type("geo", "an object"));
    }
    let identity_type = match opt_str(v, &["identity_type"], "identity_type")? {
        Some(t) => Some(IdentityType::parse(t).ok_or_else(|| {
            Rejection::field(
                RejectReason::InvalidValue,
                "identity_type",
                format!(
                    "field identity_type has unknown value {:?} (human, workload or agent)",
                    super::json::clip(t, 40)
                ),
            )
        })?),
        None => None,
    };
    let lifecycle = match opt_str(v, &["lifecycle"], "lifecycle")? {
        Some(c) => Some(LifecycleChange::parse(c).ok_or_else(|| {
            Rejection::field(
                RejectReason::InvalidValue,
                "lifecycle",
                format!(
                    "field lifecycle has unknown value {:?}",
                    super::json::clip(c, 40)
                ),
            )
        })?),
        None if kind == EventKind::UserLifecycle => {
            return Err(Rejection::missing("lifecycle"));
        }
        None => None,
    };
    // Account changes concern a user and exposures a token, wherever their sessions live.
    let session_id = if kind.is_session_event() {
        req_str(v, &["session_id"], "session_id")?.to_owned()
    } else {
        opt_str(v, &["session_id"], "session_id")?
            .unwrap_or_default()
            .to_owned()
    };
    let user_id = if kind == EventKind::TokenExposed {
        opt_str(v, &["user_id"], "user_id")?
            .unwrap_or_default()
            .to_owned()
    } else {
        req_str(v, &["user_id"], "user_id")?.to_owned()
    };
    let token = token_field(v, ctx, "token_id", "token_hash")?;
    if kind == EventKind::TokenExposed && token.is_none() {
        return Err(Rejection::missing("token_hash"));
    }
    Ok(SessionEvent {
        time_ms: req_time(v, &["time"], "time")?,
        kind,
        success: opt_bool(v, &["success"], "success")?.unwrap_or(true),
        session_id,
        root_session_id: opt_str(v, &["root_session_id"], "root_session_id")?.map(str::to_owned),
        parent_session_id: opt_str(v, &["parent_session_id"], "parent_session_id")?
            .map(str::to_owned),
        user_id,
        tenant: opt_str(v, &["tenant"], "tenant")?.map(str::to_owned),
        ip: opt_ip(v, &["ip"], "ip")?,
        user_agent: opt_str(v, &["user_agent"], "user_agent")?.map(str::to_owned),
        device_id: opt_id(v, &["device_id"], "device_id")?,
        token,
        refresh_token: token_field(v, ctx, "refresh_token_id", "refresh_token_hash")?,
        new_refresh_token: token_field(v, ctx, "new_refresh_token_id", "new_refresh_token_hash")?,
        scopes: scopes(v, &["scopes"], "scopes")?,
        app: opt_str(v, &["app"], "app")?.map(str::to_owned),
        client_id: opt_str(v, &["client_id"], "client_id")?.map(str::to_owned),
        geo,
        source: SourceFormat::Native,
        source_id: req_str(v, &["id"], "id")?.to_owned(),
        identity_type,
        lifecycle,
        found_in: opt_str(v, &["found_in"], "found_in")?.map(str::to_owned),
        event_name: opt_str(v, &["event"], "event")?.map(str::to_owned),
    })
}

/// The fast path for well-formed native records: one typed pass over the bytes, borrowing
/// strings from the input, instead of building a JSON tree first.
///
/// It answers only when it is sure: `Some` holds exactly what [`parse`] would return for the
/// record; anything unusual (a wrong type, a quoted number, a float id, a bad timestamp, an
/// unknown `kind`, a missing field, a duplicate key, a record that is not native) gives
/// `None`, and the caller takes the general path, which names the fault.
pub fn parse_fast(text: &str, ctx: &AdapterContext) -> Option<SessionEvent> {
    let mut ev = SessionEvent::empty(SourceFormat::Native);
    parse_fast_into(text, ctx, &mut ev).then_some(ev)
}

/// [`parse_fast`] into `ev`, reusing the allocations of the strings `ev` holds: a partition
/// reading records into the same few events allocates nothing for a record whose strings fit
/// where the previous record's were. Every field is written from this record alone (the old
/// strings are only buffers). On `false`, `ev` holds no particular event.
pub fn parse_fast_into(text: &str, ctx: &AdapterContext, ev: &mut SessionEvent) -> bool {
    let mut old = std::mem::replace(ev, SessionEvent::empty(SourceFormat::Native));
    let mut r = super::scan::Reader::new(text);
    match fast::record(&mut r, ev, &mut old, ctx) {
        Some(facts) => r.end() && facts.finish(ev),
        None => false,
    }
}

/// The typed pass [`parse_fast_into`] makes, over [`super::scan::Reader`]. Every field is
/// optional (`null` is absent, as in the general path, and so is an empty string); a value of
/// another type, a repeated key or a value the general path would refuse fails the whole pass.
mod fast {
    use std::borrow::Cow;

    use super::AdapterContext;
    use crate::adapters::scan::{MAX_DEPTH, Num, Reader};
    use crate::event::{EventKind, Geo, IdentityType, LifecycleChange, SessionEvent};
    use crate::token::TokenHash;

    /// What the pass learned that is checked or combined once the whole record is read.
    #[derive(Default)]
    pub struct Facts {
        kind: Option<EventKind>,
        time_ms: Option<i64>,
        success: Option<bool>,
        // Per token: the hashed identifier, and the given hash (`Some(None)`: present but
        // not a valid digest).
        tokens: [(Option<TokenHash>, Option<Option<TokenHash>>); 3],
        identity_type: Option<IdentityType>,
        lifecycle: Option<LifecycleChange>,
    }

    impl Facts {
        /// The checks [`super::parse`] makes, on the record read into `ev`.
        pub fn finish(self, ev: &mut SessionEvent) -> bool {
            let Some(kind) = self.kind else { return false };
            // Detection as `detect` decides it (present, non-empty ids only).
            let (token_id, token_hash) = &self.tokens[0];
            if ev.session_id.is_empty()
                && ev.user_id.is_empty()
                && token_id.is_none()
                && token_hash.is_none()
            {
                return false;
            }
            // As `token_field`: the identifier hashed, else the given hash, which must be valid.
            let mut hashes = [None; 3];
            for (out, (id, hash)) in hashes.iter_mut().zip(self.tokens) {
                *out = match (id, hash) {
                    (Some(h), _) | (None, Some(Some(h))) => Some(h),
                    (None, Some(None)) => return false,
                    (None, None) => None,
                };
            }
            let [token, refresh_token, new_refresh_token] = hashes;
            if (kind == EventKind::UserLifecycle && self.lifecycle.is_none())
                || (kind.is_session_event() && ev.session_id.is_empty())
                || (kind != EventKind::TokenExposed && ev.user_id.is_empty())
                || (kind == EventKind::TokenExposed && token.is_none())
                || ev.source_id.is_empty()
            {
                return false;
            }
            let Some(time_ms) = self.time_ms.filter(|t| crate::time::is_plausible(*t)) else {
                return false;
            };
            ev.time_ms = time_ms;
            ev.kind = kind;
            ev.success = self.success.unwrap_or(true);
            ev.token = token;
            ev.refresh_token = refresh_token;
            ev.new_refresh_token = new_refresh_token;
            ev.identity_type = self.identity_type;
            ev.lifecycle = self.lifecycle;
            true
        }
    }

    /// The index of a top-level key of the native schema (the bit it takes in the set of
    /// keys seen), `None` for a key the pass does not read.
    fn top_key(k: &str) -> Option<u8> {
        Some(match k {
            "id" => 0,
            "time" => 1,
            "kind" => 2,
            "success" => 3,
            "session_id" => 4,
            "root_session_id" => 5,
            "parent_session_id" => 6,
            "user_id" => 7,
            "tenant" => 8,
            "ip" => 9,
            "user_agent" => 10,
            "device_id" => 11,
            "token_id" => 12,
            "token_hash" => 13,
            "refresh_token_id" => 14,
            "refresh_token_hash" => 15,
            "new_refresh_token_id" => 16,
            "new_refresh_token_hash" => 17,
            "scopes" => 18,
            "app" => 19,
            "client_id" => 20,
            "geo" => 21,
            "asn" => 22,
            "as_org" => 23,
            "is_proxy" => 24,
            "identity_type" => 25,
            "lifecycle" => 26,
            "found_in" => 27,
            "event" => 28,
            _ => return None,
        })
    }

    /// The index of a key of `geo`.
    fn geo_key(k: &str) -> Option<u8> {
        Some(match k {
            "country" => 0,
            "city" => 1,
            "lat" => 2,
            "lon" => 3,
            "accuracy_km" => 4,
            _ => return None,
        })
    }

    /// The next member's key among those `keys` reads, the members of other keys skipped
    /// (checked as JSON, not decoded); a key met twice (`seen` holds the ones met) fails.
    /// `depth`: the containers open, this object's included.
    #[inline(always)]
    fn next_key(
        r: &mut Reader<'_>,
        first: &mut bool,
        keys: fn(&str) -> Option<u8>,
        seen: &mut u32,
        depth: u32,
    ) -> Option<Option<u8>> {
        while let Some(key) = r.key(first)? {
            let Some(k) = keys(&key) else {
                r.skip(MAX_DEPTH - depth)?;
                continue;
            };
            if *seen & (1 << k) != 0 {
                return None;
            }
            *seen |= 1 << k;
            return Some(Some(k));
        }
        Some(None)
    }

    /// A string or `null` (absent); any other value fails.
    #[inline(always)]
    fn text<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
        r.or_null(Reader::string)
    }

    /// A whole number in `u32`, as the general path takes it (`null`: absent).
    fn u32_of(r: &mut Reader<'_>) -> Option<Option<u32>> {
        match r.or_null(Reader::number)? {
            None => Some(None),
            Some(x) => crate::adapters::json::as_u32(x.as_f64()).map(Some),
        }
    }

    /// An id given as a string or an integer (rendered as the general path renders it);
    /// an empty string is absent. Floats are left to the general path.
    fn id<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
        match r.peek()? {
            b'"' => r.string().map(non_empty),
            b'n' => text(r),
            _ => match r.number()? {
                Num::U64(u) => Some(Some(Cow::Owned(u.to_string()))),
                Num::I64(i) => Some(Some(Cow::Owned(i.to_string()))),
                Num::F64(_) => None,
            },
        }
    }

    /// A string member read by `parse` (empty or `null`: absent); a value `parse` refuses
    /// fails.
    fn parsed<T>(r: &mut Reader<'_>, parse: impl FnOnce(&str) -> Option<T>) -> Option<Option<T>> {
        match text(r)?.and_then(non_empty) {
            Some(s) => parse(&s).map(Some),
            None => Some(None),
        }
    }

    fn non_empty(s: Cow<'_, str>) -> Option<Cow<'_, str>> {
        (!s.is_empty()).then_some(s)
    }

    /// Reads a string member into `slot` (empty: absent), in the buffer `spare` held.
    #[inline(always)]
    fn put(
        r: &mut Reader<'_>,
        slot: &mut Option<String>,
        spare: &mut Option<String>,
    ) -> Option<()> {
        let v = text(r)?.and_then(non_empty);
        *slot = v.map(|v| refill(spare.take().unwrap_or_default(), &v));
        Some(())
    }

    /// Reads a string member into `slot` (absent: empty), in the buffer `spare` held.
    #[inline(always)]
    fn put_string(r: &mut Reader<'_>, slot: &mut String, spare: &mut String) -> Option<()> {
        if let Some(v) = text(r)?.and_then(non_empty) {
            *slot = refill(std::mem::take(spare), &v);
        }
        Some(())
    }

    fn refill(mut buf: String, v: &str) -> String {
        buf.clear();
        buf.push_str(v);
        buf
    }

    /// The record's members, written into `ev` (strings into the buffers of `old`).
    pub fn record(
        r: &mut Reader<'_>,
        ev: &mut SessionEvent,
        old: &mut SessionEvent,
        ctx: &AdapterContext,
    ) -> Option<Facts> {
        let mut f = Facts::default();
        let mut seen = 0u32;
        let mut first = true;
        r.object()?;
        while let Some(k) = next_key(r, &mut first, top_key, &mut seen, 1)? {
            match k {
                0 => put_string(r, &mut ev.source_id, &mut old.source_id)?,
                1 => {
                    f.time_ms = match r.peek()? {
                        b'"' => Some(crate::time::parse_rfc3339(r.string()?.trim())?),
                        b'n' => r.null()?.then_some(None)?,
                        _ => Some(crate::adapters::json::epoch_to_ms(r.number()?.as_f64())?),
                    }
                }
                2 => f.kind = parsed(r, EventKind::parse)?,
                3 => f.success = r.or_null(Reader::boolean)?,
                4 => put_string(r, &mut ev.session_id, &mut old.session_id)?,
                5 => put(r, &mut ev.root_session_id, &mut old.root_session_id)?,
                6 => put(r, &mut ev.parent_session_id, &mut old.parent_session_id)?,
                7 => put_string(r, &mut ev.user_id, &mut old.user_id)?,
                8 => put(r, &mut ev.tenant, &mut old.tenant)?,
                9 => ev.ip = parsed(r, crate::adapters::json::parse_ip)?,
                10 => put(r, &mut ev.user_agent, &mut old.user_agent)?,
                11 => {
                    let id = id(r)?;
                    let spare = &mut old.device_id;
                    ev.device_id = id.map(|v| refill(spare.take().unwrap_or_default(), &v));
                }
                12 | 14 | 16 => {
                    f.tokens[usize::from(k - 12) / 2].0 = id(r)?.map(|id| ctx.hasher.hash(&id));
                }
                13 | 15 | 17 => {
                    f.tokens[usize::from(k - 13) / 2].1 = text(r)?
                        .and_then(non_empty)
                        .map(|h| TokenHash::from_hex(&h));
                }
                18 => {
                    ev.scopes = std::mem::take(&mut old.scopes);
                    scopes(r, &mut ev.scopes)?;
                }
                19 => put(r, &mut ev.app, &mut old.app)?,
                20 => put(r, &mut ev.client_id, &mut old.client_id)?,
                21 => geo(r, &mut ev.geo, &mut old.geo)?,
                22 => ev.geo.asn = u32_of(r)?,
                23 => put(r, &mut ev.geo.as_org, &mut old.geo.as_org)?,
                24 => ev.geo.is_proxy = r.or_null(Reader::boolean)?,
                25 => f.identity_type = parsed(r, IdentityType::parse)?,
                26 => f.lifecycle = parsed(r, LifecycleChange::parse)?,
                27 => put(r, &mut ev.found_in, &mut old.found_in)?,
                _ => put(r, &mut ev.event_name, &mut old.event_name)?,
            }
        }
        Some(f)
    }

    /// `geo`: an object (or `null`) of country, city, coordinates and radius.
    fn geo(r: &mut Reader<'_>, geo: &mut Geo, old: &mut Geo) -> Option<()> {
        if r.null()? {
            return Some(());
        }
        r.object()?;
        let mut seen = 0u32;
        let mut first = true;
        while let Some(k) = next_key(r, &mut first, geo_key, &mut seen, 2)? {
            match k {
                0 => put(r, &mut geo.country, &mut old.country)?,
                1 => put(r, &mut geo.city, &mut old.city)?,
                2 => geo.lat = r.or_null(Reader::number)?.map(Num::as_f64),
                3 => geo.lon = r.or_null(Reader::number)?.map(Num::as_f64),
                _ => geo.accuracy_km = u32_of(r)?,
            }
        }
        Some(())
    }

    /// Scopes as an array of strings or one space- or comma-separated string (or `null`),
    /// written over the strings `out` holds.
    fn scopes(r: &mut Reader<'_>, out: &mut Vec<String>) -> Option<()> {
        let mut n = 0;
        let mut set = |s: &str| {
            match out.get_mut(n) {
                Some(buf) => {
                    buf.clear();
                    buf.push_str(s);
                }
                None => out.push(s.to_owned()),
            }
            n += 1;
        };
        match r.peek()? {
            b'n' => {
                r.null()?;
            }
            b'"' => crate::adapters::json::scope_parts(&r.string()?).for_each(&mut set),
            _ => {
                r.array()?;
                let mut first = true;
                while r.element(&mut first)? {
                    let s = r.string()?;
                    let s = s.trim();
                    if !s.is_empty() {
                        set(s);
                    }
                }
            }
        }
        out.truncate(n);
        Some(())
    }
}
