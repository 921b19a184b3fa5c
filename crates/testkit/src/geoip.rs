//! A small GeoIP database in MaxMind DB format, built in-process with `mmdb-writer`, holding
//! GeoLite2 City and ASN fields for every network in [`crate::places`].

use ipnet::IpNet;
use serde::Serialize;

use crate::places::ALL;

#[derive(Serialize)]
struct Names {
    en: &'static str,
}

#[derive(Serialize)]
struct Iso {
    iso_code: &'static str,
    names: Names,
}

#[derive(Serialize)]
struct City {
    names: Names,
}

#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
    accuracy_radius: u16,
}

#[derive(Serialize)]
struct Record {
    country: Iso,
    city: City,
    location: Location,
    autonomous_system_number: u32,
    autonomous_system_organization: &'static str,
}

/// The database bytes. Deterministic: the same build always yields the same bytes.
pub fn test_database() -> Vec<u8> {
    build("Vigil-Test-City-ASN", |p| Record {
        country: Iso {
            iso_code: p.country,
            names: Names { en: p.country_name },
        },
        city: City {
            names: Names { en: p.city },
        },
        location: Location {
            latitude: p.lat,
            longitude: p.lon,
            accuracy_radius: p.accuracy_km,
        },
        autonomous_system_number: p.asn,
        autonomous_system_organization: p.as_org,
    })
}

/// The flat layout of the ip-location-db project's databases (`country_code`, `city`,
/// `latitude`, `longitude` at the top level, coordinates as single-precision floats), for the
/// same networks as [`test_database`].
pub fn flat_database() -> Vec<u8> {
    #[derive(Serialize)]
    struct Flat {
        country_code: &'static str,
        city: &'static str,
        latitude: f32,
        longitude: f32,
    }
    build("Vigil-Test-Flat-City", |p| Flat {
        country_code: p.country,
        city: p.city,
        latitude: p.lat as f32,
        longitude: p.lon as f32,
    })
}

/// A database whose records hold coordinates as text, a layout Vigil does not read: lookups
/// find a record that does not decode.
pub fn undecodable_database() -> Vec<u8> {
    #[derive(Serialize)]
    struct Odd {
        country_code: &'static str,
        latitude: &'static str,
    }
    build("Vigil-Test-Odd", |p| Odd {
        country_code: p.country,
        latitude: "north",
    })
}

/// A database named `name` holding `record(place)` for every network in [`crate::places`].
/// Deterministic: the same build always yields the same bytes.
fn build<T: Serialize>(name: &str, record: impl Fn(&crate::places::Place) -> T) -> Vec<u8> {
    let epoch = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let mut w = mmdb_writer::Writer::builder(name)
        .build_epoch(epoch)
        .build();
    for p in ALL {
        let net: IpNet = p.cidr.parse().expect("places hold valid CIDRs");
        w.insert(net, &record(&p)).expect("records serialize");
    }
    w.to_bytes().expect("database builds")
}
