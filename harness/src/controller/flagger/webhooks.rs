//! Flagger's webhooks (`pkg/controller/webhook.go` `callWebhook`): a JSON POST
//! with the canary's name, namespace, phase and checksum plus the hook's metadata; success iff
//! the final status is at most 202; the response body as the error text. The POST goes through
//! go-retryablehttp v0.7.8 (`Client.Do`) as Flagger configures it: `RetryMax = retries`, the
//! default `DefaultRetryPolicy` and `DefaultBackoff`, `HTTPClient.Timeout = timeout` per attempt.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// `CanaryWebhookPayload`. Missing fields read as empty, as Go's decoder leaves them (a
/// `curl -d '{"name":...,"namespace":...}'` to `/gate/open` works).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub checksum: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An HTTP answer, as far as the retry loop reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The first `Retry-After` header, as sent.
    pub retry_after: Option<String>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            retry_after: None,
        }
    }
}

/// One HTTP POST: the answer, or the transport error's text.
pub trait Transport: Send + Sync {
    fn post<'a>(
        &'a self,
        url: &'a str,
        payload: &'a Payload,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Reply, String>>;
}

/// Real HTTP with reqwest. A zero timeout is none, as Go's `http.Client.Timeout` reads it
/// (`timeout: 0s` matches the CRD's pattern).
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl Default for HttpTransport {
    fn default() -> Self {
        HttpTransport {
            client: reqwest::Client::builder()
                .build()
                .expect("a plain HTTP client builds"),
        }
    }
}

impl Transport for HttpTransport {
    fn post<'a>(
        &'a self,
        url: &'a str,
        payload: &'a Payload,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Reply, String>> {
        Box::pin(async move {
            let mut request = self.client.post(url).json(payload);
            if !timeout.is_zero() {
                request = request.timeout(timeout);
            }
            let sent = request.send().await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) if e.is_timeout() => {
                    return Err(format!(
                        "Post \"{url}\": context deadline exceeded (Client.Timeout exceeded \
                         while awaiting headers)"
                    ));
                }
                Err(e) => return Err(format!("Post \"{url}\": {e}")),
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp
                .text()
                .await
                .map_err(|e| format!("error reading body: {e}"))?;
            Ok(Reply {
                status,
                body,
                retry_after,
            })
        })
    }
}

/// `callWebhook` over go-retryablehttp's `Client.Do`: up to `retries` retries of what
/// `DefaultRetryPolicy` retries, `DefaultBackoff` apart; `Ok` iff the final status is at most
/// 202.
///
/// # Errors
/// The response body for a final status above 202; go-retryablehttp's "giving up" text when
/// the retries run out. `DefaultRetryPolicy` drops the reason it retried a status (it returns
/// `shouldRetry, nil`), so after 5xx or 429 answers the text ends at "attempt(s)"; after
/// transport errors it carries the last one.
pub async fn call(
    transport: &dyn Transport,
    url: &str,
    payload: &Payload,
    timeout: Duration,
    retries: u32,
) -> Result<(), String> {
    let mut i = 0u32;
    loop {
        let outcome = transport.post(url, payload, timeout).await;
        let retry = match &outcome {
            Ok(reply) => should_retry(reply.status),
            Err(_) => true,
        };
        if !retry || retries <= i {
            let attempts = i + 1;
            return match outcome {
                Ok(reply) if !retry => {
                    if reply.status > 202 {
                        Err(reply.body)
                    } else {
                        Ok(())
                    }
                }
                Ok(_) => Err(format!("POST {url} giving up after {attempts} attempt(s)")),
                Err(e) => Err(format!(
                    "POST {url} giving up after {attempts} attempt(s): {e}"
                )),
            };
        }
        tokio::time::sleep(backoff(i, outcome.as_ref().ok(), SystemTime::now())).await;
        i += 1;
    }
}

/// `baseRetryPolicy` for an answer: 429, and 5xx except 501 (and the invalid 0).
fn should_retry(status: u16) -> bool {
    status == 429 || status == 0 || (status >= 500 && status != 501)
}

/// `DefaultBackoff` with go-retryablehttp's defaults (1 s to 30 s): the `Retry-After` of a 429
/// or 503 when it parses (uncapped, as upstream), else 1 s doubled per retry, at most 30 s.
fn backoff(retry: u32, reply: Option<&Reply>, now: SystemTime) -> Duration {
    if let Some(r) = reply
        && matches!(r.status, 429 | 503)
        && let Some(wait) = r.retry_after.as_deref().and_then(|h| retry_after(h, now))
    {
        return wait;
    }
    const MAX: Duration = Duration::from_secs(30);
    if retry >= 5 {
        return MAX;
    }
    Duration::from_secs(1u64 << retry).min(MAX)
}

/// `parseRetryAfterHeader`: whole seconds (not negative), or an RFC 1123 date, 0 when it is
/// past; `None` when the header is empty or neither.
pub fn retry_after(header: &str, now: SystemTime) -> Option<Duration> {
    if header.is_empty() {
        return None;
    }
    if let Some(digits) = header.strip_prefix('+').or(Some(header))
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return digits.parse::<u64>().ok().map(Duration::from_secs);
    }
    if header.starts_with('-') && header[1..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let Ok(secs) = u64::try_from(rfc1123_seconds(header)?) else {
        return Some(Duration::ZERO);
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Seconds since the epoch of Go's `time.Parse(time.RFC1123, s)`
/// (`Mon, 02 Jan 2006 15:04:05 MST`); every zone abbreviation reads as UTC, as Go reads one it
/// does not know (and HTTP dates are GMT).
fn rfc1123_seconds(s: &str) -> Option<i64> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (weekday, rest) = s.split_once(", ")?;
    if !DAYS.iter().any(|d| d.eq_ignore_ascii_case(weekday)) {
        return None;
    }
    let fields: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, clock, zone] = fields.as_slice() else {
        return None;
    };
    let number = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (day, year) = (number(day, 2)?, number(year, 4)?);
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let hms: Vec<i64> = clock
        .split(':')
        .map(|p| number(p, 2))
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if zone.len() < 3 || !zone.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    if *h > 23 || *m > 59 || *sec > 59 || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm), negative
/// before it. Years have four digits at most: no overflow.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::controller::flagger::loadtester::GateServer;
    use crate::timeline::Timeline;

    fn payload() -> Payload {
        Payload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Progressing".into(),
            checksum: String::new(),
            metadata: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn hooks_travel_as_http_posts_and_202_is_the_last_success() {
        let server = GateServer::start(Timeline::new()).unwrap();
        let base = server.handle().base_url().to_string();
        let http = HttpTransport::default();
        let p = payload();
        let t = Duration::from_secs(5);
        let url = format!("{base}/gate/check");
        assert_eq!(call(&http, &url, &p, t, 0).await.unwrap_err(), "Forbidden");
        server.handle().open("podinfo.test");
        call(&http, &url, &p, t, 0).await.unwrap();
        call(&http, &url, &p, Duration::ZERO, 0)
            .await
            .expect("a zero timeout is no timeout");
        // 202 from /gate/close is a success too.
        call(&http, &format!("{base}/gate/close"), &p, t, 0)
            .await
            .unwrap();
        assert!(!server.handle().is_open("podinfo.test"));
        // Nothing listens: a transport error after the retries.
        let e = call(&http, "http://127.0.0.1:9/x", &p, t, 0)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("POST http://127.0.0.1:9/x giving up after 1 attempt(s): "),
            "{e}"
        );
    }

    /// Answers in order, and records when each POST came.
    struct Replies {
        replies: Mutex<Vec<Reply>>,
        at: Mutex<Vec<tokio::time::Instant>>,
    }

    impl Replies {
        fn new(replies: Vec<Reply>) -> Replies {
            Replies {
                replies: Mutex::new(replies),
                at: Mutex::default(),
            }
        }

        fn statuses(statuses: &[u16]) -> Replies {
            Replies::new(
                statuses
                    .iter()
                    .map(|s| Reply::new(*s, format!("status {s}")))
                    .collect(),
            )
        }

        /// The waits between consecutive POSTs.
        fn gaps(&self) -> Vec<Duration> {
            let at = self.at.lock().unwrap();
            at.windows(2).map(|w| w[1] - w[0]).collect()
        }
    }

    impl Transport for Replies {
        fn post<'a>(
            &'a self,
            _: &'a str,
            _: &'a Payload,
            _: Duration,
        ) -> BoxFuture<'a, Result<Reply, String>> {
            self.at.lock().unwrap().push(tokio::time::Instant::now());
            let r = self.replies.lock().unwrap().remove(0);
            Box::pin(async move { Ok(r) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_cover_5xx_and_204_is_a_failure() {
        let p = payload();
        let t = Duration::from_secs(1);
        let s = Replies::statuses(&[204]);
        assert_eq!(call(&s, "u", &p, t, 3).await.unwrap_err(), "status 204");
        let s = Replies::statuses(&[503, 500, 200]);
        call(&s, "u", &p, t, 2).await.unwrap();
        assert_eq!(
            s.gaps(),
            [Duration::from_secs(1), Duration::from_secs(2)],
            "1 s then 2 s back-off"
        );
        let s = Replies::statuses(&[501]);
        assert_eq!(call(&s, "u", &p, t, 5).await.unwrap_err(), "status 501");
    }

    #[tokio::test(start_paused = true)]
    async fn default_retry_policy_gives_up_without_the_status_in_the_error() {
        // `DefaultRetryPolicy` returns `(true, nil)` for a 5xx or 429: `Client.Do` then has no
        // error to wrap, and its text stops at the attempt count.
        let p = payload();
        let t = Duration::from_secs(1);
        for status in [500, 429] {
            let s = Replies::statuses(&[status, status]);
            assert_eq!(
                call(&s, "http://h/", &p, t, 1).await.unwrap_err(),
                "POST http://h/ giving up after 2 attempt(s)"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn default_backoff_honours_retry_after_on_429_and_503() {
        let p = payload();
        let t = Duration::from_secs(1);
        let with = |status: u16, after: &str| Reply {
            retry_after: Some(after.into()),
            ..Reply::new(status, "busy")
        };
        let s = Replies::new(vec![
            with(429, "7"),
            with(503, "45"),
            // Only 429 and 503 carry a wait the client honours.
            with(500, "20"),
            Reply::new(200, ""),
        ]);
        call(&s, "u", &p, t, 3).await.unwrap();
        assert_eq!(
            s.gaps(),
            [
                Duration::from_secs(7),
                Duration::from_secs(45),
                Duration::from_secs(4)
            ],
            "Retry-After is not capped at 30 s; the third wait is the back-off of retry 2"
        );
    }

    #[test]
    fn parse_retry_after_header_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_799 - 60);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("-1", now), None);
        assert_eq!(retry_after("", now), None);
        assert_eq!(retry_after("soon", now), None);
        // 1999-12-31T23:59:59Z is 946684799.
        assert_eq!(
            retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now),
            Some(Duration::from_secs(60))
        );
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            retry_after("Fri, 31 Dec 1999 23:59:59 GMT", later),
            Some(Duration::ZERO),
            "a past date is no wait"
        );
        assert_eq!(retry_after("Fri, 31 Feb 1999 23:59:59 GMT", now), None);
        assert_eq!(
            retry_after("Sat, 01 Jan 0000 00:00:00 GMT", now),
            Some(Duration::ZERO),
            "long past"
        );
        assert_eq!(rfc1123_seconds("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            rfc1123_seconds("Sat, 01 Jan 0000 00:00:00 GMT"),
            Some(-62_167_219_200),
            "before the epoch"
        );
        assert_eq!(
            rfc1123_seconds("Tue, 29 Feb 2000 12:00:00 UTC"),
            Some(951_825_600)
        );
    }
}
