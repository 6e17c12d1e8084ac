//! The node's own series, served on the kubelet's port: what cAdvisor and kube-state-metrics
//! give a cluster's Prometheus for the pods this node runs (`container_memory_working_set_bytes`,
//! `kube_pod_container_status_restarts_total`, ...), with their `namespace`, `pod` and
//! `container` labels; served by the kubelet API ([`super::server`]).

use super::NodeContext;
use crate::cluster::local::exporter::PodSample;

/// The pod samples of every container the node runs.
pub fn samples(ctx: &NodeContext) -> Vec<PodSample> {
    ctx.running()
        .into_iter()
        .map(|c| {
            let rt = c.usage.runtime();
            PodSample {
                namespace: c.namespace,
                pod: c.pod,
                container: c.container,
                ready: rt.running && rt.ready_since.is_some(),
                restarts: rt.restarts,
                last_termination: rt.last_termination.clone(),
                working_set: c.usage.working_set(),
                cpu_seconds: c.usage.cpu_seconds(),
                memory_limit: c.memory_limit,
            }
        })
        .collect()
}
