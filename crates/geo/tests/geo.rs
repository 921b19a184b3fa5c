//! Lookups against the test database the testkit builds.

use vigil_geo::GeoDb;

fn db() -> GeoDb {
    let mut g = GeoDb::new(16);
    g.add("test-city-asn", vigil_testkit::geoip::test_database())
        .expect("valid test database");
    g
}

#[test]
fn looks_up_city_and_asn_fields() {
    let mut g = db();
    let info = g
        .lookup("81.2.69.10".parse().expect("ip"))
        .expect("covered")
        .clone();
    assert_eq!(info.country.as_deref(), Some("GB"));
    assert_eq!(info.city.as_deref(), Some("London"));
    assert_eq!(info.asn, Some(2856));
    assert!(info.lat.is_some_and(|l| (l - 51.5074).abs() < 1e-6));
    assert_eq!(info.accuracy_km, Some(10));
    let v6 = g
        .lookup("2a00:23c5::1".parse().expect("ip"))
        .expect("covered")
        .clone();
    assert_eq!(v6.asn, Some(2856));
    assert!(g.lookup("192.0.2.1".parse().expect("ip")).is_none());
}

/// The ip-location-db project's flat databases (what `benches/e2e.sh` fetches) store
/// coordinates as single-precision floats: read, and to their decimal values.
#[test]
fn flat_layout_with_single_precision_coordinates() {
    let mut g = GeoDb::new(16);
    g.add("flat", vigil_testkit::geoip::flat_database())
        .expect("valid flat database");
    for p in vigil_testkit::places::ALL {
        let info = g
            .lookup(p.ip.parse().expect("ip"))
            .unwrap_or_else(|| panic!("{} is covered", p.ip))
            .clone();
        assert_eq!(info.country.as_deref(), Some(p.country), "{}", p.ip);
        assert_eq!(info.city.as_deref(), Some(p.city), "{}", p.ip);
        let (lat, lon) = (info.lat.expect("latitude"), info.lon.expect("longitude"));
        assert_eq!(lat, (p.lat as f32).to_string().parse::<f64>().expect("f64"));
        assert!(
            (lat - p.lat).abs() < 1e-4 && (lon - p.lon).abs() < 1e-4,
            "{}: {lat},{lon}",
            p.ip
        );
        assert_eq!(info.asn, None);
    }
}

/// A record that does not decode is not silently "not found": it is counted.
#[test]
fn undecodable_records_are_counted() {
    let mut g = GeoDb::new(16);
    g.add("odd", vigil_testkit::geoip::undecodable_database())
        .expect("a valid database, of a layout Vigil does not read");
    let ip = "81.2.69.10".parse().expect("ip");
    assert!(g.lookup(ip).is_none());
    assert!(g.lookup(ip).is_none(), "cached");
    assert_eq!((g.decode_errors, g.misses, g.hits), (1, 1, 1));
    assert!(g.lookup("192.0.2.1".parse().expect("ip")).is_none());
    assert_eq!(g.decode_errors, 1, "an address with no record is no error");
}

#[test]
fn cache_counts_hits_and_stays_bounded() {
    let mut g = db();
    for _ in 0..3 {
        g.lookup("81.2.69.10".parse().expect("ip"));
    }
    assert_eq!((g.hits, g.misses), (2, 1));
    for i in 0..100u8 {
        g.lookup(std::net::IpAddr::from([10, 0, 0, i]));
    }
    assert!(g.misses == 101);
}

#[test]
fn source_geo_wins_over_database() {
    let mut g = db();
    let ctx = vigil_model::adapters::AdapterContext::new(b"k");
    let line = br#"{"id":"1","time":"2024-05-01T00:00:00Z","kind":"access","session_id":"s","user_id":"u","ip":"81.2.69.10","geo":{"country":"FR","lat":48.85,"lon":2.35}}"#;
    let mut ev =
        vigil_model::adapters::parse_record(line, Default::default(), &ctx).expect("valid");
    g.enrich(&mut ev);
    assert_eq!(ev.geo.country.as_deref(), Some("FR"));
    assert_eq!(ev.geo.lat, Some(48.85));
    assert_eq!(ev.geo.asn, Some(2856), "the missing ASN is filled in");
}

#[test]
fn source_coordinates_take_the_database_radius_for_their_address() {
    let mut g = db();
    let ctx = vigil_model::adapters::AdapterContext::new(b"k");
    // An IdP placing a carrier address at its hub, without a radius: how well the address
    // can be located is the database's to say (500 km for this carrier range).
    let line = br#"{"id":"1","time":"2024-05-01T00:00:00Z","kind":"access","session_id":"s","user_id":"u","ip":"5.146.3.3","asn":3209,"geo":{"country":"DE","lat":51.2277,"lon":6.7735}}"#;
    let mut ev =
        vigil_model::adapters::parse_record(line, Default::default(), &ctx).expect("valid");
    g.enrich(&mut ev);
    assert_eq!(ev.geo.accuracy_km, Some(500));
    assert_eq!(ev.geo.lat, Some(51.2277), "the source's coordinates stay");
    // A radius the source gives is kept.
    let line = br#"{"id":"2","time":"2024-05-01T00:00:00Z","kind":"access","session_id":"s","user_id":"u","ip":"5.146.3.3","asn":3209,"geo":{"country":"DE","lat":51.2277,"lon":6.7735,"accuracy_km":20}}"#;
    let mut ev =
        vigil_model::adapters::parse_record(line, Default::default(), &ctx).expect("valid");
    g.enrich(&mut ev);
    assert_eq!(ev.geo.accuracy_km, Some(20));
}

#[test]
fn garbage_is_a_clear_error() {
    let mut g = GeoDb::new(4);
    let err = g
        .add("junk.mmdb", b"not a database".to_vec())
        .expect_err("rejected");
    assert!(err.to_string().contains("junk.mmdb"), "{err}");
}
