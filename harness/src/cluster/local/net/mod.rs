//! The real tier's network: one network namespace per cluster and per pod, the pods' IPs, the
//! Services' names, and relays from the host's loopback into the cluster.

pub mod dns;
pub mod placement;

pub use self::placement::Placement;
