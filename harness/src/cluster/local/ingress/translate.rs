//! The translation proper, following ingress-nginx's `getBackendServers` (controller-v1.13.0,
//! `internal/ingress/controller/controller.go`) step by step, because its quirks decide where
//! traffic goes:
//!
//! 1. Ingresses are taken in the store's order: by creation time, equal times by
//!    `namespace/name` descending (`store.sortIngressSlice`). An empty path is `/`; a missing or
//!    `ImplementationSpecific` pathType is `Prefix` (`k8s.SetDefaultNGINXPathType`). A `Prefix` or
//!    `Exact` path outside `^/[A-Za-z0-9_/-]*$` makes ingress-nginx's admission webhook refuse
//!    the Ingress (`strict-validate-path-type`, on by default), so it is skipped.
//! 2. Upstreams (`createUpstreams`): one per `<namespace>-<service>-<port>` (port as written:
//!    number or name), made by the first Ingress naming it; an upstream made by a canary Ingress
//!    serves no location and carries that Ingress's canary annotations. An Ingress's
//!    `defaultBackend` remakes its upstream every time.
//! 3. Servers (`createServers`): the default server `_` with `/` to the default backend (404);
//!    each host of a non-canary Ingress gets a server whose `/` is the default backend, or that
//!    Ingress's `defaultBackend`. A non-canary Ingress with a `defaultBackend` and no rules takes
//!    over `/` of the default server.
//! 4. Locations: each path of each Ingress (canary ones included, but paths whose upstream
//!    serves no location are skipped) joins its host's server (the default server when the host
//!    has none); the first Ingress for a path and pathType wins, except over a default `/`.
//! 5. Canary merge (`mergeAlternativeBackends`), only when some non-canary Ingress exists: each
//!    path of a canary Ingress looks for a location of its host with the same path and pathType
//!    whose upstream is a real one; the canary upstream becomes that upstream's alternative
//!    backend. Alternatives belong to the upstream, so every location using that upstream splits.
//!    A path that finds no such location drops the canary upstream altogether (for its other
//!    paths too). The Lua balancer only ever uses the first alternative.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::annotations;
use super::class::{self, ClassOptions};
use super::endpoints::{Cluster, Missing};
use super::{Translation, Warning};
use crate::cluster::CanaryRoute;
use crate::cluster::local::router::{CanaryBackend, PathType, Route, RouteNames};

/// ingress-nginx's name for the server of requests no other server names.
const DEFAULT_SERVER: &str = "_";
/// ingress-nginx's default backend: 404 here.
const DEFAULT_UPSTREAM: &str = "upstream-default-backend";

/// The routes for these objects; see the module doc.
pub fn translate<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    options: &ClassOptions,
) -> Translation {
    let mut w = Warnings::default();
    let cluster = Cluster::new(services, slices);
    let mut ings: Vec<Ing> = ingresses
        .into_iter()
        .filter_map(|i| accept(i, options, &mut w))
        .collect();
    ings.sort_by(|a, b| {
        let time = |i: &Ing| i.obj.metadata.creation_timestamp.as_ref().map(|t| t.0);
        time(a).cmp(&time(b)).then_with(|| b.key().cmp(&a.key()))
    });
    let mut ups = create_upstreams(&ings, &cluster, &mut w);
    let mut servers = create_servers(&ings, &ups);
    add_locations(&ings, &ups, &mut servers, &mut w);
    merge_canaries(&ings, &mut ups, &servers, &mut w);
    Translation {
        routes: routes(&ings, &ups, &servers, &mut w),
        warnings: w.0,
    }
}

/// An Ingress the router takes, normalized as ingress-nginx's store keeps it.
struct Ing<'a> {
    obj: &'a Ingress,
    namespace: &'a str,
    name: &'a str,
    canary: Option<CanaryRoute>,
    default_backend: Option<Backend<'a>>,
    rules: Vec<Rule<'a>>,
}

impl Ing<'_> {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    fn object(&self) -> String {
        format!("Ingress {}", self.key())
    }
}

struct Rule<'a> {
    /// `_` for a rule without a host.
    host: &'a str,
    /// `None` for a rule without `http`.
    paths: Option<Vec<PathRule<'a>>>,
}

struct PathRule<'a> {
    path: &'a str,
    path_type: PathType,
    /// `None` for a `resource` backend, which ingress-nginx skips.
    backend: Option<Backend<'a>>,
}

#[derive(Clone, Copy)]
struct Backend<'a> {
    service: &'a str,
    port: Port<'a>,
}

#[derive(Clone, Copy)]
enum Port<'a> {
    Number(i32),
    Name(&'a str),
    /// Neither: the API server refuses it; ingress-nginx names the upstream `<ns>-INVALID`.
    Invalid,
}

impl<'a> Backend<'a> {
    fn of(b: &'a IngressBackend) -> Option<Backend<'a>> {
        let svc = b.service.as_ref()?;
        let port = svc.port.as_ref();
        let port = match (
            port.and_then(|p| p.number).filter(|n| *n > 0),
            port.and_then(|p| p.name.as_deref())
                .filter(|n| !n.is_empty()),
        ) {
            (Some(n), _) => Port::Number(n),
            (None, Some(name)) => Port::Name(name),
            (None, None) => Port::Invalid,
        };
        Some(Backend {
            service: &svc.name,
            port,
        })
    }

    /// ingress-nginx's `upstreamName`.
    fn upstream(&self, namespace: &str) -> String {
        match self.port {
            Port::Number(n) => format!("{namespace}-{}-{n}", self.service),
            Port::Name(name) => format!("{namespace}-{}-{name}", self.service),
            Port::Invalid => format!("{namespace}-INVALID"),
        }
    }
}

#[derive(Default)]
struct Warnings(Vec<Warning>);

impl Warnings {
    fn add(&mut self, object: &str, message: String) {
        let w = Warning {
            object: object.to_string(),
            message,
        };
        if !self.0.contains(&w) {
            self.0.push(w);
        }
    }
}

/// Step 1 for one Ingress: `None` when the router does not take it.
fn accept<'a>(ing: &'a Ingress, options: &ClassOptions, w: &mut Warnings) -> Option<Ing<'a>> {
    let namespace = ing.metadata.namespace.as_deref().unwrap_or("default");
    let name = ing.metadata.name.as_deref().unwrap_or_default();
    let object = format!("Ingress {namespace}/{name}");
    if let Err(why) = class::owned(ing, options) {
        w.add(&object, format!("not routed: {why}"));
        return None;
    }
    let spec = ing.spec.as_ref();
    let raw_rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
    for p in raw_rules
        .iter()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| &h.paths)
    {
        let path = p.path.as_deref().unwrap_or_default();
        if !path.is_empty() && p.path_type != "ImplementationSpecific" && !strict_path(path) {
            w.add(
                &object,
                format!(
                    "not routed: path {path:?} cannot be used with pathType {}; ingress-nginx's admission webhook refuses the Ingress (strict-validate-path-type)",
                    p.path_type
                ),
            );
            return None;
        }
    }
    let no_annotations = BTreeMap::new();
    let anns = ing.metadata.annotations.as_ref().unwrap_or(&no_annotations);
    let canary = annotations::canary(anns, &mut |m| w.add(&object, m));
    for a in annotations::unsupported(anns) {
        w.add(&object, format!("annotation {a} is not emulated; ignored"));
    }
    if spec
        .and_then(|s| s.tls.as_ref())
        .is_some_and(|t| !t.is_empty())
    {
        w.add(
            &object,
            "spec.tls is not emulated: the router serves plain HTTP, where ingress-nginx would redirect it to HTTPS (ssl-redirect)".into(),
        );
    }
    let rules = raw_rules
        .iter()
        .map(|r| Rule {
            host: r
                .host
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or(DEFAULT_SERVER),
            paths: r.http.as_ref().map(|h| {
                h.paths
                    .iter()
                    .map(|p| PathRule {
                        path: p.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/"),
                        path_type: if p.path_type == "Exact" {
                            PathType::Exact
                        } else {
                            PathType::Prefix
                        },
                        backend: Backend::of(&p.backend),
                    })
                    .collect()
            }),
        })
        .collect();
    Some(Ing {
        obj: ing,
        namespace,
        name,
        canary,
        default_backend: spec
            .and_then(|s| s.default_backend.as_ref())
            .and_then(Backend::of),
        rules,
    })
}

/// `inspector.validPathType`: `(?i)^/[[:alnum:]\_\-/]*$`.
fn strict_path(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| {
        rest.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/')
    })
}

#[derive(Default)]
struct Upstream {
    endpoints: Vec<SocketAddr>,
    /// Made by a canary Ingress: serves no location of its own.
    no_server: bool,
    /// The canary annotations of the Ingress that made it (none for a non-canary one).
    policy: CanaryRoute,
    /// The canary upstreams merged into this one, in merge order.
    alternatives: Vec<String>,
}

type Upstreams = BTreeMap<String, Upstream>;

/// Step 2.
fn create_upstreams(ings: &[Ing], cluster: &Cluster, w: &mut Warnings) -> Upstreams {
    let mut ups = Upstreams::new();
    ups.insert(DEFAULT_UPSTREAM.into(), Upstream::default());
    for ing in ings {
        let make = |b: &Backend, w: &mut Warnings| Upstream {
            endpoints: resolve(ing, b, cluster, w),
            no_server: ing.canary.is_some(),
            policy: ing.canary.clone().unwrap_or_default(),
            alternatives: Vec::new(),
        };
        if let Some(b) = &ing.default_backend {
            let u = make(b, w);
            ups.insert(b.upstream(ing.namespace), u);
        }
        for p in ing.rules.iter().filter_map(|r| r.paths.as_ref()).flatten() {
            let Some(b) = &p.backend else { continue };
            let name = b.upstream(ing.namespace);
            if let std::collections::btree_map::Entry::Vacant(slot) = ups.entry(name) {
                slot.insert(make(b, w));
            }
        }
    }
    ups
}

/// A backend's endpoints; what is missing is a warning, and the backend then answers 503.
fn resolve(ing: &Ing, b: &Backend, cluster: &Cluster, w: &mut Warnings) -> Vec<SocketAddr> {
    let object = ing.object();
    let port = match b.port {
        Port::Number(n) => n.to_string(),
        Port::Name(name) => name.to_string(),
        Port::Invalid => {
            w.add(
                &object,
                format!(
                    "the backend Service {:?} names no port; it answers 503",
                    b.service
                ),
            );
            return Vec::new();
        }
    };
    let svc = format!("Service {}/{}", ing.namespace, b.service);
    let mut skipped = Vec::new();
    let found = cluster.endpoints(ing.namespace, b.service, &port, &mut |m| skipped.push(m));
    for m in skipped {
        w.add(&svc, m);
    }
    match found {
        Ok(endpoints) => endpoints,
        Err(missing) => {
            let why = match missing {
                Missing::Service => format!("{svc} does not exist"),
                Missing::ExternalName => format!("{svc} is of type ExternalName, not emulated"),
                Missing::Port => format!("{svc} has no port {port}"),
            };
            w.add(&object, format!("{why}; its backend answers 503"));
            Vec::new()
        }
    }
}

struct Location<'a> {
    path: &'a str,
    path_type: PathType,
    /// The upstream's name.
    backend: String,
    /// The server's own `/`, which a rule for `/` may take over.
    is_def_backend: bool,
    /// Index of the Ingress the location comes from.
    ingress: Option<usize>,
}

type Servers<'a> = BTreeMap<&'a str, Vec<Location<'a>>>;

/// Step 3.
fn create_servers<'a>(ings: &[Ing<'a>], ups: &Upstreams) -> Servers<'a> {
    let mut servers = Servers::new();
    servers.insert(
        DEFAULT_SERVER,
        vec![Location {
            path: "/",
            path_type: PathType::Prefix,
            backend: DEFAULT_UPSTREAM.into(),
            is_def_backend: true,
            ingress: None,
        }],
    );
    for (idx, ing) in ings.iter().enumerate() {
        if ing.canary.is_some() {
            continue;
        }
        let mut root = DEFAULT_UPSTREAM.to_string();
        if let Some(b) = &ing.default_backend {
            let name = b.upstream(ing.namespace);
            if ups.contains_key(&name) {
                root = name.clone();
                let catch_all =
                    &mut servers.get_mut(DEFAULT_SERVER).expect("the default server")[0];
                if catch_all.is_def_backend && ing.rules.is_empty() {
                    catch_all.is_def_backend = false;
                    catch_all.backend = name;
                    catch_all.ingress = Some(idx);
                }
            }
        }
        for rule in &ing.rules {
            servers.entry(rule.host).or_insert_with(|| {
                vec![Location {
                    path: "/",
                    path_type: PathType::Prefix,
                    backend: root.clone(),
                    is_def_backend: true,
                    ingress: Some(idx),
                }]
            });
        }
    }
    servers
}

/// Step 4.
fn add_locations<'a>(
    ings: &[Ing<'a>],
    ups: &Upstreams,
    servers: &mut Servers<'a>,
    w: &mut Warnings,
) {
    for (idx, ing) in ings.iter().enumerate() {
        for rule in &ing.rules {
            let host = if servers.contains_key(rule.host) {
                rule.host
            } else {
                DEFAULT_SERVER
            };
            let Some(paths) = &rule.paths else { continue };
            let locations = servers.get_mut(host).expect("the server exists");
            for p in paths {
                let Some(b) = &p.backend else {
                    w.add(
                        &ing.object(),
                        format!("path {} has no Service backend; ignored", p.path),
                    );
                    continue;
                };
                let name = b.upstream(ing.namespace);
                if ups.get(&name).is_none_or(|u| u.no_server) {
                    continue;
                }
                let mut add = true;
                for loc in locations.iter_mut() {
                    if loc.path != p.path {
                        continue;
                    }
                    // Same path, other type: a location of its own. (ingress-nginx stops
                    // looking at the first such location.)
                    if loc.path_type != p.path_type {
                        break;
                    }
                    add = false;
                    if !loc.is_def_backend {
                        if loc.ingress != Some(idx) {
                            let first = loc.ingress.map(|i| ings[i].key()).unwrap_or_default();
                            w.add(
                                &ing.object(),
                                format!(
                                    "host {host} path {} ({:?}) is already served by Ingress {first}; ignored",
                                    p.path, p.path_type
                                ),
                            );
                        }
                        break;
                    }
                    loc.backend = name.clone();
                    loc.is_def_backend = false;
                    loc.ingress = Some(idx);
                    break;
                }
                if add {
                    locations.push(Location {
                        path: p.path,
                        path_type: p.path_type,
                        backend: name,
                        is_def_backend: false,
                        ingress: Some(idx),
                    });
                }
            }
        }
    }
}

/// Step 5.
fn merge_canaries(ings: &[Ing], ups: &mut Upstreams, servers: &Servers, w: &mut Warnings) {
    let canaries = ings.iter().filter(|i| i.canary.is_some());
    if ings.iter().all(|i| i.canary.is_some()) {
        for ing in canaries {
            w.add(
                &ing.object(),
                "no Ingress without canary annotations exists, so no canary is merged".into(),
            );
        }
        return;
    }
    for ing in canaries {
        let object = ing.object();
        if let Some(b) = &ing.default_backend {
            // A canary's defaultBackend merges into every location of the default server.
            let candidates: Vec<(&str, bool)> = servers[DEFAULT_SERVER]
                .iter()
                .map(|l| (l.backend.as_str(), true))
                .collect();
            let alt = b.upstream(ing.namespace);
            merge_into(&object, &alt, &candidates, "its defaultBackend", ups, w);
        }
        for rule in &ing.rules {
            let Some(paths) = &rule.paths else {
                w.add(
                    &object,
                    format!(
                        "the canary rule for host {} has no http paths; ingress-nginx cannot merge it (it dereferences the missing paths)",
                        rule.host
                    ),
                );
                continue;
            };
            for p in paths {
                let Some(b) = &p.backend else { continue };
                let alt = b.upstream(ing.namespace);
                let Some(locations) = servers.get(rule.host) else {
                    w.add(
                        &object,
                        format!(
                            "no Ingress without canary annotations serves host {}; canary upstream {alt} is not merged there",
                            rule.host
                        ),
                    );
                    continue;
                };
                let candidates: Vec<(&str, bool)> = locations
                    .iter()
                    .map(|l| {
                        let same = l.path == p.path && l.path_type == p.path_type;
                        (l.backend.as_str(), same)
                    })
                    .collect();
                let place = format!("host {} path {} ({:?})", rule.host, p.path, p.path_type);
                merge_into(&object, &alt, &candidates, &place, ups, w);
            }
        }
    }
}

/// ingress-nginx's merge loop for one canary upstream `alt` over the locations of a server, in
/// order (`(upstream, whether the location is the canary's place)`): it becomes an alternative
/// of every real upstream at its place; a location whose upstream is `alt` itself ends the
/// search; when nothing took it, it is dropped.
fn merge_into(
    object: &str,
    alt: &str,
    candidates: &[(&str, bool)],
    place: &str,
    ups: &mut Upstreams,
    w: &mut Warnings,
) {
    if !ups.contains_key(alt) {
        w.add(
            object,
            format!("its canary upstream {alt} was dropped before; {place} is not merged"),
        );
        return;
    }
    let mut merged = false;
    for (pri, at_place) in candidates {
        let Some(primary) = ups.get_mut(*pri) else {
            continue;
        };
        if *pri == alt {
            w.add(
                object,
                format!("its canary upstream {alt} is the main upstream of a location of the same server; the search for {place} stops there"),
            );
            return;
        }
        if !at_place || *pri == DEFAULT_UPSTREAM || primary.no_server {
            continue;
        }
        if !primary.alternatives.iter().any(|a| a == alt) {
            primary.alternatives.push(alt.to_string());
            if primary.alternatives.len() > 1 {
                w.add(
                    object,
                    format!(
                        "upstream {pri} already has canary {}; {alt} gets no traffic (ingress-nginx uses the first canary only)",
                        primary.alternatives[0]
                    ),
                );
            }
        }
        merged = true;
    }
    if !merged {
        w.add(
            object,
            format!(
                "no Ingress without canary annotations serves {place}: canary upstream {alt} is dropped, for every path"
            ),
        );
        ups.remove(alt);
    }
}

/// The routes: every location whose upstream is not the default backend.
fn routes(ings: &[Ing], ups: &Upstreams, servers: &Servers, w: &mut Warnings) -> Vec<Route> {
    let mut out = Vec::new();
    for (host, locations) in servers {
        for loc in locations {
            if loc.backend == DEFAULT_UPSTREAM {
                continue;
            }
            let Some(ing) = loc.ingress.map(|i| &ings[i]) else {
                continue;
            };
            let (endpoints, canary) = match ups.get(&loc.backend) {
                None => {
                    w.add(
                        &ing.object(),
                        format!(
                            "upstream {} of host {host} path {} was dropped as another Ingress's canary; it answers 503",
                            loc.backend, loc.path
                        ),
                    );
                    (Vec::new(), None)
                }
                Some(u) => (
                    u.endpoints.clone(),
                    u.alternatives.first().and_then(|name| {
                        ups.get(name).map(|alt| CanaryBackend {
                            endpoints: alt.endpoints.clone(),
                            route: alt.policy.clone(),
                            upstream: name.clone(),
                        })
                    }),
                ),
            };
            out.push(Route {
                host: (*host != DEFAULT_SERVER).then(|| host.to_string()),
                path: loc.path.to_string(),
                path_type: loc.path_type,
                endpoints,
                canary,
                names: RouteNames {
                    namespace: ing.namespace.to_string(),
                    ingress: ing.name.to_string(),
                    service: location_service(ing, host, loc.path).to_string(),
                },
            });
        }
    }
    out
}

/// The `service` label of a location, as the template's `getIngressInformation` finds it: the
/// Ingress's rule for this host and path (any pathType), else its `defaultBackend`.
fn location_service<'a>(ing: &Ing<'a>, host: &str, path: &str) -> &'a str {
    let default = ing.default_backend.map(|b| b.service).unwrap_or_default();
    ing.rules
        .iter()
        .filter(|r| r.host == host)
        .filter_map(|r| r.paths.as_ref())
        .flatten()
        .filter(|p| p.path == path)
        .find_map(|p| p.backend.map(|b| b.service))
        .unwrap_or(default)
}

#[cfg(test)]
mod unit {
    use super::strict_path;

    #[test]
    fn strict_paths_are_alphanumerics_dashes_underscores_and_slashes() {
        for ok in ["/", "/api", "/a_b-c/D9/"] {
            assert!(strict_path(ok), "{ok}");
        }
        for bad in ["", "api", "/v1.0", "/a b", "/*", "/~x"] {
            assert!(!strict_path(bad), "{bad}");
        }
    }
}
