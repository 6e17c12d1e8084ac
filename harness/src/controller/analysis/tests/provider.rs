//! The Prometheus provider's answers as the conditions see them.

use super::*;

#[test]
fn prometheus_answers_become_condition_values() {
    use crate::prom::{Sample, Series};
    let sample = |v: f64| Sample {
        metric: BTreeMap::new(),
        value: v,
    };
    assert_eq!(
        metric_value_from_query(QueryValue::Vector(vec![sample(0.99), sample(1.0)])),
        Ok(MetricValue::Vector(vec![0.99, 1.0]))
    );
    assert_eq!(
        metric_value_from_query(QueryValue::Vector(vec![])),
        Ok(MetricValue::Vector(vec![]))
    );
    assert_eq!(
        metric_value_from_query(QueryValue::Scalar(0.5)),
        Ok(MetricValue::Scalar(0.5))
    );
    let series = |vs: &[f64]| Series {
        metric: BTreeMap::new(),
        values: vs.iter().enumerate().map(|(t, v)| (t as f64, *v)).collect(),
    };
    assert_eq!(
        metric_value_from_query(QueryValue::Matrix(vec![
            series(&[1.0, 2.0]),
            series(&[3.0])
        ])),
        Ok(MetricValue::Vector(vec![1.0, 2.0, 3.0]))
    );
    assert_eq!(
        metric_value_from_query(QueryValue::String("x".into())),
        Err("Prometheus metric type not supported".to_string())
    );
}
