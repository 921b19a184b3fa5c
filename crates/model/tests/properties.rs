use proptest::prelude::*;
use serde_json::{Map, Value, json};
use vigil_model::adapters::{AdapterContext, InputFormat, parse_record, parse_value};
use vigil_model::time;

const FORMATS: [InputFormat; 5] = [
    InputFormat::Auto,
    InputFormat::Native,
    InputFormat::Okta,
    InputFormat::Entra,
    InputFormat::Ocsf,
];

fn ctx() -> AdapterContext {
    let mut c = AdapterContext::new(b"proptest-key");
    c.max_record_bytes = 64 * 1024;
    c
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9:.\\-_ ]{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("2024-05-01T12:00:00Z"),
            Just("1.2.3.4"),
            Just("user.session.start"),
            Just("access"),
            Just("SignInLogs"),
            Just("::1"),
            Just("9999-99-99T99:99:99Z"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    let keys = prop_oneof![
        Just("id"),
        Just("time"),
        Just("kind"),
        Just("session_id"),
        Just("user_id"),
        Just("ip"),
        Just("geo"),
        Just("lat"),
        Just("lon"),
        Just("asn"),
        Just("scopes"),
        Just("token_id"),
        Just("eventType"),
        Just("published"),
        Just("uuid"),
        Just("actor"),
        Just("client"),
        Just("authenticationContext"),
        Just("externalSessionId"),
        Just("properties"),
        Just("sessionId"),
        Just("userId"),
        Just("class_uid"),
        Just("session"),
        Just("uid"),
        Just("metadata"),
        Just("user"),
        Just("target"),
        Just("debugContext"),
        Just("debugData"),
        Just("location"),
        Just("src_endpoint"),
        Just("token_hash"),
        Just("status"),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let c = ctx();
        for f in FORMATS {
            if let Err(r) = parse_record(&bytes, f, &c) {
                prop_assert!(!r.detail.is_empty());
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics_and_rejections_explain(v in arb_json()) {
        let c = ctx();
        for f in FORMATS {
            match parse_value(&v, f, &c) {
                Ok(ev) => {
                    prop_assert!(!ev.session_id.is_empty());
                    prop_assert!(!ev.user_id.is_empty());
                    prop_assert!(time::is_plausible(ev.time_ms));
                }
                Err(r) => prop_assert!(!r.detail.is_empty()),
            }
        }
    }

    #[test]
    fn valid_native_records_keep_their_fields(
        session in "[a-zA-Z0-9_-]{1,40}",
        user in "[a-zA-Z0-9@._-]{1,40}",
        ms in time::MIN_EVENT_MS..time::MAX_EVENT_MS,
        ip in any::<std::net::IpAddr>(),
        lat in -90.0f64..90.0,
        lon in -180.0f64..180.0,
        asn in any::<u32>(),
        scopes in prop::collection::vec("[a-zA-Z.]{1,12}", 0..5),
        as_string in any::<bool>(),
    ) {
        let scopes_json = if as_string { json!(scopes.join(" ")) } else { json!(scopes) };
        let rec = json!({
            "id": "e", "time": time::format_rfc3339(ms), "kind": "access",
            "session_id": session, "user_id": user, "ip": ip.to_string(),
            "geo": {"lat": lat, "lon": lon}, "asn": asn, "scopes": scopes_json, "token_id": "t",
        });
        let ev = parse_record(rec.to_string().as_bytes(), InputFormat::Auto, &ctx()).expect("valid record");
        prop_assert_eq!(&ev.session_id, &session);
        prop_assert_eq!(&ev.user_id, &user);
        prop_assert_eq!(ev.time_ms, ms);
        prop_assert_eq!(ev.ip, Some(ip));
        prop_assert_eq!(ev.geo.asn, Some(asn));
        prop_assert_eq!(ev.geo.coordinates(), Some((lat, lon)));
        prop_assert_eq!(&ev.scopes, &scopes);
        prop_assert_eq!(ev.token, Some(ctx().hasher.hash("t")));
    }

    #[test]
    fn epoch_numbers_and_rfc3339_agree(ms in time::MIN_EVENT_MS..time::MAX_EVENT_MS) {
        let c = ctx();
        let mk = |t: Value| json!({"id": "e", "time": t, "kind": "access", "session_id": "s", "user_id": "u"});
        let a = parse_value(&mk(json!(time::format_rfc3339(ms))), InputFormat::Native, &c).expect("rfc3339");
        let b = parse_value(&mk(json!(ms)), InputFormat::Native, &c).expect("epoch ms");
        prop_assert_eq!(a.time_ms, b.time_ms);
    }

    /// Mutating one field of a real vendor record never panics, whatever is put there.
    #[test]
    fn mutated_sample_records_never_panic(line_idx in 0usize..40, path_idx in 0usize..64, val in arb_json()) {
        let c = ctx();
        for name in ["native", "okta", "entra", "ocsf"] {
            let text = std::fs::read_to_string(format!("{}/../../tests/data/samples/{name}.jsonl", env!("CARGO_MANIFEST_DIR"))).expect("samples");
            let lines: Vec<&str> = text.lines().collect();
            let mut v: Value = serde_json::from_str(lines[line_idx % lines.len()]).expect("json");
            let mut paths = Vec::new();
            collect_paths(&v, &mut Vec::new(), &mut paths);
            let p = &paths[path_idx % paths.len()];
            if let Some(slot) = v.pointer_mut(p) {
                *slot = val.clone();
            }
            let whole = parse_value(&v, InputFormat::Auto, &c);
            if let Err(r) = &whole {
                prop_assert!(!r.detail.is_empty());
            }
            // Read from its text (the path Kafka records take): the same result.
            prop_assert_eq!(parse_record(v.to_string().as_bytes(), InputFormat::Auto, &c), whole);
        }
    }
}

/// Every sample and vendor fixture, in every format it could be read as, gives the same
/// event or rejection read from its text (the native typed pass or the borrowed tree) as read
/// from a whole `serde_json::Value`: the guard for any reader that skips what adapters do not
/// use.
#[test]
fn records_read_from_text_give_what_whole_trees_give() {
    let c = ctx();
    let mut n = 0;
    for line in all_record_lines() {
        let whole: Value = serde_json::from_str(&line).expect("json");
        for f in FORMATS {
            assert_eq!(
                parse_record(line.as_bytes(), f, &c),
                parse_value(&whole, f, &c),
                "as {f}: {line}"
            );
            n += 1;
        }
    }
    assert!(n > 500, "{n} readings");
}

/// The adapters read records through a tree that leaves out every member whose key no
/// adapter reads (`json::read_by_adapters`): every key name the adapters' source names must
/// be on that list. Every identifier-like string literal in the adapters is taken for a key
/// unless it is one of the values below (event types, target types, format names, JSON type
/// names), so a new lookup fails here until its key is listed.
#[test]
fn every_key_the_adapters_name_is_kept_in_the_tree_they_read() {
    use vigil_model::adapters::json::read_by_adapters;
    const VALUES: [&str; 30] = [
        "ALLOW",
        "AppInstance",
        "AuditLogs",
        "ManagedIdentitySignInLogs",
        "MicrosoftServicePrincipalSignInLogs",
        "PublicClientApp",
        "SUCCESS",
        "ServicePrincipalSignInLogs",
        "SignInLogs",
        "UNKNOWN",
        "User",
        "access_token",
        "array",
        "auto",
        "boolean",
        "entra",
        "false",
        "fuzz",
        "id_token",
        "native",
        "none",
        "null",
        "object",
        "ocsf",
        "okta",
        "refresh_token",
        "refreshtoken",
        "string",
        "true",
        "unknown",
    ];
    let dir = format!("{}/src/adapters", env!("CARGO_MANIFEST_DIR"));
    let mut keys = 0;
    for file in ["mod.rs", "native.rs", "okta.rs", "entra.rs", "ocsf.rs"] {
        let src = std::fs::read_to_string(format!("{dir}/{file}"))
            .expect("adapter source")
            .replace("\\\"", "");
        for lit in src.split('"').skip(1).step_by(2) {
            let ident = lit.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && lit.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ident || VALUES.contains(&lit) {
                continue;
            }
            assert!(
                read_by_adapters(lit),
                "{file} names \"{lit}\": add it to json::read_by_adapters (or, if it is a value and not a key, to VALUES here)"
            );
            keys += 1;
        }
    }
    assert!(keys > 150, "{keys} key names found");
    // A key no adapter reads is left out, at any depth; the others are kept.
    let tree = vigil_model::adapters::json::Value::parse_record(
        r#"{"eventType":"x","displayMessage":"y","client":{"zone":"z","ipAddress":"1.2.3.4"}}"#,
    )
    .expect("json");
    assert!(tree.get("displayMessage").is_none());
    assert!(tree.get("eventType").is_some());
    let client = tree.get("client").expect("client");
    assert!(client.get("zone").is_none());
    assert!(client.get("ipAddress").is_some());
}

fn collect_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<String>) {
    out.push(if prefix.is_empty() {
        String::new()
    } else {
        format!("/{}", prefix.join("/"))
    });
    if let Value::Object(m) = v {
        for (k, child) in m {
            prefix.push(k.replace('~', "~0").replace('/', "~1"));
            collect_paths(child, prefix, out);
            prefix.pop();
        }
    }
}

/// Vendor-shaped records written from the vendors' documented fields.
mod vendor_shapes {
    use vigil_model::EventKind;
    use vigil_model::adapters::{InputFormat, parse_record};

    use super::ctx;

    #[test]
    fn okta_session_start_with_device_fingerprint() {
        let rec = br#"{"actor":{"alternateId":"a@example.com","displayName":"A","id":"00u1abc","type":"User"},
          "authenticationContext":{"authenticationStep":0,"externalSessionId":"102nZH"},
          "client":{"device":"Computer","geographicalContext":{"city":"Dublin","country":"United States","geolocation":{"lat":37.72,"lon":-121.91},"postalCode":"94568","state":"California"},
                    "id":null,"ipAddress":"175.16.199.1","userAgent":{"browser":"FIREFOX","os":"Mac OS X","rawUserAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:72.0) Gecko/20100101 Firefox/72.0"},"zone":"null"},
          "debugContext":{"debugData":{"deviceFingerprint":"541daf91","requestUri":"/api/v1/authn","threatSuspected":"false"}},
          "displayMessage":"User login to Okta","eventType":"user.session.start","outcome":{"reason":null,"result":"SUCCESS"},
          "published":"2020-02-14T20:18:57.718Z","securityContext":{"asNumber":null,"asOrg":null,"isProxy":null},
          "severity":"INFO","target":null,"uuid":"3aeede38-4f67-11ea-abd3-1f5d113f2546","version":"0"}"#;
        let ev = parse_record(rec, InputFormat::Auto, &ctx()).expect("okta record");
        assert_eq!(ev.kind, EventKind::SessionStart);
        assert_eq!(ev.session_id, "102nZH");
        assert_eq!(ev.user_id, "00u1abc");
        assert_eq!(ev.device_id.as_deref(), Some("541daf91"));
        assert_eq!(ev.geo.country.as_deref(), Some("United States"));
        assert_eq!(ev.geo.asn, None);
        assert_eq!(ev.source_id, "3aeede38-4f67-11ea-abd3-1f5d113f2546");
    }

    #[test]
    fn okta_policy_allow_counts_as_success_and_unknown_session_is_missing() {
        let allow = br#"{"eventType":"policy.evaluate_sign_on","published":"2020-02-14T20:18:57.762Z","uuid":"u1",
          "actor":{"id":"00u1"},"authenticationContext":{"externalSessionId":"102x"},"outcome":{"result":"ALLOW"}}"#;
        let ev = parse_record(allow, InputFormat::Okta, &ctx()).expect("allow");
        assert!(ev.success);
        assert_eq!(ev.kind, EventKind::Access);
        let unknown = br#"{"eventType":"user.session.start","published":"2020-02-14T20:18:57.762Z","uuid":"u2",
          "actor":{"id":"00u1"},"authenticationContext":{"externalSessionId":"unknown"}}"#;
        let r = parse_record(unknown, InputFormat::Okta, &ctx()).expect_err("no session");
        assert_eq!(r.field, Some("authenticationContext.externalSessionId"));
    }

    #[test]
    fn entra_export_without_session_id_falls_back_to_correlation_id() {
        let rec = br#"{"Level":"4","callerIpAddress":"81.2.69.144","category":"NonInteractiveUserSignInLogs","correlationId":"corr-1",
          "location":"FR","operationName":"Sign-in activity","properties":{"appDisplayName":"Office 365","appId":"app-1",
          "createdDateTime":"2019-10-18T04:45:48.0729893-05:00","deviceDetail":{"browser":"Chrome 77.0.3865","deviceId":"","operatingSystem":"MacOs"},
          "id":"sign-in-1","ipAddress":"81.2.69.144","isInteractive":false,"location":{"city":"Champs-Sur-Marne","countryOrRegion":"FR",
          "geoCoordinates":{"latitude":48.85,"longitude":2.59}},"status":{"errorCode":50140},"userId":"user-1","userPrincipalName":"t@example.com"},
          "resultType":"50140","tenantId":"tenant-1","time":"2019-10-18T09:45:48.0729893Z"}"#;
        let ev = parse_record(rec, InputFormat::Auto, &ctx()).expect("entra record");
        assert_eq!(ev.session_id, "corr-1");
        assert!(!ev.success, "errorCode 50140 is a failure");
        assert_eq!(ev.device_id, None, "an empty deviceId is absent");
        assert_eq!(ev.tenant.as_deref(), Some("tenant-1"));
        assert_eq!(ev.geo.country.as_deref(), Some("FR"));
        assert_eq!(ev.time_ms, 1_571_391_948_072);
    }

    #[test]
    fn ocsf_api_activity_and_unsupported_class() {
        let rec = br#"{"class_uid":6003,"activity_id":2,"time":1714550400000,"metadata":{"uid":"m-1","version":"1.3.0"},
          "actor":{"user":{"uid":"u-1"},"session":{"uid":"s-1","credential_uid":"AKIA-EXAMPLE"}},
          "src_endpoint":{"ip":"81.2.69.10","location":{"country":"GB","coordinates":[-0.12,51.5]}},
          "http_request":{"user_agent":"aws-cli/2.15"},"api":{"operation":"GetObject","service":{"name":"s3"}}}"#;
        let ev = parse_record(rec, InputFormat::Auto, &ctx()).expect("ocsf record");
        assert_eq!(
            (ev.kind, ev.session_id.as_str(), ev.app.as_deref()),
            (EventKind::Access, "s-1", Some("s3"))
        );
        assert_eq!(ev.geo.coordinates(), Some((51.5, -0.12)));
        assert_eq!(ev.token, Some(ctx().hasher.hash("AKIA-EXAMPLE")));
        let other = br#"{"class_uid":4001,"time":1714550400000,"metadata":{"uid":"m-2"}}"#;
        let r = parse_record(other, InputFormat::Auto, &ctx()).expect_err("network activity");
        assert_eq!(r.reason, vigil_model::RejectReason::UnsupportedEvent);
    }
}

/// The committed native sample records, one per line.
fn native_samples() -> String {
    std::fs::read_to_string(format!(
        "{}/../../tests/data/samples/native.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("samples")
}

/// Every field the native schema reads, as JSON pointers.
const NATIVE_FIELDS: [&str; 31] = [
    "/id",
    "/time",
    "/kind",
    "/success",
    "/session_id",
    "/root_session_id",
    "/parent_session_id",
    "/user_id",
    "/tenant",
    "/ip",
    "/user_agent",
    "/device_id",
    "/token_id",
    "/token_hash",
    "/refresh_token_id",
    "/refresh_token_hash",
    "/new_refresh_token_id",
    "/new_refresh_token_hash",
    "/scopes",
    "/app",
    "/client_id",
    "/geo",
    "/asn",
    "/as_org",
    "/is_proxy",
    "/identity_type",
    "/lifecycle",
    "/found_in",
    "/event",
    "/geo/lat",
    "/geo/accuracy_km",
];

fn native_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_json(),
        Just(json!("")),
        Just(json!("3320")),
        Just(json!(" 1.5 ")),
        Just(json!(12345)),
        Just(json!(-7)),
        Just(json!(2.5)),
        Just(json!(1_714_550_400)),
        Just(json!(1_714_550_400_123i64)),
        Just(json!("2024-05-01T12:00:00+02:00")),
        Just(json!("true")),
        Just(json!(["a", " b ", ""])),
        Just(json!(["a", 1])),
        Just(json!("user_lifecycle")),
        Just(json!("token_exposed")),
        Just(json!("deactivated")),
        Just(json!("agent")),
        Just(json!("0123456789abcdef0123456789abcdef")),
        Just(json!("81.2.69.10:443")),
        Just(json!({"lat": 1.0, "lon": 2.0, "accuracy_km": 5})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// The typed fast path for native records answers only when it agrees with the general
    /// path: same event, never an event where the general path rejects.
    #[test]
    fn the_native_fast_path_agrees_with_the_general_path(
        line_idx in 0usize..64,
        edits in prop::collection::vec((0usize..31, prop::option::of(native_value())), 0..4),
    ) {
        let c = ctx();
        let v = edited_native(line_idx, edits);
        let text = v.to_string();
        if let Some(fast) = vigil_model::adapters::native::parse_fast(&text, &c) {
            for f in [InputFormat::Native, InputFormat::Auto] {
                let general = parse_value(&v, f, &c);
                prop_assert!(general.is_ok(), "fast path accepted what the general path rejects: {:?} for {}", general, text);
                prop_assert_eq!(&fast, &general.expect("ok"));
            }
        }
    }
}

/// A native sample with some of its fields replaced or removed.
fn edited_native(line_idx: usize, edits: Vec<(usize, Option<Value>)>) -> Value {
    let text = native_samples();
    let lines: Vec<&str> = text.lines().collect();
    let mut v: Value = serde_json::from_str(lines[line_idx % lines.len()]).expect("json");
    for (field, val) in edits {
        let p = NATIVE_FIELDS[field];
        let (parent, key) = p.rsplit_once('/').expect("pointer");
        let Some(Value::Object(m)) = (if parent.is_empty() {
            Some(&mut v)
        } else {
            v.pointer_mut(parent)
        }) else {
            continue;
        };
        match val {
            Some(val) => {
                m.insert(key.to_owned(), val);
            }
            None => {
                m.remove(key);
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// A record parsed into an event that held another record reads exactly as it does into
    /// a new event: nothing of the previous record is left (its strings are only reused as
    /// buffers), whichever path each record takes and whether it was accepted.
    #[test]
    fn a_record_parsed_into_a_used_event_reads_as_into_a_new_one(
        records in prop::collection::vec(
            (0usize..64, prop::collection::vec((0usize..31, prop::option::of(native_value())), 0..4)),
            2..5,
        ),
        format in prop_oneof![Just(InputFormat::Native), Just(InputFormat::Auto)],
    ) {
        let c = ctx();
        let mut ev = vigil_model::SessionEvent::empty(vigil_model::SourceFormat::Okta);
        for (line_idx, edits) in records {
            let text = edited_native(line_idx, edits).to_string();
            let fresh = parse_record(text.as_bytes(), format, &c);
            let reused = vigil_model::adapters::parse_record_into(text.as_bytes(), format, &c, &mut ev);
            match fresh {
                Ok(fresh) => {
                    prop_assert!(reused.is_ok(), "{:?} for {}", reused, text);
                    prop_assert_eq!(&ev, &fresh);
                }
                Err(e) => prop_assert_eq!(reused, Err(e)),
            }
        }
    }
}

/// Pieces of JSON text spliced into native records, to reach the fast path's own reading of
/// the bytes: spacing, punctuation out of place, escapes, literals and numbers cut short,
/// control characters, a repeated key.
const TEXT_PIECES: [&str; 28] = [
    " ",
    "\n",
    "\t",
    ",",
    ":",
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    "0",
    "-",
    ".",
    "e",
    "null",
    "true",
    "\\u0041",
    "\\n",
    "\u{1}",
    "\u{e9}",
    "1e400",
    "01",
    "\"x\":1,",
    "\"kind\":\"access\",",
    "\\/",
    "\\ud800",
    "\"a\":[[{}],\"\\u00e9\"],",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// The fast path reads the record's text itself; with any bytes spliced in or cut out, it
    /// answers only where the general path reads the same event from the same text.
    #[test]
    fn the_native_fast_path_agrees_with_the_general_path_on_edited_text(
        line_idx in 0usize..64,
        pretty in any::<bool>(),
        edits in text_edits(1),
    ) {
        let c = ctx();
        let samples = native_samples();
        let lines: Vec<&str> = samples.lines().collect();
        let text = edited_text(lines[line_idx % lines.len()], pretty, edits);
        if let Some(fast) = vigil_model::adapters::native::parse_fast(&text, &c) {
            let general = vigil_model::adapters::json::Value::parse_record(&text)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    vigil_model::adapters::native::parse(&v, &c).map_err(|e| e.to_string())
                });
            prop_assert_eq!(Ok(fast), general, "{}", text);
        }
    }
}

/// At least `min` and at most three edits for [`edited_text`].
fn text_edits(
    min: usize,
) -> impl Strategy<Value = Vec<(prop::sample::Index, usize, &'static str)>> {
    prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0usize..3,
            prop::sample::select(&TEXT_PIECES[..]),
        ),
        min..4,
    )
}

/// A record's text, pretty-printed or as it is, with `edits` spliced in: each at its place,
/// the piece inserted (0), the character there cut (1), or the piece put in its stead (2).
fn edited_text(line: &str, pretty: bool, edits: Vec<(prop::sample::Index, usize, &str)>) -> String {
    let mut text = if pretty {
        let v: Value = serde_json::from_str(line).expect("json");
        serde_json::to_string_pretty(&v).expect("json")
    } else {
        line.to_owned()
    };
    for (at, op, piece) in edits {
        let mut i = at.index(text.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        let next = text[i..].chars().next().map_or(0, char::len_utf8);
        match op {
            0 => text.insert_str(i, piece),
            1 => text.replace_range(i..i + next, ""),
            _ => text.replace_range(i..i + next, piece),
        }
    }
    text
}

/// Every sample and vendor record, one per line.
fn all_record_lines() -> Vec<String> {
    let root = format!("{}/../../tests/data", env!("CARGO_MANIFEST_DIR"));
    let mut lines = Vec::new();
    for file in [
        "samples/native.jsonl",
        "samples/okta.jsonl",
        "samples/entra.jsonl",
        "samples/ocsf.jsonl",
        "vendor/okta-system-log.jsonl",
        "vendor/entra-signin.jsonl",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).expect("records");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// The adapters read a record's text first with their own reader and fall back to
    /// serde_json where it is unsure: with any bytes spliced in or cut out of any format's
    /// record, a text that is not JSON is refused as malformed, and a JSON text reads as its
    /// `serde_json::Value` does.
    #[test]
    fn records_read_from_text_as_from_serde_json_values(
        line_idx in any::<prop::sample::Index>(),
        pretty in any::<bool>(),
        edits in text_edits(0),
    ) {
        let c = ctx();
        let lines = all_record_lines();
        let text = edited_text(&lines[line_idx.index(lines.len())], pretty, edits);
        let ours = parse_record(text.as_bytes(), InputFormat::Auto, &c);
        if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() {
            prop_assert!(
                matches!(&ours, Err(r) if r.reason == vigil_model::RejectReason::MalformedJson),
                "{:?} for {}", ours, text
            );
        } else if let Ok(v) = serde_json::from_str::<Value>(&text) {
            prop_assert_eq!(ours, parse_value(&v, InputFormat::Auto, &c), "{}", text);
        }
    }
}

#[test]
fn every_native_sample_takes_the_fast_path_and_matches_the_general_path() {
    let c = ctx();
    let text = native_samples();
    let mut n = 0;
    for line in text.lines() {
        let fast = vigil_model::adapters::native::parse_fast(line, &c)
            .unwrap_or_else(|| panic!("fast path declined a valid sample: {line}"));
        let v: Value = serde_json::from_str(line).expect("json");
        assert_eq!(
            fast,
            parse_value(&v, InputFormat::Native, &c).expect("valid")
        );
        // Spacing and escaped slashes (as some emitters write them) change nothing.
        let pretty = serde_json::to_string_pretty(&v)
            .expect("json")
            .replace('/', "\\/");
        assert_eq!(
            vigil_model::adapters::native::parse_fast(&pretty, &c).as_ref(),
            Some(&fast),
            "{pretty}"
        );
        n += 1;
    }
    assert!(n > 50, "{n} samples");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// The adapters' general path reads records into a tree that borrows from the input; it
    /// must read every text as `serde_json::Value` does: the same values, the last of repeated
    /// keys, escaped strings decoded, and the same texts refused.
    #[test]
    fn the_borrowed_tree_reads_json_as_serde_json_does(
        v in arb_json(),
        first in arb_json(),
        escaped in "[a-z\"\\\\\n\t/\u{e9}\u{1f600}]{0,8}",
        cut in 0usize..4096,
    ) {
        use vigil_model::adapters::json::Value as Tree;
        let body = serde_json::to_string(&v).expect("json");
        // A repeated key ("id" first, maybe again in `v`) and a key and value with escapes.
        let text = match body.strip_prefix('{') {
            Some(rest) => {
                let e = serde_json::to_string(&escaped).expect("json");
                let sep = if rest == "}" { "" } else { "," };
                format!("{{\"id\":{first},{e}:{e}{sep}{rest}")
            }
            None => body,
        };
        let theirs: Value = serde_json::from_str(&text).expect("serde_json reads its own output");
        let ours = Tree::parse(&text).expect("the borrowed tree reads it too");
        prop_assert_eq!(serde_json::to_value(&ours).expect("serialise"), theirs.clone());
        // Printed (in input order, not sorted): the same JSON.
        prop_assert_eq!(serde_json::from_str::<Value>(&ours.to_string()).expect("json"), theirs.clone());
        if let Value::Object(m) = &theirs {
            for (k, want) in m {
                let got = ours.get(k).map(|g| serde_json::to_value(g).expect("serialise"));
                prop_assert_eq!(got.as_ref(), Some(want), "key {}", k);
            }
        }
        // Truncated texts: refused by both or read alike by both.
        let mut end = cut % (text.len() + 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let short = &text[..end];
        match (serde_json::from_str::<Value>(short), Tree::parse(short)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(serde_json::to_value(&b).expect("serialise"), a),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "{:?} vs {:?} for {:?}", a, b, short),
        }
    }
}

/// Byte sequences that are not UTF-8: a byte never used, a lead byte cut short (two and three
/// bytes), a UTF-16 surrogate, a lone continuation byte.
const NOT_UTF8: [&[u8]; 5] = [
    &[0xff],
    &[0xc3],
    &[0xe2, 0x82],
    &[0xed, 0xa0, 0x80],
    &[0x80],
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Records are checked for UTF-8 before anything else, as the standard library checks it,
    /// and a record that fails says where.
    #[test]
    fn invalid_utf8_is_refused_with_its_offset(
        prefix in "[ -~\u{e9}\u{1f600}]{0,80}",
        bad in prop::sample::select(&NOT_UTF8[..]),
        suffix in "[ -~]{0,80}",
    ) {
        let mut bytes = format!("{{\"kind\":\"{prefix}").into_bytes();
        let at = bytes.len();
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(suffix.as_bytes());
        let r = parse_record(&bytes, InputFormat::Auto, &ctx()).expect_err("not UTF-8");
        prop_assert_eq!(r.reason, vigil_model::RejectReason::InvalidUtf8);
        prop_assert_eq!(std::str::from_utf8(&bytes).map_err(|e| e.valid_up_to()), Err(at));
        let offset = format!("first bad byte at offset {at})");
        prop_assert!(r.detail.contains(&offset), "{}", r.detail);
    }
}
