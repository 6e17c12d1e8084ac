//! A Service port's ready endpoints, found as ingress-nginx finds them (controller-v1.13.0,
//! `internal/ingress/controller/controller.go` `serviceEndpoints` and
//! `internal/ingress/controller/endpointslices.go` `getEndpointsFromSlices`, with the slice
//! lookup of `store/endpointslice.go`).
//!
//! - The Ingress backend's port (a number or a name) picks the first Service port whose number,
//!   target port or name spells the same.
//! - The Service's EndpointSlices are those labelled `kubernetes.io/service-name` with its name
//!   in its namespace (and named after it, as the EndpointSlice controller names them).
//! - A slice port counts when its protocol is TCP and, for a named Service port, its name is the
//!   Service port's; a numeric target port stands in when no name matches or the slice has no
//!   ports.
//! - An endpoint counts unless `conditions.ready` is false: `serving` and `terminating` are not
//!   looked at (a terminating endpoint is never ready).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label the EndpointSlice controller puts on a Service's slices.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Generated names are cut to this many characters before the random suffix
/// (`apiserver/pkg/storage/names.MaxGeneratedNameLength` less one).
const SLICE_NAME_PREFIX_MAX: usize = 57;

/// The Services and EndpointSlices of the cluster, indexed for lookups.
pub struct Cluster<'a> {
    services: BTreeMap<(&'a str, &'a str), &'a Service>,
    /// By namespace and the Service named by the label; sorted by slice name.
    slices: BTreeMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

/// Why a backend has no endpoints, when that is not merely because no pod is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Service,
    ExternalName,
    Port,
}

impl<'a> Cluster<'a> {
    pub fn new(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Cluster<'a> {
        let services = services
            .into_iter()
            .map(|s| ((namespace(&s.metadata), name(&s.metadata)), s))
            .collect();
        let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            by_service
                .entry((namespace(&slice.metadata), svc.as_str()))
                .or_default()
                .push(slice);
        }
        for v in by_service.values_mut() {
            v.sort_by_key(|s| name(&s.metadata));
        }
        Cluster {
            services,
            slices: by_service,
        }
    }

    /// The ready endpoints behind `namespace/service`'s port `port` (as the Ingress backend
    /// spells it: a number or a name), sorted; addresses that are no IP are passed to `skip`.
    pub fn endpoints(
        &self,
        namespace: &str,
        service: &str,
        port: &str,
        skip: &mut dyn FnMut(String),
    ) -> Result<Vec<SocketAddr>, Missing> {
        let svc = self
            .services
            .get(&(namespace, service))
            .ok_or(Missing::Service)?;
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return Err(Missing::ExternalName);
        }
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let svc_port = ports
            .iter()
            .find(|p| {
                p.port.to_string() == port
                    || spell(&target_port(p)) == port
                    || p.name.as_deref() == Some(port)
            })
            .ok_or(Missing::Port)?;
        let slices = self
            .slices
            .get(&(namespace, service))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut out = BTreeSet::new();
        for slice in slices {
            // The store matches a slice by its name too: generated names start with the
            // Service's name (cut to 57 characters).
            let prefix: String = service.chars().take(SLICE_NAME_PREFIX_MAX).collect();
            if !name(&slice.metadata).starts_with(&prefix) {
                continue;
            }
            let ports = slice_ports(slice, svc_port);
            for ep in &slice.endpoints {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        skip(format!(
                            "EndpointSlice {namespace}/{}: address {addr:?} is not an IP address; skipped",
                            name(&slice.metadata)
                        ));
                        continue;
                    };
                    for p in &ports {
                        out.insert(SocketAddr::new(ip, *p));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// The target ports of one slice for a Service port.
fn slice_ports(slice: &EndpointSlice, svc_port: &ServicePort) -> Vec<u16> {
    let numeric_target = match target_port(svc_port) {
        IntOrString::Int(n) => port_u16(n),
        IntOrString::String(_) => None,
    };
    let slice_ports = slice.ports.as_deref().unwrap_or_default();
    if slice_ports.is_empty() {
        return numeric_target.into_iter().collect();
    }
    let svc_name = svc_port.name.as_deref().unwrap_or_default();
    slice_ports
        .iter()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let matched =
                if svc_name.is_empty() || p.name.as_deref().unwrap_or_default() == svc_name {
                    p.port.and_then(port_u16)
                } else {
                    None
                };
            // ingress-nginx#7390: a numeric target port stands in for an unmatched name.
            matched.or(numeric_target)
        })
        .collect()
}

/// The Service port's target port; the API server defaults it to the port.
fn target_port(p: &ServicePort) -> IntOrString {
    p.target_port.clone().unwrap_or(IntOrString::Int(p.port))
}

/// `intstr.IntOrString.String()`.
fn spell(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

fn port_u16(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

fn namespace(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("default")
}

fn name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or_default()
}
