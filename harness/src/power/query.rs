//! The instant query of a simulated measurement, sent with `Accept-Encoding: identity`.
//!
//! The binary's reqwest has its `gzip` feature on (the load generator's dependency asks for it),
//! so every client offers gzip, and Prometheus then compresses each answer, allocating a fresh
//! deflate writer per response: measured on the default Argo grid that was 28 % of the
//! server's CPU, and most of its garbage collection, for answers of a few hundred loopback
//! bytes. `crate::prom::PromClient` offers no per-request header, so the query is sent here and
//! read exactly as it reads it (`crate::prom`'s envelope and result types).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::prom::{PromError, QueryValue, Sample, Series, parse_value};

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Option<Vec<(f64, String)>>,
}

/// `GET {base}/api/v1/query?query=..&time=..`, uncompressed.
///
/// # Errors
/// As [`crate::prom::PromClient::query_at`].
pub async fn query_at(
    http: &reqwest::Client,
    base: &str,
    query: &str,
    time: f64,
) -> Result<QueryValue, PromError> {
    let url = reqwest::Url::parse_with_params(
        &format!("{base}/api/v1/query"),
        &[("query", query.to_string()), ("time", format!("{time:.3}"))],
    )
    .map_err(|e| PromError::Decode(format!("bad Prometheus address {base}: {e}")))?;
    let unreachable = |source| PromError::Unreachable {
        url: base.to_string(),
        source,
    };
    let resp = http
        .get(url)
        .header("Accept-Encoding", "identity")
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(unreachable)?;
    read(status, &body)
}

/// An answer's body as `crate::prom` reads it.
fn read(status: u16, body: &str) -> Result<QueryValue, PromError> {
    let env: Envelope = serde_json::from_str(body).map_err(|_| PromError::Http {
        status,
        body: body.chars().take(300).collect(),
    })?;
    if env.status != "success" {
        return Err(PromError::Query {
            error_type: env.error_type.unwrap_or_default(),
            error: env.error.unwrap_or_default(),
        });
    }
    let data = env
        .data
        .ok_or_else(|| PromError::Decode("no data in a successful answer".into()))?;
    decode(&data.result_type, data.result)
}

fn decode(kind: &str, result: serde_json::Value) -> Result<QueryValue, PromError> {
    let bad = |e: serde_json::Error| PromError::Decode(e.to_string());
    match kind {
        "scalar" | "string" => {
            let (_, v): (f64, String) = serde_json::from_value(result).map_err(bad)?;
            if kind == "scalar" {
                Ok(QueryValue::Scalar(parse_value(&v)?))
            } else {
                Ok(QueryValue::String(v))
            }
        }
        "vector" => {
            let raw: Vec<RawSample> = serde_json::from_value(result).map_err(bad)?;
            let mut out = Vec::with_capacity(raw.len());
            for r in raw {
                let (_, v) = r
                    .value
                    .ok_or_else(|| PromError::Decode("vector sample without value".into()))?;
                out.push(Sample {
                    metric: r.metric,
                    value: parse_value(&v)?,
                });
            }
            Ok(QueryValue::Vector(out))
        }
        "matrix" => {
            let raw: Vec<RawSample> = serde_json::from_value(result).map_err(bad)?;
            let mut out = Vec::with_capacity(raw.len());
            for r in raw {
                let values = r
                    .values
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, v)| Ok((t, parse_value(&v)?)))
                    .collect::<Result<_, PromError>>()?;
                out.push(Series {
                    metric: r.metric,
                    values,
                });
            }
            Ok(QueryValue::Matrix(out))
        }
        other => Err(PromError::Decode(format!("unknown resultType `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_the_prom_client_reads_them() {
        let v = read(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1,"NaN"]},{"metric":{},"value":[1,"0.93"]}]}}"#,
        )
        .unwrap();
        let QueryValue::Vector(s) = v else {
            panic!("{v:?}")
        };
        assert!(s[0].value.is_nan() && s[0].metric["a"] == "b");
        assert_eq!(s[1].value, 0.93);
        assert_eq!(
            read(
                200,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#
            )
            .unwrap(),
            QueryValue::Scalar(f64::INFINITY)
        );
        assert!(matches!(
            read(400, r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#),
            Err(PromError::Query { error_type, .. }) if error_type == "bad_data"
        ));
        assert!(matches!(
            read(502, "Bad Gateway"),
            Err(PromError::Http { status: 502, .. })
        ));
    }
}
