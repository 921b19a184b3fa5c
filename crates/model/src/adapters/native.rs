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
    use serde::de::DeserializeSeed;
    let mut old = std::mem::replace(ev, SessionEvent::empty(SourceFormat::Native));
    let mut de = serde_json::Deserializer::from_str(text);
    let facts = match (fast::Top {
        ev: &mut *ev,
        old: &mut old,
        ctx,
    })
    .deserialize(&mut de)
    {
        Ok(f) => f,
        Err(_) => return false,
    };
    de.end().is_ok() && facts.finish(ev)
}

/// The typed pass [`parse_fast_into`] makes. Every field is optional (`null` is absent, as in
/// the general path, and so is an empty string); a value of another type, a repeated key or
/// a value the general path would refuse fails the whole pass.
mod fast {
    use std::borrow::Cow;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };

    use super::AdapterContext;
    use crate::event::{EventKind, Geo, IdentityType, LifecycleChange, SessionEvent};
    use crate::text::Text;
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

    /// The record's members, written into `ev` (strings into the buffers of `old`).
    pub struct Top<'a> {
        pub ev: &'a mut SessionEvent,
        pub old: &'a mut SessionEvent,
        pub ctx: &'a AdapterContext,
    }

    impl<'de> DeserializeSeed<'de> for Top<'_> {
        type Value = Facts;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Facts, D::Error> {
            d.deserialize_map(self)
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

    fn fail<E: de::Error>(what: &str) -> E {
        E::custom(what)
    }

    /// The next member's key among those `keys` reads, the members of other keys skipped
    /// (checked as JSON, not decoded); a key met twice (`seen` holds the ones met) fails.
    // Inlined into each loop: called out of line, the native parse read 4% slower in four
    // alternating pairs of bench runs.
    #[inline(always)]
    fn next_key<'de, A: MapAccess<'de>>(
        map: &mut A,
        keys: fn(&str) -> Option<u8>,
        seen: &mut u32,
    ) -> Result<Option<u8>, A::Error> {
        while let Some(key) = map.next_key_seed(Key(keys))? {
            let Some(k) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if *seen & (1 << k) != 0 {
                return Err(fail("duplicate key"));
            }
            *seen |= 1 << k;
            return Ok(Some(k));
        }
        Ok(None)
    }

    /// A string member read by `parse` (empty: absent); a value `parse` refuses fails.
    fn parse_as<T, E: de::Error>(
        v: Option<Text<'_>>,
        parse: impl FnOnce(&str) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>, E> {
        non_empty(v)
            .map(|s| parse(&s).ok_or_else(|| fail(what)))
            .transpose()
    }

    impl<'de> Visitor<'de> for Top<'_> {
        type Value = Facts;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a native record")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Facts, A::Error> {
            let Top { ev, old, ctx } = self;
            let mut f = Facts::default();
            let mut seen = 0u32;
            while let Some(k) = next_key(&mut map, top_key, &mut seen)? {
                match k {
                    0 => put_string(&mut ev.source_id, &mut old.source_id, map.next_value()?),
                    1 => {
                        f.time_ms = match map.next_value::<Option<Time<'de>>>()? {
                            None => None,
                            Some(Time::Text(t)) => Some(
                                crate::time::parse_rfc3339(t.trim()).ok_or_else(|| fail("time"))?,
                            ),
                            Some(Time::Number(x)) => Some(
                                crate::adapters::json::epoch_to_ms(x)
                                    .ok_or_else(|| fail("time"))?,
                            ),
                        }
                    }
                    2 => f.kind = parse_as(map.next_value()?, EventKind::parse, "kind")?,
                    3 => f.success = map.next_value()?,
                    4 => put_string(&mut ev.session_id, &mut old.session_id, map.next_value()?),
                    5 => put(
                        &mut ev.root_session_id,
                        &mut old.root_session_id,
                        map.next_value()?,
                    ),
                    6 => put(
                        &mut ev.parent_session_id,
                        &mut old.parent_session_id,
                        map.next_value()?,
                    ),
                    7 => put_string(&mut ev.user_id, &mut old.user_id, map.next_value()?),
                    8 => put(&mut ev.tenant, &mut old.tenant, map.next_value()?),
                    9 => {
                        ev.ip = parse_as(map.next_value()?, crate::adapters::json::parse_ip, "ip")?
                    }
                    10 => put(&mut ev.user_agent, &mut old.user_agent, map.next_value()?),
                    11 => {
                        let id = map.next_value::<Option<Id<'de>>>()?.and_then(|i| i.0);
                        put(&mut ev.device_id, &mut old.device_id, id.map(Text))
                    }
                    12 | 14 | 16 => {
                        let id = map.next_value::<Option<Id<'de>>>()?.and_then(|i| i.0);
                        f.tokens[usize::from(k - 12) / 2].0 = id.map(|id| ctx.hasher.hash(&id));
                    }
                    13 | 15 | 17 => {
                        f.tokens[usize::from(k - 13) / 2].1 =
                            non_empty(map.next_value()?).map(|h| TokenHash::from_hex(&h));
                    }
                    18 => {
                        ev.scopes = std::mem::take(&mut old.scopes);
                        map.next_value_seed(Scopes(&mut ev.scopes))?;
                    }
                    19 => put(&mut ev.app, &mut old.app, map.next_value()?),
                    20 => put(&mut ev.client_id, &mut old.client_id, map.next_value()?),
                    21 => map.next_value_seed(GeoSeed {
                        geo: &mut ev.geo,
                        old: &mut old.geo,
                    })?,
                    22 => ev.geo.asn = u32_of(map.next_value()?)?,
                    23 => put(&mut ev.geo.as_org, &mut old.geo.as_org, map.next_value()?),
                    24 => ev.geo.is_proxy = map.next_value()?,
                    25 => {
                        f.identity_type =
                            parse_as(map.next_value()?, IdentityType::parse, "identity_type")?
                    }
                    26 => {
                        f.lifecycle =
                            parse_as(map.next_value()?, LifecycleChange::parse, "lifecycle")?
                    }
                    27 => put(&mut ev.found_in, &mut old.found_in, map.next_value()?),
                    _ => put(&mut ev.event_name, &mut old.event_name, map.next_value()?),
                }
            }
            Ok(f)
        }
    }

    /// `geo`: an object (or `null`) of country, city, coordinates and radius.
    struct GeoSeed<'a> {
        geo: &'a mut Geo,
        old: &'a mut Geo,
    }

    impl<'de> DeserializeSeed<'de> for GeoSeed<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_option(self)
        }
    }

    impl<'de> Visitor<'de> for GeoSeed<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a geo object")
        }

        fn visit_none<E: de::Error>(self) -> Result<(), E> {
            Ok(())
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let GeoSeed { geo, old } = self;
            let mut seen = 0u32;
            while let Some(k) = next_key(&mut map, geo_key, &mut seen)? {
                match k {
                    0 => put(&mut geo.country, &mut old.country, map.next_value()?),
                    1 => put(&mut geo.city, &mut old.city, map.next_value()?),
                    2 => geo.lat = map.next_value()?,
                    3 => geo.lon = map.next_value()?,
                    _ => geo.accuracy_km = u32_of(map.next_value()?)?,
                }
            }
            Ok(())
        }
    }

    /// A whole number in `u32`, as the general path takes it.
    fn u32_of<E: de::Error>(x: Option<f64>) -> Result<Option<u32>, E> {
        match x {
            None => Ok(None),
            Some(x) => crate::adapters::json::as_u32(x)
                .map(Some)
                .ok_or_else(|| fail("not a u32")),
        }
    }

    fn non_empty(s: Option<Text<'_>>) -> Option<Cow<'_, str>> {
        s.map(|s| s.0).filter(|s| !s.is_empty())
    }

    /// Writes `v` into `slot` (empty: absent), in the buffer `spare` held.
    fn put(slot: &mut Option<String>, spare: &mut Option<String>, v: Option<Text<'_>>) {
        *slot = non_empty(v).map(|v| refill(spare.take().unwrap_or_default(), &v));
    }

    /// Writes `v` into `slot` (absent: empty), in the buffer `spare` held.
    fn put_string(slot: &mut String, spare: &mut String, v: Option<Text<'_>>) {
        if let Some(v) = non_empty(v) {
            *slot = refill(std::mem::take(spare), &v);
        }
    }

    fn refill(mut buf: String, v: &str) -> String {
        buf.clear();
        buf.push_str(v);
        buf
    }

    /// An object key, read by its index function.
    struct Key(fn(&str) -> Option<u8>);

    impl<'de> DeserializeSeed<'de> for Key {
        type Value = Option<u8>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u8>, D::Error> {
            d.deserialize_identifier(self)
        }
    }

    impl Visitor<'_> for Key {
        type Value = Option<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<u8>, E> {
            Ok((self.0)(v))
        }
    }

    /// An RFC 3339 string or an epoch number.
    pub enum Time<'a> {
        Text(Cow<'a, str>),
        Number(f64),
    }

    impl<'de> Deserialize<'de> for Time<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Time<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a time")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                    Ok(Time::Text(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(Time::Text(Cow::Owned(v.to_owned())))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                    Ok(Time::Number(v as f64))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                    Ok(Time::Number(v as f64))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                    Ok(Time::Number(v))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// An id given as a string or an integer (rendered as the general path renders it);
    /// an empty string is absent. Floats are left to the general path.
    pub struct Id<'a>(pub Option<Cow<'a, str>>);

    impl<'de> Deserialize<'de> for Id<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Id<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an id")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Id<'de>, E> {
                    Ok(Id((!v.is_empty()).then_some(Cow::Borrowed(v))))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Id<'de>, E> {
                    Ok(Id((!v.is_empty()).then(|| Cow::Owned(v.to_owned()))))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id<'de>, E> {
                    Ok(Id(Some(Cow::Owned(v.to_string()))))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id<'de>, E> {
                    Ok(Id(Some(Cow::Owned(v.to_string()))))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// Scopes as an array of strings or one space- or comma-separated string (or `null`),
    /// written over the strings `out` holds.
    struct Scopes<'a>(&'a mut Vec<String>);

    impl Scopes<'_> {
        /// Writes the `n`th scope, reusing the string the vector held there.
        fn set(&mut self, n: usize, s: &str) {
            match self.0.get_mut(n) {
                Some(buf) => {
                    buf.clear();
                    buf.push_str(s);
                }
                None => self.0.push(s.to_owned()),
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Scopes<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Scopes<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("scopes")
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.0.clear();
            Ok(())
        }
        fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
            let mut n = 0;
            for s in crate::adapters::json::scope_parts(v) {
                self.set(n, s);
                n += 1;
            }
            self.0.truncate(n);
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            let mut n = 0;
            while let Some(s) = seq.next_element::<Text<'de>>()? {
                let s = s.0.trim();
                if !s.is_empty() {
                    self.set(n, s);
                    n += 1;
                }
            }
            self.0.truncate(n);
            Ok(())
        }
    }
}
