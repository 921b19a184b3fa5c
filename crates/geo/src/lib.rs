//! GeoIP enrichment for Vigil: MaxMind DB (`.mmdb`) lookups of country, city, coordinates,
//! accuracy radius, ASN and AS organisation, with a bounded per-IP cache.
//!
//! Reads GeoLite2/GeoIP2 City and ASN databases (and databases with the flat
//! `country_code`/`latitude`/`longitude` layout of the ip-location-db project). Only the
//! fields Vigil uses are decoded, borrowed from the database buffer. The source's own
//! location always wins: [`GeoDb::enrich`] fills only what an event lacks.
//!
//! This crate opens files only in [`GeoDb::open`]; lookups are memory reads.
//!
//! ```no_run
//! let mut geo = vigil_geo::GeoDb::new(100_000);
//! geo.open("GeoLite2-City.mmdb")?;
//! geo.open("GeoLite2-ASN.mmdb")?;
//! let info = geo.lookup("81.2.69.142".parse()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::IpAddr;
use std::path::Path;

use maxminddb::Reader;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use vigil_model::SessionEvent;

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read.
    #[error("cannot read GeoIP database {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a MaxMind DB.
    #[error("{path} is not a valid MaxMind DB: {reason}")]
    Invalid {
        /// The path given.
        path: String,
        /// The reader's complaint.
        reason: String,
    },
}

/// What a lookup found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoInfo {
    /// ISO country code.
    pub country: Option<Box<str>>,
    /// City name (English).
    pub city: Option<Box<str>>,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
    /// Accuracy radius, km.
    pub accuracy_km: Option<u32>,
    /// ASN.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: Option<Box<str>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct NamedPlace<'a> {
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<Coordinate>,
    longitude: Option<Coordinate>,
    accuracy_radius: Option<u16>,
}

/// A latitude or longitude as a database stores it: MaxMind's databases use doubles, the
/// ip-location-db project's flat databases single-precision floats (which the MaxMind DB
/// decoder will not read as a double, so every record failed to decode and no address was
/// found).
#[derive(Clone, Copy)]
struct Coordinate(f64);

impl<'de> Deserialize<'de> for Coordinate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Coordinate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a coordinate (float or double)")
            }
            fn visit_f32<E: serde::de::Error>(self, v: f32) -> Result<Coordinate, E> {
                // Through its shortest decimal form, so 51.4036f32 reads as 51.4036, not
                // 51.40359878540039.
                Ok(Coordinate(v.to_string().parse().unwrap_or(f64::from(v))))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Coordinate, E> {
                Ok(Coordinate(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The union of the fields Vigil reads from City, ASN and flat-layout databases; serde skips
/// every other field without building it.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    city: Option<CityField<'a>>,
    location: Option<Location>,
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
    latitude: Option<Coordinate>,
    longitude: Option<Coordinate>,
}

/// GeoLite2 has `city: {names: {en}}`; flat databases have `city: "name"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum CityField<'a> {
    #[serde(borrow)]
    Flat(&'a str),
    #[serde(borrow)]
    Named(NamedPlace<'a>),
}

impl Record<'_> {
    fn merge_into(self, info: &mut GeoInfo) {
        let country = self.country.and_then(|c| c.iso_code).or(self.country_code);
        if info.country.is_none() {
            info.country = country.filter(|c| !c.is_empty()).map(Into::into);
        }
        let city = match self.city {
            Some(CityField::Flat(s)) => Some(s),
            Some(CityField::Named(n)) => n.names.and_then(|n| n.en),
            None => None,
        };
        // Flat databases write "" where they know no city.
        if info.city.is_none() {
            info.city = city.filter(|c| !c.is_empty()).map(Into::into);
        }
        let (lat, lon, acc) = match self.location {
            Some(l) => (l.latitude, l.longitude, l.accuracy_radius),
            None => (self.latitude, self.longitude, None),
        };
        let (lat, lon) = (lat.map(|c| c.0), lon.map(|c| c.0));
        if info.lat.is_none() && lat.is_some() && lon.is_some() {
            info.lat = lat;
            info.lon = lon;
            info.accuracy_km = acc.map(u32::from);
        }
        if info.asn.is_none() {
            info.asn = self.autonomous_system_number;
        }
        if info.as_org.is_none() {
            info.as_org = self.autonomous_system_organization.map(Into::into);
        }
    }
}

/// One or more MaxMind databases with a bounded per-IP cache.
pub struct GeoDb {
    readers: std::sync::Arc<Vec<(String, Reader<Vec<u8>>)>>,
    cache: FxHashMap<IpAddr, Option<GeoInfo>>,
    cache_cap: usize,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that read the databases.
    pub misses: u64,
    /// Records found in a database that did not decode (a layout this crate does not read):
    /// those lookups count as not found.
    pub decode_errors: u64,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.readers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("GeoDb")
            .field("databases", &names)
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl GeoDb {
    /// An empty set of databases; `cache_cap` bounds the per-IP cache (0 disables it).
    pub fn new(cache_cap: usize) -> Self {
        Self {
            readers: Default::default(),
            cache: FxHashMap::default(),
            cache_cap,
            hits: 0,
            misses: 0,
            decode_errors: 0,
        }
    }

    /// Opens a database file and adds it.
    pub fn open(&mut self, path: impl AsRef<Path>) -> Result<(), GeoError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.add(&path.display().to_string(), bytes)
    }

    /// Adds a database from its bytes; `name` is used in errors and diagnostics.
    pub fn add(&mut self, name: &str, bytes: Vec<u8>) -> Result<(), GeoError> {
        let reader = Reader::from_source(bytes).map_err(|e| GeoError::Invalid {
            path: name.to_owned(),
            reason: e.to_string(),
        })?;
        let entry = (
            format!("{name} ({})", reader.metadata().database_type),
            reader,
        );
        match std::sync::Arc::get_mut(&mut self.readers) {
            Some(readers) => readers.push(entry),
            None => {
                return Err(GeoError::Invalid {
                    path: name.to_owned(),
                    reason: "databases cannot be added after the set is shared".into(),
                });
            }
        }
        self.cache.clear();
        Ok(())
    }

    /// Another handle on the same databases with its own, empty cache (one per partition
    /// task: the databases are shared read-only, the caches are not shared at all).
    pub fn share(&self) -> Self {
        Self {
            readers: self.readers.clone(),
            cache: FxHashMap::default(),
            cache_cap: self.cache_cap,
            hits: 0,
            misses: 0,
            decode_errors: 0,
        }
    }

    /// The loaded databases, as `path (database_type)`.
    pub fn databases(&self) -> Vec<&str> {
        self.readers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Looks an IP up in every database, merging what each knows; cached.
    pub fn lookup(&mut self, ip: IpAddr) -> Option<&GeoInfo> {
        if self.cache.contains_key(&ip) {
            self.hits += 1;
        } else {
            self.misses += 1;
            let (info, errors) = self.read(ip);
            self.decode_errors += errors;
            if self.cache.len() >= self.cache_cap {
                // A full reset is simpler than LRU and keeps the bound; hot IPs return at once.
                self.cache.clear();
            }
            if self.cache_cap == 0 {
                self.cache.clear();
            }
            self.cache.insert(ip, info);
        }
        self.cache.get(&ip).and_then(Option::as_ref)
    }

    /// Looks an IP up without the cache.
    pub fn lookup_uncached(&self, ip: IpAddr) -> Option<GeoInfo> {
        self.read(ip).0
    }

    /// Reads every database for `ip`: what they say, and how many found a record that did not
    /// decode.
    fn read(&self, ip: IpAddr) -> (Option<GeoInfo>, u64) {
        let mut info = GeoInfo::default();
        let mut found = false;
        let mut errors = 0;
        for (_, r) in self.readers.iter() {
            let Ok(res) = r.lookup(ip) else { continue };
            match res.decode::<Record<'_>>() {
                Ok(Some(rec)) => {
                    rec.merge_into(&mut info);
                    found = true;
                }
                Ok(None) => {}
                Err(_) => errors += 1,
            }
        }
        (found.then_some(info), errors)
    }

    /// Fills what `ev` lacks (country, city, coordinates, ASN) from the databases. The
    /// source's own values are kept: the IdP saw the connection, the database guesses.
    pub fn enrich(&mut self, ev: &mut SessionEvent) {
        let Some(ip) = ev.ip else { return };
        if self.readers.is_empty() {
            return;
        }
        let g = &mut ev.geo;
        let needs_location = g.coordinates().is_none() || g.country.is_none();
        // IdP-provided coordinates come without a radius; how well an address can be
        // located is a property of its range, so the database's radius is taken for them.
        let needs_radius = g.coordinates().is_some() && g.accuracy_km.is_none();
        if !needs_location && !needs_radius && g.asn.is_some() {
            return;
        }
        let Some(info) = self.lookup(ip) else { return };
        if needs_radius {
            g.accuracy_km = info.accuracy_km;
        }
        if g.country.is_none() {
            g.country = info.country.as_deref().map(str::to_owned);
        }
        if g.coordinates().is_none() && info.lat.is_some() {
            g.lat = info.lat;
            g.lon = info.lon;
            g.accuracy_km = info.accuracy_km;
            if g.city.is_none() {
                g.city = info.city.as_deref().map(str::to_owned);
            }
        }
        if g.asn.is_none() {
            g.asn = info.asn;
            if g.as_org.is_none() {
                g.as_org = info.as_org.as_deref().map(str::to_owned);
            }
        }
    }
}
