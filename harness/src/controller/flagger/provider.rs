//! Flagger's Prometheus provider (`pkg/metrics/providers/prometheus.go` `RunQuery`): one instant
//! query under a 5 s timeout, its answer read as one number. Flagger decodes every answer into
//! a list of series, each with `value` or `values`: a matrix (any series with `values`) is
//! refused as "query returned multiple values", a vector gives its last series' value, no
//! series or NaN is "no values found", and a scalar or string does not decode at all.
//!
//! [`Provider`] is the seam with I/O: it hands back the raw answer, so a script can stand in
//! for Prometheus under a paused clock, and [`read_answer`] applies Flagger's rules to it.

use std::future::Future;
use std::time::Duration;

use crate::prom::{PromClient, PromError, QueryValue};

/// `NewPrometheusProvider`: Flagger gives up on a query after this long.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// `providers.ErrNoValuesFound`.
pub const NO_VALUES: &str = "no values found";

/// `providers.ErrMultipleValuesReturned`.
pub const MULTIPLE_VALUES: &str = "query returned multiple values";

/// Where Flagger's queries go.
pub trait Provider {
    /// Runs `query` as an instant query; the answer, or the text of Flagger's error for a
    /// request that failed or was refused.
    fn run_query(
        &self,
        query: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<QueryValue, String>> + Send;
}

impl Provider for PromClient {
    async fn run_query(&self, query: &str, timeout: Duration) -> Result<QueryValue, String> {
        match tokio::time::timeout(timeout, self.query(query)).await {
            Err(_) => Err(format!(
                "request failed: Get \"{}/api/v1/query\": context deadline exceeded",
                self.base()
            )),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error_text(e)),
        }
    }
}

/// Flagger's words for a failed request: `request failed: ...` when nothing answered,
/// `error response: Status <code> <text>: <body>` for an HTTP error (Prometheus refuses a query
/// with 400 for `bad_data`, 422 for `execution`, 503 for `timeout`), `error unmarshaling
/// result: ...` otherwise.
fn error_text(e: PromError) -> String {
    let status_line = |code: u16| {
        let reason = reqwest::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        format!("Status {code} {reason}")
    };
    match e {
        PromError::Unreachable { source, .. } => format!("request failed: {source}"),
        PromError::Query { error_type, error } => {
            let code = match error_type.as_str() {
                "bad_data" => 400,
                "not_found" => 404,
                "execution" => 422,
                "timeout" | "canceled" | "unavailable" => 503,
                _ => 500,
            };
            // Prometheus' own field order.
            let quoted = |s: &str| serde_json::Value::from(s).to_string();
            let body = format!(
                r#"{{"status":"error","errorType":{},"error":{}}}"#,
                quoted(&error_type),
                quoted(&error)
            );
            format!("error response: {}: {body}", status_line(code))
        }
        PromError::Http { status, body } if status >= 400 => {
            format!("error response: {}: {body}", status_line(status))
        }
        PromError::Http { body, .. } => format!("error unmarshaling result: '{body}'"),
        PromError::Decode(e) => format!("error unmarshaling result: {e}"),
    }
}

/// What the provider made of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Value(f64),
    /// `ErrNoValuesFound`: no series, or NaN.
    NoValues,
    /// Any other error, with its text.
    Error(String),
}

/// `RunQuery` after the HTTP exchange: a matrix with a series is `ErrMultipleValuesReturned`;
/// a vector's last series wins; no series or NaN is `ErrNoValuesFound`; a scalar or string
/// result (`[<time>, "<value>"]`) does not decode into Flagger's list of series.
pub fn read_answer(answer: Result<QueryValue, String>) -> Reading {
    let last = match answer {
        Err(e) => return Reading::Error(e),
        Ok(QueryValue::Matrix(series)) if !series.is_empty() => {
            return Reading::Error(MULTIPLE_VALUES.into());
        }
        Ok(QueryValue::Matrix(_)) => None,
        Ok(QueryValue::Vector(samples)) => samples.last().map(|s| s.value),
        Ok(QueryValue::Scalar(_) | QueryValue::String(_)) => {
            return Reading::Error(
                "error unmarshaling result: json: cannot unmarshal number into Go struct field \
                 .Data.Result of type struct"
                    .into(),
            );
        }
    };
    match last {
        Some(v) if !v.is_nan() => Reading::Value(v),
        _ => Reading::NoValues,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::prom::{Sample, Series};

    fn vector(values: &[f64]) -> Result<QueryValue, String> {
        Ok(QueryValue::Vector(
            values
                .iter()
                .map(|v| Sample {
                    metric: BTreeMap::new(),
                    value: *v,
                })
                .collect(),
        ))
    }

    #[test]
    fn run_query_takes_the_last_series_and_empty_or_nan_is_no_values() {
        assert_eq!(read_answer(vector(&[])), Reading::NoValues);
        assert_eq!(read_answer(vector(&[f64::NAN])), Reading::NoValues);
        assert_eq!(read_answer(vector(&[1.0, 2.0])), Reading::Value(2.0));
        assert_eq!(
            read_answer(vector(&[1.0, f64::NAN])),
            Reading::NoValues,
            "the last series wins even when it is NaN"
        );
        assert_eq!(
            read_answer(Err("boom".into())),
            Reading::Error("boom".into())
        );
        assert!(matches!(
            read_answer(Ok(QueryValue::Scalar(1.0))),
            Reading::Error(e) if e.starts_with("error unmarshaling result: ")
        ));
    }

    #[test]
    fn run_query_refuses_a_matrix_as_multiple_values() {
        let series = |values: &[f64]| Series {
            metric: BTreeMap::new(),
            values: values
                .iter()
                .enumerate()
                .map(|(t, v)| (t as f64, *v))
                .collect(),
        };
        // One series with passing samples: still refused, whatever its values.
        assert_eq!(
            read_answer(Ok(QueryValue::Matrix(vec![series(&[0.0, 0.0])]))),
            Reading::Error(MULTIPLE_VALUES.into())
        );
        assert_eq!(
            read_answer(Ok(QueryValue::Matrix(vec![series(&[1.0]), series(&[0.0])]))),
            Reading::Error(MULTIPLE_VALUES.into())
        );
        // No series at all decodes to an empty list: no values.
        assert_eq!(
            read_answer(Ok(QueryValue::Matrix(vec![]))),
            Reading::NoValues
        );
    }

    #[test]
    fn refused_queries_read_as_flaggers_error_response() {
        let e = error_text(PromError::Query {
            error_type: "bad_data".into(),
            error: "parse error".into(),
        });
        assert_eq!(
            e,
            r#"error response: Status 400 Bad Request: {"status":"error","errorType":"bad_data","error":"parse error"}"#
        );
    }
}
