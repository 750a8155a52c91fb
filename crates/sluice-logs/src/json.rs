//! Borrowing JSON helpers for the JSON formats: objects as `(key, raw value)` lists, typed field
//! readers with exact reasons, and [`split_json_array`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::ParseError;
use crate::num;

/// A string that borrows from the input when it has no escapes.
pub(crate) struct CowStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object as its entries in input order, values left unparsed.
pub(crate) struct Obj<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Obj<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Obj<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a json object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(CowStr(k)) = map.next_key::<CowStr<'de>>()? {
                    let v: &'de RawValue = map.next_value()?;
                    entries.push((k, v));
                }
                Ok(Obj(entries))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Obj<'a> {
    /// Parse one JSON object (a line or an array element).
    pub(crate) fn parse(line: &'a [u8]) -> Result<Obj<'a>, ParseError> {
        if line.trim_ascii().is_empty() {
            return Err(ParseError::Empty);
        }
        serde_json::from_slice(line).map_err(|e| ParseError::Json(e.to_string()))
    }

    /// Parse a nested object value; `label` names it in the reason.
    pub(crate) fn nested(label: &str, raw: &'a RawValue) -> Result<Obj<'a>, ParseError> {
        serde_json::from_str(raw.get())
            .map_err(|_| ParseError::json_field(label, raw.get(), "expected an object"))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Split a JSON array (Kong's batched http-log body, or any array of records) into the raw text
/// of its elements, each of which can be fed to [`crate::Parser::parse_line`].
pub fn split_json_array(body: &[u8]) -> Result<Vec<&[u8]>, ParseError> {
    let items: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    Ok(items.into_iter().map(|v| v.get().as_bytes()).collect())
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

fn first(raw: &RawValue) -> u8 {
    raw.get().as_bytes().first().copied().unwrap_or(b' ')
}

/// A string value (numbers and booleans are taken as their text); `null`, `""` and `"-"` are absent.
pub(crate) fn text<'a>(label: &str, raw: &'a RawValue) -> Result<Option<Cow<'a, str>>, ParseError> {
    match first(raw) {
        b'"' => {
            let CowStr(s) = serde_json::from_str(raw.get()).map_err(|e| {
                let msg = e.to_string();
                let msg = msg
                    .rsplit_once(" at line ")
                    .map_or(msg.as_str(), |(m, _)| m);
                ParseError::json_field(label, raw.get(), msg)
            })?;
            Ok((!s.is_empty() && s != "-").then_some(s))
        }
        b'n' => Ok(None),
        b'{' | b'[' => Err(ParseError::json_field(
            label,
            raw.get(),
            "expected a string",
        )),
        _ => Ok(Some(Cow::Borrowed(raw.get()))),
    }
}

/// A string value taken as is (numbers and booleans as their text); only `null` is absent. Used by
/// the canonical NDJSON format, where `"-"` is a value like any other.
pub(crate) fn text_exact<'a>(
    label: &str,
    raw: &'a RawValue,
) -> Result<Option<Cow<'a, str>>, ParseError> {
    match first(raw) {
        b'"' => Ok(Some(string(label, raw)?)),
        b'n' => Ok(None),
        b'{' | b'[' => Err(ParseError::json_field(
            label,
            raw.get(),
            "expected a string",
        )),
        _ => Ok(Some(Cow::Borrowed(raw.get()))),
    }
}

fn string<'a>(label: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, ParseError> {
    let CowStr(s) = serde_json::from_str(raw.get()).map_err(|e| {
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map_or(msg.as_str(), |(m, _)| m);
        ParseError::json_field(label, raw.get(), msg)
    })?;
    Ok(s)
}

/// A non-negative number (or numeric string) times `10^scale`, truncated; absent for
/// `null`, `""`, `"-"`.
pub(crate) fn scaled(label: &str, raw: &RawValue, scale: u32) -> Result<Option<u64>, ParseError> {
    let bad = |p: &str| ParseError::json_field(label, raw.get(), p);
    let digits: Cow<'_, str> = match first(raw) {
        b'"' => match text(label, raw)? {
            Some(s) => s,
            None => return Ok(None),
        },
        b'n' => return Ok(None),
        b'-' => return Err(bad("negative number")),
        b'0'..=b'9' => Cow::Borrowed(raw.get()),
        _ => return Err(bad("expected a number")),
    };
    if digits.bytes().any(|c| c == b'e' || c == b'E') {
        let f: f64 = digits.parse().map_err(|_| bad(num::NOT_A_NUMBER))?;
        let v = f * 10f64.powi(scale as i32);
        if !(0.0..1.8e19).contains(&v) {
            return Err(bad("number out of range"));
        }
        return Ok(Some(v as u64));
    }
    num::parse_scaled(digits.as_bytes(), scale)
        .map(Some)
        .map_err(bad)
}

/// An integer: as [`scaled`] with scale 0.
pub(crate) fn int(label: &str, raw: &RawValue) -> Result<Option<u64>, ParseError> {
    scaled(label, raw, 0)
}

/// An HTTP status (number or numeric string), required to be 0..=999.
pub(crate) fn status(label: &str, raw: &RawValue) -> Result<Option<u16>, ParseError> {
    match int(label, raw)? {
        Some(s) if s > 999 => Err(ParseError::json_field(
            label,
            raw.get(),
            "out of range (expected 0 to 999)",
        )),
        Some(s) => Ok(Some(s as u16)),
        None => Ok(None),
    }
}

/// Any value as an owned JSON value for extras.
pub(crate) fn value(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// Store a scalar as extra `key` (objects and arrays too when `nested`); nulls are skipped.
pub(crate) fn extra(
    extras: &mut serde_json::Map<String, Value>,
    key: &str,
    raw: &RawValue,
    nested: bool,
) {
    if is_null(raw) || (!nested && matches!(first(raw), b'{' | b'[')) {
        return;
    }
    extras.insert(key.to_owned(), value(raw));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, expect: Result<Vec<&str>, &str>) {
        let got = split_json_array(body.as_bytes()).map_err(|e| e.to_string());
        let got = got.map(|v| {
            v.into_iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
        });
        let expect = expect.map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(got, expect.map_err(str::to_owned), "{body}");
    }

    #[test]
    fn splits_arrays() {
        check(
            r#"[{"a":1}, {"b":[2,3]} ]"#,
            Ok(vec![r#"{"a":1}"#, r#"{"b":[2,3]}"#]),
        );
        check(" [ ] ", Ok(vec![]));
        check(
            r#"[{"a":1},"#,
            Err("invalid json: EOF while parsing a value at line 1 column 9"),
        );
        check(
            r#"{"a":1}"#,
            Err("invalid json: invalid type: map, expected a sequence at line 1 column 0"),
        );
    }

    #[test]
    fn typed_values() {
        let raw = |s: &str| -> Box<RawValue> { RawValue::from_string(s.to_owned()).unwrap() };
        assert_eq!(scaled("d", &raw("12.5"), 3).unwrap(), Some(12_500));
        assert_eq!(scaled("d", &raw("\"7\""), 3).unwrap(), Some(7_000));
        assert_eq!(scaled("d", &raw("1e3"), 0).unwrap(), Some(1_000));
        assert_eq!(scaled("d", &raw("\"-\""), 0).unwrap(), None);
        assert_eq!(scaled("d", &raw("null"), 0).unwrap(), None);
        assert_eq!(
            scaled("d", &raw("-1"), 0).unwrap_err().to_string(),
            "invalid d -1: negative number"
        );
        assert_eq!(
            scaled("d", &raw("true"), 0).unwrap_err().to_string(),
            "invalid d true: expected a number"
        );
        assert_eq!(
            status("s", &raw("1200")).unwrap_err().to_string(),
            "invalid s 1200: out of range (expected 0 to 999)"
        );
        assert_eq!(text("t", &raw(r#""a\"b""#)).unwrap().unwrap(), "a\"b");
        assert!(matches!(
            text("t", &raw(r#""ab""#)).unwrap().unwrap(),
            Cow::Borrowed("ab")
        ));
    }
}
