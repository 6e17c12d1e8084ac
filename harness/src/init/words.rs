//! Numbers as the suites' comments write them (`2.5 s`, `30 %`, `48 MiB`), and as scenario
//! values (`30%`, `1500ms`, `1280KiB/s`).

use std::time::Duration;

/// `2.5 s`, `15 s`, `12.6 s`, `85 s`: one decimal when there is one.
pub fn secs(d: Duration) -> String {
    let tenths = (d.as_secs_f64() * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0} s")
    } else {
        format!("{tenths:.1} s")
    }
}

/// `500 ms` below a second, else as [`secs`].
pub fn time(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        secs(d)
    }
}

/// `5 %`, `0.5 %`, `99.9 %` for a share 0..=1.
pub fn pct(share: f64) -> String {
    let p = share * 100.0;
    let rounded = (p * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0} %")
    } else {
        format!("{}", rounded).trim_end_matches('0').to_string() + " %"
    }
}

/// `48 MiB`, `1.3 MiB`, `512 KiB`.
pub fn bytes(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b >= 1 << 20 {
        let m = b as f64 / MIB;
        if (m - m.round()).abs() < 0.05 {
            format!("{:.0} MiB", m.round())
        } else {
            format!("{m:.1} MiB")
        }
    } else {
        format!("{} KiB", b / 1024)
    }
}

/// A scenario share: `30%`.
pub fn share_value(share: f64) -> String {
    format!("{}%", (share * 100.0).round())
}

/// A scenario duration: `1500ms`, `45s`.
pub fn duration_value(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A scenario byte rate: `2MiB/s`, `1280KiB/s`.
pub fn byte_rate_value(bytes_per_sec: u64) -> String {
    if bytes_per_sec.is_multiple_of(1 << 20) {
        format!("{}MiB/s", bytes_per_sec >> 20)
    } else {
        format!("{}KiB/s", bytes_per_sec / 1024)
    }
}

/// A scenario load rate: `300/s`.
pub fn rate_value(per_sec: f64) -> String {
    format!("{}/s", per_sec.round())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_the_suites_write_them() {
        assert_eq!(secs(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(secs(Duration::from_secs(15)), "15 s");
        assert_eq!(secs(Duration::from_millis(12_600)), "12.6 s");
        assert_eq!(time(Duration::from_millis(500)), "500 ms");
        assert_eq!(pct(0.05), "5 %");
        assert_eq!(pct(0.001), "0.1 %");
        assert_eq!(bytes(48 << 20), "48 MiB");
        assert_eq!(bytes(1_572_864), "1.5 MiB");
        assert_eq!(share_value(0.3), "30%");
        assert_eq!(duration_value(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_value(Duration::from_secs(45)), "45s");
        assert_eq!(duration_value(Duration::ZERO), "0s");
        assert_eq!(byte_rate_value(2 << 20), "2MiB/s");
        assert_eq!(byte_rate_value(1280 * 1024), "1280KiB/s");
        assert_eq!(rate_value(300.0), "300/s");
    }
}
