//! A string read borrowed from the input it is deserialized from.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A string deserialized borrowed from the input where the format allows (JSON unless the
/// string holds escapes, postcard always), copied otherwise. serde's own `Cow<str>` always
/// copies, and `&str` fails on an escaped string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_unless_escaped() {
        let t: Text<'_> = serde_json::from_str(r#""plain""#).expect("a string");
        assert!(matches!(t.0, Cow::Borrowed("plain")));
        let t: Text<'_> = serde_json::from_str(r#""say \"hi\"""#).expect("a string");
        assert!(matches!(t.0, Cow::Owned(ref s) if s == r#"say "hi""#));
        assert!(serde_json::from_str::<Text<'_>>("7").is_err());
        let bin = postcard::to_allocvec("Mozilla/5.0").expect("binary");
        let t: Text<'_> = postcard::from_bytes(&bin).expect("a string");
        assert!(matches!(t.0, Cow::Borrowed("Mozilla/5.0")));
    }
}
