//! `format` as kube-apiserver v1.34 checks it.
//!
//! `apiextensions-apiserver/pkg/apiserver/validation/formats.go` lists the formats a CRD schema
//! may have validated (`supportedVersionedFormats`); every other format (`int32`, `int64`,
//! `float`, `url`, `string`, ...) is set to the empty string before validation and so checks
//! nothing. Of the supported ones, the checks go-openapi's `strfmt` makes are followed for those
//! with a plain definition; the rest (ISBN, credit card, SSN, colours, email, BSON ids,
//! durations) are accepted unchecked. The pinned CRDs use only `date-time`, and only under
//! `status`, which the API server drops on create.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A format the API server validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DateTime,
    Date,
    Ipv4,
    Ipv6,
    Cidr,
    Uuid,
    Uuid3,
    Uuid4,
    Uuid5,
    Byte,
    Hostname,
    Uri,
    Mac,
    K8sShortName,
    K8sLongName,
    /// Supported by the API server, not checked here.
    Unchecked(&'static str),
}

impl Format {
    /// The format as the API server keeps it, or `None` for one it strips. Names are compared
    /// without `-`, as go-openapi normalises them (`date-time` is `datetime`).
    pub fn supported(name: &str) -> Option<Format> {
        let n = name.replace('-', "");
        Some(match n.as_str() {
            "datetime" => Format::DateTime,
            "date" => Format::Date,
            "ipv4" => Format::Ipv4,
            "ipv6" => Format::Ipv6,
            "cidr" => Format::Cidr,
            "uuid" => Format::Uuid,
            "uuid3" => Format::Uuid3,
            "uuid4" => Format::Uuid4,
            "uuid5" => Format::Uuid5,
            "byte" => Format::Byte,
            "hostname" => Format::Hostname,
            "uri" => Format::Uri,
            "mac" => Format::Mac,
            "k8sshortname" => Format::K8sShortName,
            "k8slongname" => Format::K8sLongName,
            "password" => Format::Unchecked("password"),
            "bsonobjectid" => Format::Unchecked("bsonobjectid"),
            "email" => Format::Unchecked("email"),
            "isbn" => Format::Unchecked("isbn"),
            "isbn10" => Format::Unchecked("isbn10"),
            "isbn13" => Format::Unchecked("isbn13"),
            "creditcard" => Format::Unchecked("creditcard"),
            "ssn" => Format::Unchecked("ssn"),
            "hexcolor" => Format::Unchecked("hexcolor"),
            "rgbcolor" => Format::Unchecked("rgbcolor"),
            "duration" => Format::Unchecked("duration"),
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::DateTime => "date-time",
            Format::Date => "date",
            Format::Ipv4 => "ipv4",
            Format::Ipv6 => "ipv6",
            Format::Cidr => "cidr",
            Format::Uuid => "uuid",
            Format::Uuid3 => "uuid3",
            Format::Uuid4 => "uuid4",
            Format::Uuid5 => "uuid5",
            Format::Byte => "byte",
            Format::Hostname => "hostname",
            Format::Uri => "uri",
            Format::Mac => "mac",
            Format::K8sShortName => "k8s-short-name",
            Format::K8sLongName => "k8s-long-name",
            Format::Unchecked(n) => n,
        }
    }

    /// Whether `s` is valid in this format.
    pub fn accepts(self, s: &str) -> bool {
        match self {
            Format::DateTime => date_time(s),
            Format::Date => date(s),
            Format::Ipv4 => s.parse::<Ipv4Addr>().is_ok(),
            // Go's net.ParseIP accepts an IPv4 address for ipv6 too.
            Format::Ipv6 => s.parse::<IpAddr>().is_ok(),
            Format::Cidr => cidr(s),
            Format::Uuid => uuid(s, None),
            Format::Uuid3 => uuid(s, Some(b'3')),
            Format::Uuid4 => uuid(s, Some(b'4')),
            Format::Uuid5 => uuid(s, Some(b'5')),
            Format::Byte => base64(s),
            Format::Hostname => hostname(s),
            Format::Uri => uri(s),
            Format::Mac => mac(s),
            Format::K8sShortName => short_name(s),
            Format::K8sLongName => {
                !s.is_empty() && s.len() <= 253 && s.split('.').all(|seg| label(seg, false))
            }
            Format::Unchecked(_) => true,
        }
    }
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 3339 full-date.
fn date(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    p.len() == 3
        && digits(p[0], 4)
        && digits(p[1], 2)
        && digits(p[2], 2)
        && (1..=12).contains(&p[1].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&p[2].parse::<u32>().unwrap_or(0))
}

/// RFC 3339 date-time (`2006-01-02T15:04:05Z`, fractions and offsets allowed; `t`/`z` and a
/// space separator too, as strfmt's parser takes them).
fn date_time(s: &str) -> bool {
    let Some(sep) = s.find(['T', 't', ' ']) else {
        return false;
    };
    let (d, rest) = (&s[..sep], &s[sep + 1..]);
    if !date(d) || rest.len() < 8 {
        return false;
    }
    let (time, zone) = rest.split_at(8);
    let t: Vec<&str> = time.split(':').collect();
    let time_ok = t.len() == 3 && t.iter().all(|x| digits(x, 2));
    let zone = zone
        .strip_prefix('.')
        .map(|z| z.trim_start_matches(|c: char| c.is_ascii_digit()))
        .unwrap_or(zone);
    let zone_ok = matches!(zone, "Z" | "z")
        || (zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && digits(&zone[1..3], 2)
            && &zone[3..4] == ":"
            && digits(&zone[4..6], 2));
    time_ok && zone_ok
}

fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => ip.parse::<Ipv6Addr>().is_ok() && bits <= 128,
    }
}

/// `(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?V[0-9a-f]{3}-?[89ab]?...`: the strfmt patterns.
fn uuid(s: &str, version: Option<u8>) -> bool {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    let grouped = groups.len() == 1 || groups == [8, 4, 4, 4, 12];
    let b = hex.as_bytes();
    match version {
        None => grouped,
        Some(v) => {
            grouped
                && b[12] == v
                && (v == b'3' || matches!(b[16].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b'))
        }
    }
}

fn base64(s: &str) -> bool {
    let t = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - t.len() <= 2
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// A DNS label; `upper` admits upper-case letters.
fn label(s: &str, upper: bool) -> bool {
    let ok =
        |b: u8| b.is_ascii_digit() || b.is_ascii_lowercase() || (upper && b.is_ascii_uppercase());
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| ok(b) || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn short_name(s: &str) -> bool {
    label(s, false)
}

/// RFC 1034 host name, as strfmt's `IsHostname`: at most 255 characters, labels of letters,
/// digits and `-`.
fn hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty() && s.len() <= 255 && s.split('.').all(|l| label(l, true))
}

/// Go's `url.ParseRequestURI`, roughly: an absolute URI with a scheme, or an absolute path.
fn uri(s: &str) -> bool {
    if s.starts_with('/') {
        return !s.contains(char::is_whitespace);
    }
    match s.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme.as_bytes()[0].is_ascii_alphabetic()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                && !rest.is_empty()
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn mac(s: &str) -> bool {
    let sep = if s.contains(':') { ':' } else { '-' };
    let parts: Vec<&str> = s.split(sep).collect();
    matches!(parts.len(), 6 | 8 | 20)
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_formats_are_stripped_as_the_api_server_strips_them() {
        for f in ["int32", "int64", "url", "string", "float", "double"] {
            assert_eq!(Format::supported(f), None, "{f}");
        }
        assert_eq!(Format::supported("date-time"), Some(Format::DateTime));
    }

    #[test]
    fn formats_accept_and_refuse() {
        assert!(Format::DateTime.accepts("2024-05-01T10:00:00Z"));
        assert!(Format::DateTime.accepts("2024-05-01T10:00:00.123+02:00"));
        assert!(!Format::DateTime.accepts("2024-05-01"));
        assert!(Format::Ipv4.accepts("10.0.0.1"));
        assert!(!Format::Ipv4.accepts("10.0.0"));
        assert!(Format::Cidr.accepts("10.0.0.0/8"));
        assert!(!Format::Cidr.accepts("10.0.0.0/33"));
        assert!(Format::Uuid.accepts("123e4567-e89b-12d3-a456-426614174000"));
        assert!(Format::Uuid4.accepts("123e4567-e89b-42d3-a456-426614174000"));
        assert!(!Format::Uuid4.accepts("123e4567-e89b-12d3-a456-426614174000"));
        assert!(Format::Byte.accepts("aGVsbG8="));
        assert!(!Format::Byte.accepts("aGVsbG8"));
        assert!(Format::K8sShortName.accepts("sample-app"));
        assert!(!Format::K8sShortName.accepts("Sample"));
        assert!(Format::Uri.accepts("http://example.com/x"));
        assert!(!Format::Uri.accepts("example"));
    }
}
