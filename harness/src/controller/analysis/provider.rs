//! Where measurements come from: the [`MetricSource`] seam, and Argo's Prometheus provider
//! (`metricproviders/prometheus`) on top of [`PromClient`].

use std::future::Future;
use std::time::Duration;

use crate::controller::expr::MetricValue;
use crate::prom::{PromClient, PromError, QueryValue};

/// Where measurements come from. The one seam with I/O, so the state machine can be driven by a
/// script under a paused clock.
pub trait MetricSource {
    /// Runs `query` and returns its value, or the text of an Error measurement (provider error,
    /// timeout, unsupported result type).
    fn measure(
        &self,
        query: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<MetricValue, String>> + Send;
}

impl MetricSource for PromClient {
    async fn measure(&self, query: &str, timeout: Duration) -> Result<MetricValue, String> {
        measure_prometheus(self, query, timeout).await
    }
}

/// Argo's Prometheus provider: an instant query under the metric's timeout, its answer turned
/// into the value the conditions see.
///
/// # Errors
/// The measurement's Error message: a timeout reads like client_golang's
/// `context deadline exceeded`, a refused query as `<errorType>: <error>`.
pub async fn measure_prometheus(
    client: &PromClient,
    query: &str,
    timeout: Duration,
) -> Result<MetricValue, String> {
    match tokio::time::timeout(timeout, client.query(query)).await {
        Err(_) => Err(format!(
            "Post \"{}/api/v1/query\": context deadline exceeded",
            client.base()
        )),
        Ok(Err(PromError::Query { error_type, error })) => Err(format!("{error_type}: {error}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(value)) => metric_value_from_query(value),
    }
}

/// The value a condition sees for a Prometheus answer: a vector is a list of its sample values
/// (possibly empty, possibly NaN), a scalar a number, a matrix every sample of every series in
/// order.
///
/// # Errors
/// `Prometheus metric type not supported` for a string result, as Argo says.
pub fn metric_value_from_query(value: QueryValue) -> Result<MetricValue, String> {
    match value {
        QueryValue::Scalar(v) => Ok(MetricValue::Scalar(v)),
        QueryValue::Vector(samples) => Ok(MetricValue::Vector(
            samples.into_iter().map(|s| s.value).collect(),
        )),
        QueryValue::Matrix(series) => Ok(MetricValue::Vector(
            series
                .into_iter()
                .flat_map(|s| s.values.into_iter().map(|(_, v)| v))
                .collect(),
        )),
        QueryValue::String(_) => Err("Prometheus metric type not supported".into()),
    }
}
