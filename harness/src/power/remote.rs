//! The series writer's OpenMetrics text as a Prometheus remote-write request (protobuf
//! `prometheus.WriteRequest`, snappy block format), for `--web.enable-remote-write-receiver`.
//!
//! The text stays the one representation of the synthetic samples ([`super::series`] writes it,
//! and its tests check it against promtool); this module only carries it into the server's head
//! without a backfill and a restart per batch. Label values and sample values are passed on as
//! the text spells them (`le="0.005"` stays that string; a value's decimal is parsed to the same
//! float by Rust and Go, both correctly rounded), so a query reads what it would read from the
//! backfilled blocks.
//!
//! No protobuf or snappy crate is needed for this little: the message is three nested repeated
//! fields, and a snappy stream of literals only is valid snappy (compression would cost CPU on
//! both sides to save loopback bytes).

use std::collections::HashMap;

/// One series of a request: sorted labels, `__name__` included, and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    /// (unix milliseconds, value)
    pub samples: Vec<(i64, f64)>,
}

/// Groups the lines of an exposition (`name{labels} value seconds`, `# ...` lines skipped) by
/// series, in order of first appearance.
///
/// # Errors
/// A line this module cannot read (a bug in the writer: its own output is the only input).
pub fn parse(text: &str) -> Result<Vec<Series>, String> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("unreadable sample line `{line}`");
        let key_end = series_end(line).ok_or_else(bad)?;
        let (key, rest) = line.split_at(key_end);
        let mut fields = rest.split_ascii_whitespace();
        let value: f64 = parse_value(fields.next().ok_or_else(bad)?).ok_or_else(bad)?;
        let seconds: f64 = fields.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let ms = (seconds * 1000.0).round() as i64;
        let i = match index.get(key) {
            Some(i) => *i,
            None => {
                let labels = labels(key).ok_or_else(bad)?;
                out.push(Series {
                    labels,
                    samples: Vec::new(),
                });
                index.insert(key, out.len() - 1);
                out.len() - 1
            }
        };
        out[i].samples.push((ms, value));
    }
    Ok(out)
}

/// Where the series part of a line ends: after its `}` (quotes respected), or at the first
/// space when it has no labels.
fn series_end(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let open = line.find(['{', ' '])?;
    if b[open] == b' ' {
        return Some(open);
    }
    let mut in_quotes = false;
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'}' if !in_quotes => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// OpenMetrics' spellings of the special values, then Rust's float syntax.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// `name{a="x",b="y"}` as sorted label pairs with `__name__`, escapes undone.
fn labels(key: &str) -> Option<Vec<(String, String)>> {
    let (name, body) = match key.split_once('{') {
        Some((n, b)) => (n, b.strip_suffix('}')?),
        None => (key, ""),
    };
    let mut out = vec![("__name__".to_string(), name.to_string())];
    let mut rest = body;
    while !rest.is_empty() {
        let (lname, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        out.push((lname.trim_start_matches(',').to_string(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    // Prometheus keeps labels sorted by name; send them so.
    out.sort();
    Some(out)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn bytes_field(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// The protobuf `prometheus.WriteRequest` of `series`.
pub fn encode(series: &[Series]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ts = Vec::new();
    let mut item = Vec::new();
    for s in series {
        ts.clear();
        for (name, value) in &s.labels {
            item.clear();
            bytes_field(&mut item, 1, name.as_bytes());
            bytes_field(&mut item, 2, value.as_bytes());
            bytes_field(&mut ts, 1, &item);
        }
        for (ms, value) in &s.samples {
            item.clear();
            // value: double, field 1 (wire type 1); timestamp: int64, field 2 (varint).
            item.push(0x09);
            item.extend_from_slice(&value.to_le_bytes());
            item.push(0x10);
            varint(&mut item, *ms as u64);
            bytes_field(&mut ts, 2, &item);
        }
        bytes_field(&mut out, 1, &ts);
    }
    out
}

/// `data` in snappy's block format, as literals only.
pub fn snappy_literal(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65536 * 3 + 8);
    varint(&mut out, data.len() as u64);
    for chunk in data.chunks(65536) {
        let n = chunk.len() - 1;
        if n < 60 {
            out.push((n as u8) << 2);
        } else if n < 256 {
            out.push(60 << 2);
            out.push(n as u8);
        } else {
            out.push(61 << 2);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// The body of a remote-write request for an exposition, and its number of samples.
///
/// # Errors
/// See [`parse`].
pub fn body(text: &str) -> Result<(Vec<u8>, u64), String> {
    let series = parse(text)?;
    let samples = series.iter().map(|s| s.samples.len() as u64).sum();
    Ok((snappy_literal(&encode(&series)), samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_group_by_series_with_labels_sorted_and_unescaped() {
        let text =
            "b{z=\"1\",a=\"x\\\"}y\"} 3 1000\nb{z=\"1\",a=\"x\\\"}y\"} 4.5 1001\nc 0 1000\n# EOF\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].labels,
            vec![
                ("__name__".into(), "b".into()),
                ("a".into(), "x\"}y".into()),
                ("z".into(), "1".into())
            ]
        );
        assert_eq!(s[0].samples, vec![(1_000_000, 3.0), (1_001_000, 4.5)]);
        assert_eq!(s[1].labels, vec![("__name__".into(), "c".into())]);
        assert!(parse("x{a=\"1\" 3 4\n").is_err());
    }

    #[test]
    fn the_encoding_is_protobufs() {
        let s = Series {
            labels: vec![("a".into(), "b".into())],
            samples: vec![(1, 2.0)],
        };
        let label = [0x0a, 1, b'a', 0x12, 1, b'b'];
        let mut sample = vec![0x09];
        sample.extend_from_slice(&2.0f64.to_le_bytes());
        sample.extend_from_slice(&[0x10, 1]);
        let mut ts = vec![0x0a, label.len() as u8];
        ts.extend_from_slice(&label);
        ts.extend_from_slice(&[0x12, sample.len() as u8]);
        ts.extend_from_slice(&sample);
        let mut want = vec![0x0a, ts.len() as u8];
        want.extend_from_slice(&ts);
        assert_eq!(encode(&[s]), want);
    }

    #[test]
    fn snappy_literals_carry_their_lengths() {
        assert_eq!(snappy_literal(b"abc"), vec![3, 2 << 2, b'a', b'b', b'c']);
        let long = vec![7u8; 70_000];
        let out = snappy_literal(&long);
        // varint 70000, a 65536-byte literal (61: two length bytes), then 4464 more.
        assert_eq!(&out[..3], &[0xf0, 0xa2, 0x04]);
        assert_eq!(&out[3..6], &[61 << 2, 0xff, 0xff]);
        assert_eq!(&out[6 + 65536..6 + 65536 + 3], &[61 << 2, 0x6f, 0x11]);
        assert_eq!(out.len(), 3 + 3 + 65536 + 3 + 4464);
    }
}
