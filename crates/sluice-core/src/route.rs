//! Route normalisation: `/v1/products/123` -> `/v1/products/{id}`, so per-endpoint baselines see
//! one route instead of one path per object.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A user-supplied route template such as `/v1/users/{user}/files/*` or `/static/**`.
///
/// `{name}` and `*` match exactly one path segment; a trailing `**` matches any rest (including
/// nothing). A path that matches a template normalises to the template text itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    text: String,
    segments: Vec<PatternSegment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PatternSegment {
    Literal(String),
    One,
    Rest,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutePatternError {
    #[error("route pattern {0:?} must start with '/'")]
    NoLeadingSlash(String),
    #[error("route pattern {0:?} uses '**' before its last segment")]
    RestNotLast(String),
    #[error("route pattern {0:?} has an unclosed '{{' in segment {1:?}")]
    Unclosed(String, String),
}

impl FromStr for RoutePattern {
    type Err = RoutePatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let Some(rest) = text.strip_prefix('/') else {
            return Err(RoutePatternError::NoLeadingSlash(text.to_owned()));
        };
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let seg = if *part == "**" {
                if i + 1 != parts.len() {
                    return Err(RoutePatternError::RestNotLast(text.to_owned()));
                }
                PatternSegment::Rest
            } else if *part == "*"
                || (part.starts_with('{') && part.ends_with('}') && part.len() >= 2)
            {
                PatternSegment::One
            } else if part.starts_with('{') {
                return Err(RoutePatternError::Unclosed(
                    text.to_owned(),
                    (*part).to_owned(),
                ));
            } else {
                PatternSegment::Literal((*part).to_owned())
            };
            segments.push(seg);
        }
        Ok(RoutePattern {
            text: text.to_owned(),
            segments,
        })
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl RoutePattern {
    fn matches(&self, path: &str) -> bool {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let mut parts = if rest.is_empty() {
            None
        } else {
            Some(rest.split('/'))
        }
        .into_iter()
        .flatten();
        for seg in &self.segments {
            match seg {
                PatternSegment::Rest => return true,
                PatternSegment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                PatternSegment::Literal(lit) => {
                    if parts.next() != Some(lit.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

/// Turns request paths into routes: user templates first, then the built-in rule that replaces
/// numeric, UUID and long hexadecimal segments with `{id}`.
#[derive(Clone, Debug, Default)]
pub struct RouteNormalizer {
    patterns: Vec<RoutePattern>,
}

impl RouteNormalizer {
    pub fn new(patterns: Vec<RoutePattern>) -> Self {
        RouteNormalizer { patterns }
    }

    pub fn patterns(&self) -> &[RoutePattern] {
        &self.patterns
    }

    /// Normalise `path` (without its query string). Borrows when nothing changes.
    pub fn normalize<'a>(&self, path: &'a str) -> Cow<'a, str> {
        for p in &self.patterns {
            if p.matches(path) {
                return Cow::Owned(p.text.clone());
            }
        }
        if !path.split('/').any(is_id_segment) {
            return Cow::Borrowed(path);
        }
        let mut out = String::with_capacity(path.len());
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if is_id_segment(seg) {
                out.push_str("{id}");
            } else {
                out.push_str(seg);
            }
        }
        Cow::Owned(out)
    }
}

/// Numeric, UUID, or hexadecimal of at least 8 characters with at least one digit (so that words
/// made of the letters a-f, such as `facade`, stay as they are).
fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(patterns: &[&str], path: &str, expect: &str) {
        let n = RouteNormalizer::new(patterns.iter().map(|p| p.parse().unwrap()).collect());
        assert_eq!(n.normalize(path), expect, "path {path}");
    }

    #[test]
    fn builtin_rules() {
        check(&[], "/v1/products/123", "/v1/products/{id}");
        check(
            &[],
            "/v1/products/123/reviews/9",
            "/v1/products/{id}/reviews/{id}",
        );
        check(
            &[],
            "/orders/5f2b3c4d-1a2b-4c3d-8e9f-0123456789ab",
            "/orders/{id}",
        );
        check(&[], "/blobs/5f2b3c4d1a2b4c3d", "/blobs/{id}");
        check(&[], "/blobs/deadbeef", "/blobs/deadbeef");
        check(&[], "/facade/accede", "/facade/accede");
        check(&[], "/v2/items", "/v2/items");
        check(&[], "/", "/");
        check(&[], "/a//1", "/a//{id}");
    }

    #[test]
    fn user_patterns_win() {
        let pats = ["/v1/users/{user}/files/*", "/static/**"];
        check(
            &pats,
            "/v1/users/alice/files/report.pdf",
            "/v1/users/{user}/files/*",
        );
        check(&pats, "/v1/users/alice/files", "/v1/users/alice/files");
        check(&pats, "/static/css/site.css", "/static/**");
        check(&pats, "/static", "/static/**");
        check(&pats, "/v1/users/42", "/v1/users/{id}");
    }

    #[test]
    fn pattern_errors() {
        assert_eq!(
            "v1/x".parse::<RoutePattern>().unwrap_err().to_string(),
            "route pattern \"v1/x\" must start with '/'"
        );
        assert_eq!(
            "/a/**/b".parse::<RoutePattern>().unwrap_err().to_string(),
            "route pattern \"/a/**/b\" uses '**' before its last segment"
        );
        assert!("/a/{b".parse::<RoutePattern>().is_err());
    }
}
