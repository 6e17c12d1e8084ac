//! Load through the ingress: the HTTP client rules every request of a scenario follows.

pub mod client;
