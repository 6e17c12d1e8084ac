//! A small client for Prometheus' HTTP query API, shared by the analysis providers, the range
//! dumps of the artifacts and the tests. Every backend reaches its Prometheus over HTTP (a local
//! child process, or a port-forward on kind/kube), so one client serves them all.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A query result as the API returns it, with sample values parsed (`NaN`, `+Inf` included).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum QueryValue {
    Scalar(f64),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
    String(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub metric: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    /// (unix seconds, value)
    pub values: Vec<(f64, f64)>,
}

impl QueryValue {
    /// The values of an instant vector, or the one value of a scalar.
    pub fn values(&self) -> Vec<f64> {
        match self {
            QueryValue::Scalar(v) => vec![*v],
            QueryValue::Vector(v) => v.iter().map(|s| s.value).collect(),
            QueryValue::Matrix(m) => m
                .iter()
                .filter_map(|s| s.values.last().map(|v| v.1))
                .collect(),
            QueryValue::String(_) => vec![],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Prometheus refused the query ({error_type}): {error}")]
    Query { error_type: String, error: String },
    #[error("Prometheus answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("unexpected answer from Prometheus: {0}")]
    Decode(String),
}

impl PromError {
    /// Whether the fault lies with the Prometheus server rather than the query.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, PromError::Unreachable { .. })
    }
}

#[derive(Clone, Debug)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
}

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

/// Parses a sample value as Prometheus writes it (`"0.93"`, `"NaN"`, `"+Inf"`, `"-Inf"`).
pub fn parse_value(s: &str) -> Result<f64, PromError> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse()
            .map_err(|_| PromError::Decode(format!("`{s}` is not a number"))),
    }
}

impl PromClient {
    /// A client that asks for uncompressed answers: the binary's reqwest has `gzip` on (the
    /// load generator asks for it), and Prometheus then allocates a fresh deflate writer per
    /// answer; on `gauntlet power`'s default Argo grid that was 28 % of the server's CPU, for
    /// answers of a few hundred bytes over loopback.
    pub fn new(base: impl Into<String>) -> Self {
        PromClient {
            base: base.into().trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .no_gzip()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// An instant query at the server's current time.
    pub async fn query(&self, query: &str) -> Result<QueryValue, PromError> {
        self.get("/api/v1/query", &[("query", query.to_string())])
            .await
    }

    /// An instant query evaluated at unix time `time` (`/api/v1/query?time=`): what the
    /// server would have answered then, given the samples it holds. `gauntlet power` asks at
    /// the simulated measurement times of its virtual clock.
    pub async fn query_at(&self, query: &str, time: f64) -> Result<QueryValue, PromError> {
        self.get(
            "/api/v1/query",
            &[("query", query.to_string()), ("time", format!("{time:.3}"))],
        )
        .await
    }

    /// A range query between two unix times, `step` apart.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<QueryValue, PromError> {
        self.get(
            "/api/v1/query_range",
            &[
                ("query", query.to_string()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", format!("{}ms", step.as_millis().max(1))),
            ],
        )
        .await
    }

    /// Whether the server answers `/-/ready` with 200.
    pub async fn ready(&self) -> bool {
        matches!(
            self.http.get(format!("{}/-/ready", self.base)).timeout(Duration::from_secs(1)).send().await,
            Ok(r) if r.status().is_success()
        )
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<QueryValue, PromError> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), params)
            .map_err(|e| PromError::Decode(format!("bad Prometheus address {}: {e}", self.base)))?;
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| PromError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|source| PromError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let env: Envelope = serde_json::from_str(&body).map_err(|_| PromError::Http {
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
    use serde_json::json;

    #[test]
    fn vectors_keep_nan_and_inf() {
        let v = decode(
            "vector",
            json!([
                {"metric": {"pod": "a"}, "value": [1.0, "NaN"]},
                {"metric": {}, "value": [1.0, "+Inf"]},
                {"metric": {}, "value": [1.0, "0.25"]}
            ]),
        )
        .unwrap();
        let vals = v.values();
        assert!(vals[0].is_nan());
        assert_eq!(vals[1], f64::INFINITY);
        assert_eq!(vals[2], 0.25);
    }

    #[test]
    fn scalars_and_matrices_decode() {
        assert_eq!(
            decode("scalar", json!([1.0, "-Inf"])).unwrap(),
            QueryValue::Scalar(f64::NEG_INFINITY)
        );
        let m = decode(
            "matrix",
            json!([{"metric": {"a": "b"}, "values": [[1.0, "1"], [2.0, "2"]]}]),
        )
        .unwrap();
        assert_eq!(m.values(), vec![2.0]);
        assert!(decode("vector", json!([{"metric": {}, "value": [1.0, "x"]}])).is_err());
    }

    /// Prometheus compresses whatever the client offers to take compressed; the client must
    /// not offer it (see [`PromClient::new`]).
    #[tokio::test]
    async fn queries_ask_for_uncompressed_answers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client hung up mid-request");
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).to_ascii_lowercase()
        });
        let value = PromClient::new(base).query_at("up", 1.0).await.unwrap();
        assert_eq!(value, QueryValue::Scalar(2.0));
        let request = server.await.unwrap();
        assert!(request.starts_with("get /api/v1/query?"), "{request}");
        assert!(
            !request
                .lines()
                .any(|l| l.starts_with("accept-encoding:") && l.contains("gzip")),
            "the query offered gzip:\n{request}"
        );
    }
}
