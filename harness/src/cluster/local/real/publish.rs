//! Services for what the node runs itself (cluster DNS, Prometheus), published under the names
//! the user's manifests use, as their cluster would have them: a Service without a selector and
//! its endpoints at the node's address. Flagger's loadtester, which the API server's service
//! proxy must reach (it proxies to pods only), runs as upstream's Deployment instead
//! ([`super::loadtester`]). The user's
//! manifests are never rewritten; an AnalysisTemplate's `http://prometheus.monitoring.svc:9090`
//! then resolves and connects, through cluster DNS and kube-proxy, as it would there.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::cluster::local::net::{CLUSTER_DOMAIN, DNS_SERVICE_IP, NODE_IP};
use crate::spec::Manifests;

/// A Service of the node: `name.namespace:port` forwarding to the node's `target_port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeService {
    pub namespace: String,
    pub name: String,
    pub port: u16,
    pub target_port: u16,
    pub protocols: Vec<&'static str>,
    /// A fixed ClusterIP (kube-dns's), else one the API server allocates.
    pub cluster_ip: Option<String>,
}

impl NodeService {
    pub fn tcp(namespace: &str, name: &str, port: u16, target_port: u16) -> NodeService {
        NodeService {
            namespace: namespace.into(),
            name: name.into(),
            port,
            target_port,
            protocols: vec!["TCP"],
            cluster_ip: None,
        }
    }

    /// `kube-system/kube-dns` at [`DNS_SERVICE_IP`], served by gauntlet's DNS on the node.
    pub fn kube_dns() -> NodeService {
        NodeService {
            namespace: "kube-system".into(),
            name: "kube-dns".into(),
            port: 53,
            target_port: 53,
            protocols: vec!["UDP", "TCP"],
            cluster_ip: Some(DNS_SERVICE_IP.to_string()),
        }
    }

    /// The Service, its Endpoints and its EndpointSlice, as server-side apply bodies. The
    /// legacy Endpoints is what the API server's service proxy reads (Flagger's gates are
    /// reached through it); kube-proxy reads the slice. The Endpoints carries `skip-mirror`, so
    /// kube-controller-manager does not mirror it into a second slice.
    pub fn objects(&self) -> [Value; 3] {
        let port_name = |p: &str| format!("p{}-{}", self.port, p.to_ascii_lowercase());
        let mut spec = json!({
            "ports": self.protocols.iter().map(|p| json!({
                "name": port_name(p), "port": self.port, "targetPort": self.target_port, "protocol": p,
            })).collect::<Vec<_>>(),
        });
        if let Some(ip) = &self.cluster_ip {
            spec["clusterIP"] = ip.clone().into();
        }
        let labels = json!({"app.kubernetes.io/managed-by": "gauntlet"});
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": labels},
            "spec": spec,
        });
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-gauntlet-node", self.name),
                "namespace": self.namespace,
                "labels": {
                    "kubernetes.io/service-name": self.name,
                    "endpointslice.kubernetes.io/managed-by": "gauntlet.dev",
                    "app.kubernetes.io/managed-by": "gauntlet",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP.to_string()], "conditions": {"ready": true}}],
            "ports": self.protocols.iter().map(|p| json!({
                "name": port_name(p), "port": self.target_port, "protocol": p,
            })).collect::<Vec<_>>(),
        });
        let endpoints = json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    "endpointslice.kubernetes.io/skip-mirror": "true",
                    "app.kubernetes.io/managed-by": "gauntlet",
                },
            },
            "subsets": [{
                "addresses": [{"ip": NODE_IP.to_string()}],
                "ports": self.protocols.iter().map(|p| json!({
                    "name": port_name(p), "port": self.target_port, "protocol": p,
                })).collect::<Vec<_>>(),
            }],
        });
        [service, endpoints, slice]
    }
}

/// A Service named by the host of `url`, as cluster DNS resolves it for a process in
/// `namespace`: `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`. `None` for an IP or
/// a name outside the cluster.
pub fn service_of(url: &str, namespace: &str) -> Option<(String, String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let port = u.port_or_known_default()?;
    let labels: Vec<&str> = host.split('.').collect();
    let domain: Vec<&str> = CLUSTER_DOMAIN.split('.').collect();
    let (svc, ns) = match labels.as_slice() {
        [svc] => (*svc, namespace),
        [svc, ns] => (*svc, *ns),
        [svc, ns, "svc"] => (*svc, *ns),
        [svc, ns, "svc", rest @ ..] if rest == domain.as_slice() => (*svc, *ns),
        _ => return None,
    };
    Some((svc.to_string(), ns.to_string(), port))
}

/// The Prometheus addresses and webhook URLs of a target, from the fields that hold them:
/// `AnalysisTemplate` / `ClusterAnalysisTemplate` `spec.metrics[].provider.prometheus.address`,
/// `MetricTemplate` `spec.provider.address`, and a `Canary`'s `spec.analysis.webhooks[].url`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    pub prometheus: BTreeSet<String>,
    pub webhooks: BTreeSet<String>,
}

pub fn addresses(m: &Manifests) -> Addresses {
    let mut out = Addresses::default();
    let templates = m
        .analysis_templates
        .iter()
        .map(|t| &t.raw)
        .chain(m.cluster_analysis_templates.iter().map(|t| &t.raw));
    for t in templates {
        for metric in t
            .pointer("/spec/metrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(a) = metric
                .pointer("/provider/prometheus/address")
                .and_then(Value::as_str)
            {
                out.prometheus.insert(a.to_string());
            }
        }
    }
    for o in &m.others {
        match o.kind.as_str() {
            "MetricTemplate" => {
                let prom = o
                    .value
                    .pointer("/spec/provider/type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "prometheus");
                if let (true, Some(a)) = (
                    prom,
                    o.value
                        .pointer("/spec/provider/address")
                        .and_then(Value::as_str),
                ) {
                    out.prometheus.insert(a.to_string());
                }
            }
            "Canary" => {
                let hooks = o
                    .value
                    .pointer("/spec/analysis/webhooks")
                    .and_then(Value::as_array);
                for h in hooks.into_iter().flatten() {
                    if let Some(u) = h.get("url").and_then(Value::as_str) {
                        out.webhooks.insert(u.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The node Services a target needs: one per Prometheus address (to the node's Prometheus on
/// `prometheus_port`), named from `controller_namespace` for names without a namespace (the
/// controller resolves them), leaving out every Service the target deploys itself.
pub fn wanted(m: &Manifests, controller_namespace: &str, prometheus_port: u16) -> Vec<NodeService> {
    let a = addresses(m);
    let mut out = BTreeSet::new();
    for url in &a.prometheus {
        if let Some((svc, ns, port)) = service_of(url, controller_namespace)
            && m.service(&ns, &svc).is_none()
        {
            out.insert(NodeService::tcp(&ns, &svc, port, prometheus_port));
        }
    }
    out.into_iter().collect()
}

/// The loadtester Services a Flagger target's webhooks name (`(namespace, name, port)`), other
/// than those it deploys itself; bare names are taken in `controller_namespace`.
pub fn webhook_services(m: &Manifests, controller_namespace: &str) -> Vec<(String, String, u16)> {
    let mut out = BTreeSet::new();
    for url in &addresses(m).webhooks {
        if let Some((svc, ns, port)) = service_of(url, controller_namespace)
            && m.service(&ns, &svc).is_none()
        {
            out.insert((ns, svc, port));
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_resolve_as_dns_search_does() {
        let s = |u| service_of(u, "argo-rollouts");
        assert_eq!(
            s("http://prometheus.monitoring.svc:9090"),
            Some(("prometheus".into(), "monitoring".into(), 9090))
        );
        assert_eq!(
            s("http://kube-prometheus-stack-prometheus.monitoring:9090"),
            Some((
                "kube-prometheus-stack-prometheus".into(),
                "monitoring".into(),
                9090
            ))
        );
        assert_eq!(
            s("http://flagger-loadtester.test/"),
            Some(("flagger-loadtester".into(), "test".into(), 80))
        );
        assert_eq!(
            s("http://prometheus.monitoring.svc.cluster.local:9090/"),
            Some(("prometheus".into(), "monitoring".into(), 9090))
        );
        assert_eq!(
            s("http://prometheus:9090"),
            Some(("prometheus".into(), "argo-rollouts".into(), 9090))
        );
        assert_eq!(s("http://10.0.0.1:9090"), None);
        assert_eq!(s("https://prometheus.example.com"), None);
    }

    #[test]
    fn the_fixtures_name_their_prometheus_and_loadtester() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps");
        let argo = crate::spec::load_target(&root.join("argo")).unwrap();
        let w = wanted(&argo, "argo-rollouts", 9090);
        assert_eq!(
            w,
            vec![NodeService::tcp("monitoring", "prometheus", 9090, 9090)]
        );
        assert!(webhook_services(&argo, "argo-rollouts").is_empty());
        let flagger = crate::spec::load_target(&root.join("flagger")).unwrap();
        let w = wanted(&flagger, "flagger-system", 9090);
        assert_eq!(
            w,
            vec![NodeService::tcp("monitoring", "prometheus", 9090, 9090)]
        );
        assert_eq!(
            webhook_services(&flagger, "flagger-system"),
            [("default".to_string(), "flagger-loadtester".to_string(), 80)]
        );
    }

    #[test]
    fn a_node_service_has_a_selectorless_service_and_a_slice_to_the_node() {
        let [svc, endpoints, slice] = NodeService::kube_dns().objects();
        assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], "10.200.0.1");
        assert_eq!(
            endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"],
            "true"
        );
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.10");
        assert!(svc["spec"].get("selector").is_none());
        assert_eq!(slice["endpoints"][0]["addresses"][0], "10.200.0.1");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(slice["ports"].as_array().unwrap().len(), 2);
    }
}
