//! The translation against objects written as a user (or Argo Rollouts) would write them.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde::Deserialize;

use super::{ClassOptions, Translation, translate};
use crate::cluster::CanaryRoute;
use crate::cluster::local::process::find_program;
use crate::cluster::local::router::{PathType, Route, RouterConfig, RouterState, render};

#[derive(Default)]
struct Objects {
    ingresses: Vec<Ingress>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
}

/// Parses a multi-document YAML stream of Ingresses, Services and EndpointSlices.
fn objects(yaml: &str) -> Objects {
    #[derive(Deserialize)]
    struct Kind {
        kind: String,
    }
    let mut o = Objects::default();
    for doc in yaml.split("\n---\n").filter(|d| !d.trim().is_empty()) {
        let kind: Kind = serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
        match kind.kind.as_str() {
            "Ingress" => o.ingresses.push(serde_saphyr::from_str(doc).unwrap()),
            "Service" => o.services.push(serde_saphyr::from_str(doc).unwrap()),
            "EndpointSlice" => o.slices.push(serde_saphyr::from_str(doc).unwrap()),
            other => panic!("unexpected kind {other}"),
        }
    }
    o
}

fn run_with(yaml: &str, options: &ClassOptions) -> Translation {
    let o = objects(yaml);
    translate(&o.ingresses, &o.services, &o.slices, options)
}

fn run(yaml: &str) -> Translation {
    run_with(yaml, &ClassOptions::default())
}

/// A Service `name` (port 80 named `http`, target 8080) and one EndpointSlice with a ready pod
/// at each of `ips`.
fn app(ns: &str, name: &str, ips: &[&str]) -> String {
    let endpoints: String = if ips.is_empty() {
        " []\n".into()
    } else {
        ips.iter()
            .map(|ip| format!("\n  - addresses: [\"{ip}\"]\n    conditions: {{ready: true}}"))
            .collect::<String>()
            + "\n"
    };
    format!(
        r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-x7k2p
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:{endpoints}"#
    )
}

/// An Ingress of class nginx routing `host` `/` to `service:80`, with extra annotations.
fn ingress(ns: &str, name: &str, host: &str, service: &str, annotations: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: {ns}
  annotations: {{{annotations}}}
spec:
  ingressClassName: nginx
  rules:
  - host: {host}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: {service}, port: {{number: 80}}}}}}
"#
    )
}

const CANARY_20: &str = r#"nginx.ingress.kubernetes.io/canary: "true", nginx.ingress.kubernetes.io/canary-weight: "20""#;

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn only(t: &Translation) -> &Route {
    assert_eq!(t.routes.len(), 1, "{:#?}", t.routes);
    &t.routes[0]
}

fn warned(t: &Translation, part: &str) -> bool {
    t.warnings.iter().any(|w| w.to_string().contains(part))
}

#[test]
fn a_canary_ingress_merges_into_the_main_one_of_its_host_and_path() {
    let yaml = [
        app("shop", "web-stable", &["10.1.0.4", "10.1.0.5"]),
        app("shop", "web-canary", &["10.1.0.9"]),
        ingress("shop", "web", "shop.example", "web-stable", ""),
        ingress(
            "shop",
            "web-canary",
            "shop.example",
            "web-canary",
            r#"nginx.ingress.kubernetes.io/canary: "true", nginx.ingress.kubernetes.io/canary-weight: "20",
               nginx.ingress.kubernetes.io/canary-by-header: X-Canary,
               nginx.ingress.kubernetes.io/canary-by-cookie: canary"#,
        ),
    ]
    .concat();
    let t = run(&yaml);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let r = only(&t);
    assert_eq!(r.host.as_deref(), Some("shop.example"));
    assert_eq!((r.path.as_str(), r.path_type), ("/", PathType::Prefix));
    assert_eq!(r.endpoints, addrs(&["10.1.0.4:8080", "10.1.0.5:8080"]));
    assert_eq!(
        (
            r.names.namespace.as_str(),
            r.names.ingress.as_str(),
            r.names.service.as_str()
        ),
        ("shop", "web", "web-stable")
    );
    let c = r.canary.as_ref().expect("a canary");
    assert_eq!(c.endpoints, addrs(&["10.1.0.9:8080"]));
    assert_eq!(c.upstream, "shop-web-canary-80");
    assert_eq!(
        c.route,
        CanaryRoute {
            weight: 20,
            weight_total: 100,
            by_header: Some("X-Canary".into()),
            by_header_value: None,
            by_cookie: Some("canary".into()),
        }
    );
}

#[test]
fn the_upstream_name_spells_the_port_as_the_backend_writes_it() {
    let yaml = [
        app("shop", "web-stable", &["10.1.0.4"]),
        app("shop", "web-canary", &["10.1.0.9"]),
        ingress("shop", "web", "shop.example", "web-stable", ""),
        ingress(
            "shop",
            "web-canary",
            "shop.example",
            "web-canary",
            CANARY_20,
        )
        .replace("port: {number: 80}", "port: {name: http}"),
    ]
    .concat();
    let t = run(&yaml);
    let c = only(&t).canary.as_ref().expect("a canary");
    assert_eq!(c.upstream, "shop-web-canary-http");
    assert_eq!(c.endpoints, addrs(&["10.1.0.9:8080"]));
}

#[test]
fn ingresses_are_taken_by_class_name_then_annotation_then_option() {
    let base = [
        app("a", "svc", &["10.0.0.1"]),
        ingress("a", "by-name", "name.example", "svc", ""),
        ingress(
            "a",
            "other-name",
            "other.example",
            "svc",
            r#"kubernetes.io/ingress.class: nginx"#,
        )
        .replace("ingressClassName: nginx", "ingressClassName: traefik"),
        ingress(
            "a",
            "by-annotation",
            "annotation.example",
            "svc",
            r#"kubernetes.io/ingress.class: nginx"#,
        )
        .replace("  ingressClassName: nginx\n", ""),
        ingress("a", "classless", "classless.example", "svc", "")
            .replace("  ingressClassName: nginx\n", ""),
    ]
    .concat();
    let hosts = |t: &Translation| -> Vec<String> {
        t.routes.iter().filter_map(|r| r.host.clone()).collect()
    };
    let t = run(&base);
    assert_eq!(hosts(&t), ["annotation.example", "name.example"]);
    assert!(
        warned(
            &t,
            "Ingress a/other-name: not routed: its ingressClassName \"traefik\""
        ),
        "{:?}",
        t.warnings
    );
    assert!(
        warned(&t, "Ingress a/classless: not routed"),
        "{:?}",
        t.warnings
    );
    let t = run_with(
        &base,
        &ClassOptions {
            watch_without_class: true,
            ..ClassOptions::default()
        },
    );
    assert_eq!(
        hosts(&t),
        ["annotation.example", "classless.example", "name.example"]
    );
}

#[test]
fn service_ports_reach_slice_ports_by_name_number_or_target() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: b}
spec:
  ports:
  - {name: http, port: 80, targetPort: web}
  - {name: admin, port: 9000, targetPort: 9001}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: api-abcde
  namespace: b
  labels: {kubernetes.io/service-name: api}
addressType: IPv4
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: admin, port: 9001, protocol: TCP}
- {name: http, port: 8081, protocol: UDP}
endpoints:
- addresses: ["10.2.0.3"]
  conditions: {ready: true}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api, namespace: b}
spec:
  ingressClassName: nginx
  rules:
  - http:
      paths:
      - {path: /by-name, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /by-number, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /by-target, pathType: Prefix, backend: {service: {name: api, port: {number: 9001}}}}
      - {path: /none, pathType: Prefix, backend: {service: {name: api, port: {number: 81}}}}
"#;
    let t = run(yaml);
    let by_path = |p: &str| {
        t.routes
            .iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("no route {p}: {:#?}", t.routes))
    };
    assert_eq!(by_path("/by-name").endpoints, addrs(&["10.2.0.3:8080"]));
    assert_eq!(by_path("/by-number").endpoints, addrs(&["10.2.0.3:8080"]));
    assert_eq!(by_path("/by-target").endpoints, addrs(&["10.2.0.3:9001"]));
    assert!(by_path("/none").endpoints.is_empty());
    assert!(
        warned(&t, "Service b/api has no port 81; its backend answers 503"),
        "{:?}",
        t.warnings
    );
    assert!(by_path("/by-name").host.is_none());
}

#[test]
fn only_ready_endpoints_count_and_slices_belong_by_label_and_name() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: c}
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: c
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: ["10.3.0.1"]
  conditions: {ready: true, serving: true, terminating: false}
- addresses: ["10.3.0.2"]
  conditions: {ready: false, serving: true, terminating: true}
- addresses: ["10.3.0.3"]
  conditions: {ready: false}
- addresses: ["10.3.0.4"]
- addresses: ["10.3.0.1"]
  conditions: {ready: true}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-2
  namespace: c
  labels: {kubernetes.io/service-name: web}
addressType: IPv6
endpoints:
- addresses: ["fd00::7"]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: other-name
  namespace: c
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: ["10.3.0.8"]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-3
  namespace: elsewhere
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
- addresses: ["10.3.0.9"]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-4
  namespace: c
  labels: {kubernetes.io/service-name: web}
addressType: FQDN
ports: [{port: 8080}]
endpoints:
- addresses: ["db.example.com"]
"#;
    let t = run(&format!(
        "{yaml}{}",
        ingress("c", "web", "web.example", "web", "")
    ));
    // Ready unless ready is false; serving and terminating are not looked at. A slice without
    // ports stands for the numeric target port.
    assert_eq!(
        only(&t).endpoints,
        addrs(&["10.3.0.1:8080", "10.3.0.4:8080", "[fd00::7]:8080"])
    );
    assert!(
        warned(
            &t,
            "Service c/web: EndpointSlice c/web-4: address \"db.example.com\" is not an IP address"
        ),
        "{:?}",
        t.warnings
    );
}

#[test]
fn a_canary_path_no_main_ingress_serves_drops_the_canary_everywhere() {
    let canary = r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web-canary
  namespace: shop
  annotations: {nginx.ingress.kubernetes.io/canary: "true", nginx.ingress.kubernetes.io/canary-weight: "50"}
spec:
  ingressClassName: nginx
  rules:
  - host: shop.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web-canary, port: {number: 80}}}}
      - {path: /beta, pathType: Prefix, backend: {service: {name: web-canary, port: {number: 80}}}}
"#;
    let yaml = [
        app("shop", "web-stable", &["10.1.0.4"]),
        app("shop", "web-canary", &["10.1.0.9"]),
        ingress("shop", "web", "shop.example", "web-stable", ""),
        canary.to_string(),
    ]
    .concat();
    let t = run(&yaml);
    let r = only(&t);
    assert!(r.canary.is_none(), "{r:#?}");
    assert!(
        warned(
            &t,
            "serves host shop.example path /beta (Prefix): canary upstream shop-web-canary-80 is dropped, for every path"
        ),
        "{:?}",
        t.warnings
    );

    // With only canary Ingresses, nothing merges and nothing is served.
    let t = run(&[app("shop", "web-canary", &["10.1.0.9"]), canary.to_string()].concat());
    assert!(t.routes.is_empty(), "{:#?}", t.routes);
    assert!(
        warned(&t, "no Ingress without canary annotations exists"),
        "{:?}",
        t.warnings
    );
}

#[test]
fn a_second_canary_for_one_backend_gets_no_traffic() {
    let yaml = [
        app("shop", "web-stable", &["10.1.0.4"]),
        app("shop", "web-canary", &["10.1.0.9"]),
        app("shop", "web-preview", &["10.1.0.10"]),
        ingress("shop", "web", "shop.example", "web-stable", ""),
        ingress(
            "shop",
            "web-canary",
            "shop.example",
            "web-canary",
            CANARY_20,
        )
        .replace(
            "  name: web-canary\n",
            "  name: web-canary\n  creationTimestamp: \"2025-01-01T00:00:00Z\"\n",
        ),
        ingress(
            "shop",
            "web-preview",
            "shop.example",
            "web-preview",
            CANARY_20,
        )
        .replace(
            "  name: web-preview\n",
            "  name: web-preview\n  creationTimestamp: \"2025-01-02T00:00:00Z\"\n",
        ),
    ]
    .concat();
    let t = run(&yaml);
    assert_eq!(
        only(&t).canary.as_ref().map(|c| c.upstream.as_str()),
        Some("shop-web-canary-80")
    );
    assert!(
        warned(
            &t,
            "Ingress shop/web-preview: upstream shop-web-stable-80 already has canary shop-web-canary-80; shop-web-preview-80 gets no traffic"
        ),
        "{:?}",
        t.warnings
    );
}

#[test]
fn the_oldest_ingress_wins_a_path_and_equal_ages_go_by_name_descending() {
    let yaml = [
        app("n", "one", &["10.0.0.1"]),
        app("n", "two", &["10.0.0.2"]),
        ingress("n", "a", "h.example", "one", ""),
        ingress("n", "b", "h.example", "two", ""),
    ]
    .concat();
    let t = run(&yaml);
    assert_eq!(only(&t).names.ingress, "b");
    assert!(
        warned(
            &t,
            "Ingress n/a: host h.example path / (Prefix) is already served by Ingress n/b"
        ),
        "{:?}",
        t.warnings
    );
    let older = yaml.replace(
        "  name: a\n",
        "  name: a\n  creationTimestamp: \"2020-01-01T00:00:00Z\"\n",
    );
    let older = older.replace(
        "  name: b\n",
        "  name: b\n  creationTimestamp: \"2021-01-01T00:00:00Z\"\n",
    );
    assert_eq!(only(&run(&older)).names.ingress, "a");
}

#[test]
fn canary_annotations_without_canary_true_make_no_canary() {
    let yaml = [
        app("n", "svc", &["10.0.0.1"]),
        ingress(
            "n",
            "x",
            "x.example",
            "svc",
            r#"nginx.ingress.kubernetes.io/canary-weight: "30""#,
        ),
    ]
    .concat();
    let t = run(&yaml);
    assert!(only(&t).canary.is_none());
    assert!(warned(&t, "configured but not enabled"), "{:?}", t.warnings);
}

#[test]
fn invalid_annotation_values_fall_back_and_the_header_pattern_is_refused() {
    let yaml = [
        app("n", "stable", &["10.0.0.1"]),
        app("n", "canary", &["10.0.0.2"]),
        ingress("n", "main", "x.example", "stable", ""),
        ingress(
            "n",
            "canary",
            "x.example",
            "canary",
            r#"nginx.ingress.kubernetes.io/canary: "True", nginx.ingress.kubernetes.io/canary-weight: "ten",
               nginx.ingress.kubernetes.io/canary-weight-total: "1000",
               nginx.ingress.kubernetes.io/canary-by-header: "X Canary",
               nginx.ingress.kubernetes.io/canary-by-cookie: "c",
               nginx.ingress.kubernetes.io/canary-by-header-pattern: "^v[0-9]+$""#,
        ),
    ]
    .concat();
    let t = run(&yaml);
    let c = only(&t).canary.as_ref().expect("True is a Go boolean");
    assert_eq!(
        c.route,
        CanaryRoute {
            weight: 0,
            weight_total: 1000,
            by_header: None,
            by_header_value: None,
            by_cookie: Some("c".into()),
        }
    );
    assert!(
        warned(&t, "canary-weight: \"ten\" is not an integer; taken as 0"),
        "{:?}",
        t.warnings
    );
    assert!(
        warned(
            &t,
            "canary-by-header: \"X Canary\" has characters ingress-nginx refuses"
        ),
        "{:?}",
        t.warnings
    );
    // Without a valid header the pattern has nothing to match: no warning about it.
    assert!(!warned(&t, "pattern"), "{:?}", t.warnings);

    let t = run(&yaml.replace("\"X Canary\"", "X-Canary"));
    assert!(
        warned(
            &t,
            "canary-by-header-pattern (\"^v[0-9]+$\") is not emulated"
        ),
        "{:?}",
        t.warnings
    );
}

#[test]
fn path_types_and_the_admission_webhooks_path_rule() {
    let yaml = [
        app("n", "svc", &["10.0.0.1"]),
        r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: paths, namespace: n}
spec:
  ingressClassName: nginx
  rules:
  - host: p.example
    http:
      paths:
      - {path: /exact, pathType: Exact, backend: {service: {name: svc, port: {number: 80}}}}
      - {path: /impl, pathType: ImplementationSpecific, backend: {service: {name: svc, port: {number: 80}}}}
      - {path: /v1.0, pathType: ImplementationSpecific, backend: {service: {name: svc, port: {number: 80}}}}
      - {pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: refused, namespace: n}
spec:
  ingressClassName: nginx
  rules:
  - host: r.example
    http:
      paths:
      - {path: /v1.0, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}
"#
        .to_string(),
    ]
    .concat();
    let t = run(&yaml);
    let got: Vec<(&str, PathType)> = t
        .routes
        .iter()
        .map(|r| (r.path.as_str(), r.path_type))
        .collect();
    assert_eq!(
        got,
        [
            ("/", PathType::Prefix),
            ("/exact", PathType::Exact),
            ("/impl", PathType::Prefix),
            ("/v1.0", PathType::Prefix),
        ]
    );
    assert!(
        t.routes
            .iter()
            .all(|r| r.host.as_deref() == Some("p.example"))
    );
    assert!(
        warned(
            &t,
            "Ingress n/refused: not routed: path \"/v1.0\" cannot be used with pathType Prefix"
        ),
        "{:?}",
        t.warnings
    );
}

#[test]
fn default_backends_serve_the_catch_all_and_their_hosts_root() {
    let yaml = [
        app("n", "fallback", &["10.0.0.7"]),
        app("n", "api", &["10.0.0.8"]),
        r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all, namespace: n}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: fallback, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api, namespace: n}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: fallback, port: {number: 80}}}
  rules:
  - host: api.example
    http:
      paths:
      - {path: /v1, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
"#
        .to_string(),
    ]
    .concat();
    let t = run(&yaml);
    let got: Vec<(Option<&str>, &str, &str, &str)> = t
        .routes
        .iter()
        .map(|r| {
            (
                r.host.as_deref(),
                r.path.as_str(),
                r.names.ingress.as_str(),
                r.names.service.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (None, "/", "catch-all", "fallback"),
            (Some("api.example"), "/", "api", "fallback"),
            (Some("api.example"), "/v1", "api", "api"),
        ]
    );
    assert_eq!(t.routes[0].endpoints, addrs(&["10.0.0.7:8080"]));
}

#[test]
fn a_canary_splits_every_location_of_the_upstream_it_merged_into() {
    let yaml = [
        app("n", "stable", &["10.0.0.1"]),
        app("n", "canary", &["10.0.0.2"]),
        r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: main, namespace: n}
spec:
  ingressClassName: nginx
  rules:
  - host: x.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: stable, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: stable, port: {number: 80}}}}
"#
        .to_string(),
        ingress("n", "canary", "x.example", "canary", CANARY_20),
    ]
    .concat();
    let t = run(&yaml);
    assert_eq!(t.routes.len(), 2);
    assert!(
        t.routes.iter().all(|r| r.canary.is_some()),
        "{:#?}",
        t.routes
    );
}

#[test]
fn scenarios_in_several_namespaces_route_by_host_with_their_own_names() {
    let mut yaml = String::new();
    for ns in ["s1", "s2"] {
        yaml += &app(
            ns,
            "app-stable",
            &[if ns == "s1" { "10.0.1.1" } else { "10.0.2.1" }],
        );
        yaml += &app(ns, "app-canary", &[]);
        yaml += &ingress(ns, "app", &format!("{ns}.gauntlet"), "app-stable", "");
        yaml += &ingress(
            ns,
            "app-canary",
            &format!("{ns}.gauntlet"),
            "app-canary",
            CANARY_20,
        );
    }
    let t = run(&yaml);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    let got: Vec<(Option<&str>, &str, &str)> = t
        .routes
        .iter()
        .map(|r| {
            (
                r.host.as_deref(),
                r.names.namespace.as_str(),
                r.canary.as_ref().map(|c| c.upstream.as_str()).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("s1.gauntlet"), "s1", "s1-app-canary-80"),
            (Some("s2.gauntlet"), "s2", "s2-app-canary-80"),
        ]
    );
    assert!(
        t.routes
            .iter()
            .all(|r| r.canary.as_ref().unwrap().endpoints.is_empty())
    );
}

#[test]
fn what_is_not_emulated_is_said() {
    let yaml = [
        app("n", "svc", &["10.0.0.1"]),
        ingress(
            "n",
            "x",
            "x.example",
            "svc",
            r#"nginx.ingress.kubernetes.io/rewrite-target: /, nginx.ingress.kubernetes.io/use-regex: "true""#,
        )
        .replace(
            "  rules:\n",
            "  tls: [{hosts: [x.example], secretName: x-tls}]\n  rules:\n",
        ),
        ingress("n", "y", "y.example", "missing", ""),
    ]
    .concat();
    let t = run(&yaml);
    for w in [
        "Ingress n/x: annotation nginx.ingress.kubernetes.io/rewrite-target is not emulated",
        "Ingress n/x: annotation nginx.ingress.kubernetes.io/use-regex is not emulated",
        "Ingress n/x: spec.tls is not emulated",
        "Ingress n/y: Service n/missing does not exist; its backend answers 503",
    ] {
        assert!(warned(&t, w), "{w}: {:?}", t.warnings);
    }
    assert_eq!(t.routes.len(), 2);
}

#[test]
fn the_routes_of_several_scenarios_make_a_configuration_nginx_accepts() {
    let mut yaml = String::new();
    for ns in ["s1", "s2"] {
        yaml += &app(ns, "app-stable", &["10.0.1.1", "fd00::1"]);
        yaml += &app(ns, "app-canary", &["10.0.1.2"]);
        yaml += &ingress(ns, "app", &format!("{ns}.gauntlet"), "app-stable", "");
        yaml += &ingress(
            ns,
            "app-canary",
            &format!("{ns}.gauntlet"),
            "app-canary",
            r#"nginx.ingress.kubernetes.io/canary: "true", nginx.ingress.kubernetes.io/canary-weight: "5",
               nginx.ingress.kubernetes.io/canary-weight-total: "1000",
               nginx.ingress.kubernetes.io/canary-by-header: X-Canary,
               nginx.ingress.kubernetes.io/canary-by-header-value: "v2",
               nginx.ingress.kubernetes.io/canary-by-cookie: canary"#,
        );
    }
    yaml += &ingress("s1", "wild", "\"*.wild.gauntlet\"", "app-stable", "");
    yaml += r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: paths, namespace: s2}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: app-stable, port: {number: 80}}}
  rules:
  - http:
      paths:
      - {path: /api, pathType: Exact, backend: {service: {name: app-stable, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: other, port: {number: 80}}}}
      - {path: "/odd path$1", pathType: ImplementationSpecific, backend: {service: {name: none, port: {number: 80}}}}
"#;
    let t = run(&yaml);
    assert_eq!(t.routes.len(), 6, "{:#?}", t.routes);
    let dir = tempfile::tempdir().unwrap();
    let cfg = RouterConfig {
        dir: dir.path().to_path_buf(),
        listen: "0.0.0.0:80".parse().unwrap(),
        placement: None,
    };
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, render(&cfg, &RouterState { routes: t.routes }, 1)).unwrap();
    let nginx = find_program("nginx").expect("nginx is installed (Debian package nginx)");
    let check = std::process::Command::new(nginx)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("logs/error.log"))
        .arg("-t")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(&conf).unwrap()
    );
}
