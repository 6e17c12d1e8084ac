//! The router: a real nginx with ingress-nginx's routing and canary semantics.
//!
//! nginx runs in the foreground as our child, with its own prefix, config, pid file and temp
//! paths in the router's folder, never as a system service. The configuration is rendered from
//! a [`RouterState`], a list of [`Route`]s (one per Ingress host and path, with the ready
//! endpoints of its backend and, optionally, of a canary backend and its annotations); a change
//! rewrites it and reloads nginx with SIGHUP, which is graceful: old workers finish their
//! requests while new ones take the listening socket, so no request fails because of a reload. A
//! control server on a unix socket reports the generation of the configuration that answers, so
//! a change returns only once nginx really serves it.
//!
//! What a route does follows ingress-nginx (controller-v1.13.0, `rootfs/etc/nginx/lua/balancer.lua`
//! and `internal/ingress/controller/template`):
//! - a backend without ready endpoints answers 503 (the Lua balancer has no balancer for it), and
//!   then the canary is not consulted at all;
//! - a canary without ready endpoints gets no traffic, not even pinned requests;
//! - the canary is chosen by header, then cookie, then weight; header and cookie values compare
//!   case-sensitively; the weight is out of `canary-weight-total` when that is above 100, else out
//!   of 100;
//! - a Prefix path `/foo` is the locations `/foo/` and `= /foo`, an Exact one `= /foo`;
//! - a request for a host no route names goes to the default server, which holds the routes
//!   without a host; a path no route matches answers 404 (ingress-nginx's default backend).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::net::Placement;
use super::process::{self, ProcessRegistry};
use crate::cluster::{CanaryRoute, InfraError};
use crate::timeline::{Source, Timeline};

/// How a route's path matches; ingress-nginx treats `ImplementationSpecific` as `Prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PathType {
    Prefix,
    Exact,
}

/// What the metrics of a route's requests are labelled with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RouteNames {
    pub namespace: String,
    /// The Ingress the route comes from.
    pub ingress: String,
    /// The Service of the route's main backend; the canary's requests carry it too, as in
    /// ingress-nginx, where it is the location's Service.
    pub service: String,
}

/// The alternative backend of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CanaryBackend {
    pub endpoints: Vec<SocketAddr>,
    pub route: CanaryRoute,
    /// ingress-nginx's upstream name of the canary backend, `<namespace>-<service>-<port>`: the
    /// `canary` label of the requests the canary served.
    pub upstream: String,
}

/// One location of the router: where requests for a host and path go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// The Ingress rule's host; `None` for a rule without one, which ingress-nginx serves from
    /// its default server (any host no other route names).
    pub host: Option<String>,
    pub path: String,
    pub path_type: PathType,
    /// Ready endpoints of the main backend (pod IP and port).
    pub endpoints: Vec<SocketAddr>,
    pub canary: Option<CanaryBackend>,
    pub names: RouteNames,
}

impl Route {
    /// The route's place in the configuration: two routes with the same key are one location.
    pub fn key(&self) -> (Option<&str>, &str, PathType) {
        (self.host.as_deref(), &self.path, self.path_type)
    }
}

/// Everything the nginx configuration is rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterState {
    pub routes: Vec<Route>,
}

/// Fixed facts of one router.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub dir: PathBuf,
    /// Where nginx listens for requests (`127.0.0.1:<port>` on the host, `0.0.0.0:80` inside a
    /// cluster's network namespace).
    pub listen: SocketAddr,
    /// The network namespace nginx runs in; `None` for the host's.
    pub placement: Option<Placement>,
}

impl RouterConfig {
    pub fn access_log(&self) -> PathBuf {
        self.dir.join("logs/access.log")
    }
    fn error_log(&self) -> PathBuf {
        self.dir.join("logs/error.log")
    }
    fn conf(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }
    fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }
}

/// One worker: the router is never the bottleneck at scenario rates, and reload bookkeeping
/// ([`worker_count`]) relies on the number.
const WORKERS: usize = 1;

/// The canary's share of requests no header or cookie pins, in percent, as ingress-nginx's
/// balancer draws it: `math.random(total) <= weight`, where `total` is `canary-weight-total` only
/// when that is above 100 (a smaller total counts as 100).
pub fn canary_percent(route: &CanaryRoute) -> f64 {
    let total = route.weight_total.max(100);
    (route.weight as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
}

/// What a route's location does with a request.
enum Serve<'a> {
    /// No ready endpoint behind the main backend: 503, canary or not.
    Unavailable,
    /// Everything to the main backend.
    Main,
    /// The canary decision, then either backend.
    Split(&'a CanaryBackend),
}

fn serve(route: &Route) -> Serve<'_> {
    if route.endpoints.is_empty() {
        return Serve::Unavailable;
    }
    match &route.canary {
        Some(c) if !c.endpoints.is_empty() => Serve::Split(c),
        _ => Serve::Main,
    }
}

/// Renders the configuration for `state`; `generation` is what the control server reports.
pub fn render(cfg: &RouterConfig, state: &RouterState, generation: u64) -> String {
    let d = cfg.dir.display();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"# generated by gauntlet; generation {generation}
worker_processes {WORKERS};
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  log_format gauntlet escape=json '{{"time":"$time_iso8601","msec":$msec,"method":"$request_method",'
    '"host":"$host","path":"$uri","status":$status,"side":"$gauntlet_side",'
    '"namespace":"$gauntlet_namespace","ingress":"$gauntlet_ingress",'
    '"service":"$gauntlet_service","canary":"$gauntlet_canary","route":"$gauntlet_path",'
    '"upstream":"$upstream_addr","upstream_status":"$upstream_status","request_time":$request_time,'
    '"upstream_response_time":"$upstream_response_time","bytes_sent":$bytes_sent,'
    '"request_id":"$request_id"}}';
  access_log {d}/logs/access.log gauntlet;
  keepalive_requests 10000;
  server_names_hash_bucket_size 256;
  variables_hash_max_size 8192;
  variables_hash_bucket_size 128;
  # A literal dollar sign inside `set` values, as ingress-nginx's `$literal_dollar`.
  geo $gauntlet_dollar {{ default "$"; }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_set_header X-Request-ID $request_id;
  proxy_next_upstream error timeout;
  proxy_next_upstream_tries 3;
  proxy_connect_timeout 5s;
  proxy_read_timeout 60s;
"#
    );
    for (i, route) in state.routes.iter().enumerate() {
        backends(&mut s, i, route);
    }

    // The default server first: it holds the routes without a host.
    let mut hosts: Vec<Option<&str>> = vec![None];
    for r in &state.routes {
        if !hosts.contains(&r.host.as_deref()) {
            hosts.push(r.host.as_deref());
        }
    }
    for host in hosts {
        server(&mut s, cfg.listen, host, state);
    }

    let _ = write!(
        s,
        r#"  server {{
    listen unix:{ctl};
    access_log off;
    location = /generation {{ return 200 "{generation}"; }}
  }}
}}
"#,
        ctl = cfg.control_socket().display(),
    );
    s
}

/// The upstreams of route `i` and, when it splits, the chain of maps that picks the side
/// (`$g<i>_side`, `stable` or `canary`) and names the canary upstream (`$g<i>_canary_name`).
fn backends(s: &mut String, i: usize, route: &Route) {
    let canary = match serve(route) {
        Serve::Unavailable => return,
        Serve::Main => {
            upstream(s, &format!("g{i}_stable"), &route.endpoints);
            return;
        }
        Serve::Split(c) => c,
    };
    upstream(s, &format!("g{i}_stable"), &route.endpoints);
    upstream(s, &format!("g{i}_canary"), &canary.endpoints);

    // Precedence as ingress-nginx: header, then cookie, then weight. Each stage falls back to
    // the variable of the next one.
    let pct = (canary_percent(&canary.route) * 100.0).round() / 100.0;
    let _ = writeln!(s, "  split_clients \"${{request_id}}\" $g{i}_weight {{");
    if pct >= 100.0 {
        s.push_str("    * canary;\n");
    } else if pct <= 0.0 {
        s.push_str("    * stable;\n");
    } else {
        let _ = writeln!(s, "    {}% canary;\n    * stable;", fmt_pct(pct));
    }
    s.push_str("  }\n");
    let mut decided = format!("$g{i}_weight");
    if let Some(cookie) = non_empty(&canary.route.by_cookie) {
        let _ = writeln!(
            s,
            "  map $cookie_{c} $g{i}_cookie {{\n    {always} canary;\n    {never} stable;\n    default {decided};\n  }}",
            c = nginx_var_name(cookie),
            always = exact_key("always"),
            never = exact_key("never"),
        );
        decided = format!("$g{i}_cookie");
    }
    if let Some(header) = non_empty(&canary.route.by_header) {
        let h = nginx_var_name(header);
        match non_empty(&canary.route.by_header_value) {
            Some(value) => {
                let _ = writeln!(
                    s,
                    "  map $http_{h} $g{i}_header {{\n    {v} canary;\n    default {decided};\n  }}",
                    v = exact_key(value),
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "  map $http_{h} $g{i}_header {{\n    {always} canary;\n    {never} stable;\n    default {decided};\n  }}",
                    always = exact_key("always"),
                    never = exact_key("never"),
                );
            }
        }
        decided = format!("$g{i}_header");
    }
    let _ = writeln!(
        s,
        "  map {decided} $g{i}_side {{ canary canary; default stable; }}\n  map $g{i}_side $g{i}_canary_name {{ canary {name}; default \"\"; }}",
        name = set_value(&canary.upstream),
    );
}

fn upstream(s: &mut String, name: &str, endpoints: &[SocketAddr]) {
    let _ = writeln!(s, "  upstream {name} {{");
    for e in endpoints {
        let _ = writeln!(s, "    server {e} max_fails=0;");
    }
    s.push_str("    keepalive 32;\n  }\n");
}

/// One `server` block: the locations of the routes for `host` (`None`: the default server) and a
/// 404 for every other path.
fn server(s: &mut String, listen: SocketAddr, host: Option<&str>, state: &RouterState) {
    let routes: Vec<(usize, &Route)> = state
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.host.as_deref() == host)
        .collect();
    match host {
        None => {
            let _ = writeln!(
                s,
                "  server {{\n    listen {listen} default_server;\n    server_name _;"
            );
        }
        Some(h) => {
            let _ = writeln!(
                s,
                "  server {{\n    listen {listen};\n    server_name {};",
                quoted(&server_name(h))
            );
        }
    }
    let exact: BTreeSet<&str> = routes
        .iter()
        .filter(|(_, r)| r.path_type == PathType::Exact)
        .map(|(_, r)| r.path.as_str())
        .collect();
    // nginx refuses a duplicate location; the first route of a place wins, as in ingress-nginx.
    let mut taken: BTreeSet<(bool, String)> = BTreeSet::new();
    for (i, route) in &routes {
        let body = location_body(*i, route);
        let mut places = Vec::new();
        match route.path_type {
            PathType::Exact => places.push((true, route.path.clone())),
            PathType::Prefix if route.path == "/" => places.push((false, "/".to_string())),
            PathType::Prefix => {
                // ingress-nginx's updateServerLocations: `/foo` becomes `/foo/` plus `= /foo`
                // (unless an Exact route has that path).
                let mut prefix = route.path.clone();
                if !prefix.ends_with('/') {
                    prefix.push('/');
                }
                places.push((false, prefix));
                if !exact.contains(route.path.as_str()) {
                    places.push((true, route.path.clone()));
                }
            }
        }
        for place in places {
            if taken.insert(place.clone()) {
                let modifier = if place.0 { "= " } else { "" };
                let _ = writeln!(
                    s,
                    "    location {modifier}{} {{\n{body}    }}",
                    quoted(&place.1)
                );
            }
        }
    }
    if !taken.contains(&(false, "/".to_string())) {
        // ingress-nginx's default backend. Its default server does not log it; a host's root
        // location is the Ingress that made the server, without a Service.
        match routes.first() {
            Some((_, first)) if host.is_some() => {
                let names = RouteNames {
                    service: String::new(),
                    ..first.names.clone()
                };
                let _ = writeln!(
                    s,
                    "    location / {{\n{}      set $gauntlet_side default;\n      set $gauntlet_canary \"\";\n      return 404;\n    }}",
                    labels(&names, "/")
                );
            }
            // The `set`s declare the log's variables even when no route does (no Ingress yet).
            _ => s.push_str(
                "    location / {\n      access_log off;\n      set $gauntlet_side default;\n      set $gauntlet_canary \"\";\n      set $gauntlet_namespace \"\";\n      set $gauntlet_ingress \"\";\n      set $gauntlet_service \"\";\n      set $gauntlet_path \"\";\n      return 404;\n    }\n",
            ),
        }
    }
    s.push_str("  }\n");
}

/// What a route's location(s) contain: the labels the access log carries, then the backend.
fn location_body(i: usize, route: &Route) -> String {
    let mut b = labels(&route.names, &route.path);
    match serve(route) {
        Serve::Unavailable => {
            b.push_str("      set $gauntlet_side stable;\n      set $gauntlet_canary \"\";\n      return 503;\n");
        }
        Serve::Main => {
            let _ = write!(
                b,
                "      set $gauntlet_side stable;\n      set $gauntlet_canary \"\";\n      proxy_pass http://g{i}_stable;\n"
            );
        }
        Serve::Split(_) => {
            let _ = write!(
                b,
                "      set $gauntlet_side $g{i}_side;\n      set $gauntlet_canary $g{i}_canary_name;\n      proxy_pass http://g{i}_$gauntlet_side;\n"
            );
        }
    }
    b
}

fn labels(names: &RouteNames, path: &str) -> String {
    format!(
        "      set $gauntlet_namespace {};\n      set $gauntlet_ingress {};\n      set $gauntlet_service {};\n      set $gauntlet_path {};\n",
        set_value(&names.namespace),
        set_value(&names.ingress),
        set_value(&names.service),
        set_value(path),
    )
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|v| !v.is_empty())
}

/// A quoted nginx string, taken literally (locations, server names).
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A quoted value for `set` and map results, where `$` would start a variable.
fn set_value(v: &str) -> String {
    quoted(v).replace('$', "${gauntlet_dollar}")
}

/// A map key that matches exactly this value, case-sensitively as ingress-nginx's Lua compares:
/// nginx's plain map keys ignore case, so the key is an anchored regular expression.
fn exact_key(value: &str) -> String {
    let mut re = String::from("~^");
    for c in value.chars() {
        if !c.is_ascii_alphanumeric() {
            re.push('\\');
        }
        re.push(c);
    }
    re.push('$');
    quoted(&re)
}

/// ingress-nginx's `buildServerName`: a wildcard host matches exactly one more label.
fn server_name(host: &str) -> String {
    match host.strip_prefix("*.") {
        Some(rest) => format!(r"~^[\w-]+\.{}$", rest.replace('.', r"\.")),
        None => host.to_string(),
    }
}

/// nginx variables lowercase names and turn `-` into `_` (`$http_x_canary`, `$cookie_my_c`).
fn nginx_var_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn fmt_pct(p: f64) -> String {
    // split_clients takes at most two decimals.
    let s = format!("{:.2}", p);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A running nginx.
pub struct Router {
    cfg: RouterConfig,
    child: tokio::process::Child,
    pid: u32,
    generation: u64,
    state: RouterState,
    registry: ProcessRegistry,
    reloads: u64,
}

/// How long applying a new state waits, at most, for the previous configuration's workers to
/// exit: the pass that changes a weight can be held this long, whatever `--time-scale` says.
pub const RELOAD_WAIT: Duration = Duration::from_secs(5);

impl Router {
    /// Writes the first configuration, checks it with `nginx -t` (on the host: the test binds
    /// nothing), and starts nginx in the configured placement.
    pub async fn start(
        binary: &Path,
        cfg: RouterConfig,
        state: RouterState,
        registry: ProcessRegistry,
    ) -> Result<Router, InfraError> {
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(cfg.dir.join(sub))
                .map_err(InfraError::io("creating nginx's folders"))?;
        }
        std::fs::write(cfg.conf(), render(&cfg, &state, 1))
            .map_err(InfraError::io("writing nginx.conf"))?;
        let mut check = tokio::process::Command::new(binary);
        check.args(args(&cfg)).arg("-t");
        // `nginx -t` binds the listen addresses too: it must see the same network.
        if let Some(p) = &cfg.placement {
            p.apply(&mut check);
        }
        let check = check
            .output()
            .await
            .map_err(InfraError::io("running nginx -t"))?;
        if !check.status.success() {
            return Err(InfraError::StartFailed {
                what: "nginx".into(),
                reason: format!(
                    "its configuration was refused: {}",
                    String::from_utf8_lossy(&check.stderr).trim()
                ),
            });
        }
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(args(&cfg))
            .args(["-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        ProcessRegistry::prepare(&mut cmd);
        if let Some(placement) = &cfg.placement {
            placement.apply(&mut cmd);
        }
        let mut child = cmd.spawn().map_err(|e| InfraError::StartFailed {
            what: "nginx".into(),
            reason: e.to_string(),
        })?;
        let pid = child.id().unwrap_or(0);
        registry.register_polite(pid, "nginx", Signal::SIGTERM);
        if let Ok(Some(st)) = child.try_wait() {
            registry.unregister(pid);
            return Err(InfraError::StartFailed {
                what: "nginx".into(),
                reason: format!("exited at once with {st}"),
            });
        }
        let mut router = Router {
            cfg,
            child,
            pid,
            generation: 1,
            state,
            registry,
            reloads: 0,
        };
        router.await_generation(1, Duration::from_secs(10)).await?;
        Ok(router)
    }

    pub fn listen(&self) -> SocketAddr {
        self.cfg.listen
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn state(&self) -> &RouterState {
        &self.state
    }

    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Applies a new state: rewrites the configuration and reloads gracefully, returning once
    /// nginx answers with it. An unchanged state costs nothing.
    pub async fn apply(&mut self, state: RouterState) -> Result<(), InfraError> {
        if state == self.state {
            return Ok(());
        }
        self.check_alive()?;
        let generation = self.generation + 1;
        let conf = render(&self.cfg, &state, generation);
        let tmp = self.cfg.dir.join("nginx.conf.new");
        std::fs::write(&tmp, conf).map_err(InfraError::io("writing nginx.conf"))?;
        std::fs::rename(&tmp, self.cfg.conf()).map_err(InfraError::io("replacing nginx.conf"))?;
        process::signal_pid(self.pid, Signal::SIGHUP);
        self.await_generation(generation, Duration::from_secs(10))
            .await?;
        self.await_old_workers(RELOAD_WAIT).await;
        self.generation = generation;
        self.state = state;
        self.reloads += 1;
        Ok(())
    }

    /// Whether nginx still runs; its error log's tail when it does not.
    pub fn check_alive(&mut self) -> Result<(), InfraError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(InfraError::Died {
                what: "nginx".into(),
                detail: format!("{st}; {}", tail(&self.cfg.error_log())),
            }),
            Err(e) => Err(InfraError::Died {
                what: "nginx".into(),
                detail: e.to_string(),
            }),
        }
    }

    /// Waits until the control server answers with `want`. A configuration nginx refuses on
    /// reload leaves the old one answering: the error log's tail then says why.
    async fn await_generation(&mut self, want: u64, within: Duration) -> Result<(), InfraError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let last = match query_generation(&self.cfg.control_socket()).await {
                Ok(g) if g == want => return Ok(()),
                Ok(g) => format!("it still serves generation {g}"),
                Err(e) => e.to_string(),
            };
            self.check_alive()?;
            if tokio::time::Instant::now() >= deadline {
                return Err(InfraError::NotReady {
                    what: format!("nginx configuration generation {want}"),
                    within,
                    detail: format!("{last}; {}", tail(&self.cfg.error_log())),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (bounded) until the workers of the previous configuration have exited. Until then
    /// an old worker can still accept a new connection and then close it unanswered as part of
    /// its graceful shutdown, which a client sees as a failed request. Requests still running on
    /// old workers (a slow `/delay`) may outlast the bound; they finish on their own.
    async fn await_old_workers(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while worker_count(self.pid) > WORKERS && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops nginx gracefully (SIGQUIT lets workers finish), then forcefully.
    pub async fn stop(&mut self) {
        process::signal_pid(self.pid, Signal::SIGQUIT);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            process::signal_group(self.pid, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
        // Workers are in the master's group; make sure none outlives it.
        process::signal_group(self.pid, Signal::SIGKILL);
        self.registry.unregister(self.pid);
    }
}

fn args(cfg: &RouterConfig) -> Vec<String> {
    vec![
        "-p".into(),
        format!("{}/", cfg.dir.display()),
        "-c".into(),
        cfg.conf().display().to_string(),
        "-e".into(),
        cfg.error_log().display().to_string(),
    ]
}

/// Worker processes of the nginx master. After a reload the old worker keeps its title and
/// keeps accepting for tens of milliseconds before it notices the quit command, so counting
/// children is the only reliable sign that the previous configuration is gone.
fn worker_count(master: u32) -> usize {
    process::children_of(master).len()
}

async fn query_generation(socket: &Path) -> std::io::Result<u64> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream
        .write_all(b"GET /generation HTTP/1.0\r\nHost: control\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "control socket"))??;
    let text = String::from_utf8_lossy(&buf);
    text.split("\r\n\r\n")
        .nth(1)
        .and_then(|b| b.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected answer: {text}")))
}

/// The last lines of a log, for error messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    if lines.is_empty() {
        format!("{} is empty", path.display())
    } else {
        format!(
            "{}: {}",
            path.display(),
            lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
    }
}

/// Records on the timeline what changed between two states, per route: `canary-route` when its
/// canary annotations changed (a route without a canary counts as the default annotations, so a
/// fresh route with none is no change), `endpoints` when either side's endpoints did. Both carry
/// the route's namespace and Ingress.
pub fn announce(timeline: &Timeline, before: &RouterState, after: &RouterState) {
    let no_canary = CanaryRoute::default();
    for route in &after.routes {
        let old = before.routes.iter().find(|r| r.key() == route.key());
        let canary_route = |r: &Route| r.canary.as_ref().map(|c| c.route.clone());
        let old_route = old
            .and_then(canary_route)
            .unwrap_or_else(|| no_canary.clone());
        let new_route = canary_route(route).unwrap_or_else(|| no_canary.clone());
        if old_route != new_route {
            timeline.emit(
                Source::Router,
                "canary-route",
                format!("canary weight {}%", new_route.percent()),
                serde_json::json!({
                    "weight": new_route.weight,
                    "route": new_route,
                    "namespace": route.names.namespace,
                    "ingress": route.names.ingress,
                }),
            );
        }
        let endpoints = |r: Option<&Route>| -> (Vec<SocketAddr>, Vec<SocketAddr>) {
            match r {
                None => (vec![], vec![]),
                Some(r) => (
                    r.endpoints.clone(),
                    r.canary
                        .as_ref()
                        .map(|c| c.endpoints.clone())
                        .unwrap_or_default(),
                ),
            }
        };
        let (old_stable, old_canary) = endpoints(old);
        let (stable, canary) = endpoints(Some(route));
        if old_stable != stable || old_canary != canary {
            timeline.emit(
                Source::Router,
                "endpoints",
                format!(
                    "endpoints: stable {} pod(s), canary {} pod(s)",
                    stable.len(),
                    canary.len()
                ),
                serde_json::json!({
                    "stable": stable,
                    "canary": canary,
                    "namespace": route.names.namespace,
                    "ingress": route.names.ingress,
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RouterConfig {
        RouterConfig {
            dir: PathBuf::from("/tmp/x"),
            listen: "127.0.0.1:18080".parse().unwrap(),
            placement: None,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn route(host: Option<&str>, path: &str, path_type: PathType, stable: &[u16]) -> Route {
        Route {
            host: host.map(str::to_string),
            path: path.into(),
            path_type,
            endpoints: stable.iter().map(|p| addr(*p)).collect(),
            canary: None,
            names: RouteNames {
                namespace: "default".into(),
                ingress: "app".into(),
                service: "app-stable".into(),
            },
        }
    }

    fn split(stable: &[u16], canary: &[u16], canary_route: CanaryRoute) -> RouterState {
        let mut r = route(None, "/", PathType::Prefix, stable);
        r.canary = Some(CanaryBackend {
            endpoints: canary.iter().map(|p| addr(*p)).collect(),
            route: canary_route,
            upstream: "default-app-canary-80".into(),
        });
        RouterState { routes: vec![r] }
    }

    #[test]
    fn a_router_without_routes_passes_nginx_t() {
        let Some(nginx) = crate::cluster::local::process::find_program("nginx") else {
            eprintln!("skipped: nginx is not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = RouterConfig {
            dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:18080".parse().unwrap(),
            placement: None,
        };
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(cfg.conf(), render(&cfg, &RouterState::default(), 1)).unwrap();
        let out = std::process::Command::new(nginx)
            .args(args(&cfg))
            .arg("-t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn weights_render_as_split_clients() {
        let c = render(&cfg(), &split(&[1001], &[1002], CanaryRoute::weight(20)), 3);
        assert!(c.contains("20% canary;\n    * stable;"), "{c}");
        assert!(c.contains("return 200 \"3\""));
        let c = render(&cfg(), &split(&[1001], &[1002], CanaryRoute::weight(0)), 1);
        assert!(c.contains("$g0_weight {\n    * stable;"), "{c}");
        let c = render(
            &cfg(),
            &split(&[1001], &[1002], CanaryRoute::weight(100)),
            1,
        );
        assert!(c.contains("$g0_weight {\n    * canary;"), "{c}");
        let third = CanaryRoute {
            weight: 1,
            weight_total: 300,
            ..Default::default()
        };
        let c = render(&cfg(), &split(&[1001], &[1002], third), 1);
        assert!(c.contains("0.33% canary;"), "{c}");
    }

    #[test]
    fn a_weight_total_up_to_100_counts_as_100() {
        for total in [0, 3, 100] {
            let r = CanaryRoute {
                weight: 1,
                weight_total: total,
                ..Default::default()
            };
            assert_eq!(canary_percent(&r), 1.0, "total {total}");
        }
        let r = CanaryRoute {
            weight: 5,
            weight_total: 1000,
            ..Default::default()
        };
        assert_eq!(canary_percent(&r), 0.5);
        let r = CanaryRoute::weight(150);
        assert_eq!(canary_percent(&r), 100.0);
    }

    #[test]
    fn a_canary_without_endpoints_gets_no_traffic() {
        let st = split(
            &[1001],
            &[],
            CanaryRoute {
                by_header: Some("X-Canary".into()),
                ..CanaryRoute::weight(50)
            },
        );
        let c = render(&cfg(), &st, 1);
        assert!(!c.contains("canary;"), "{c}");
        assert!(c.contains("proxy_pass http://g0_stable;"), "{c}");
        assert!(!c.contains("upstream g0_canary"), "{c}");
    }

    #[test]
    fn a_backend_without_endpoints_answers_503_even_with_a_canary() {
        let st = split(&[], &[1002], CanaryRoute::weight(100));
        let c = render(&cfg(), &st, 1);
        assert!(c.contains("return 503;"), "{c}");
        assert!(!c.contains("proxy_pass"), "{c}");
    }

    #[test]
    fn header_and_cookie_overrides_take_precedence() {
        let st = split(
            &[1001],
            &[1002],
            CanaryRoute {
                by_header: Some("X-Canary".into()),
                by_cookie: Some("canary".into()),
                ..CanaryRoute::weight(10)
            },
        );
        let c = render(&cfg(), &st, 1);
        assert!(
            c.contains("map $cookie_canary $g0_cookie {\n    \"~^always$\" canary;\n    \"~^never$\" stable;\n    default $g0_weight;"),
            "{c}"
        );
        assert!(
            c.contains("map $http_x_canary $g0_header {\n    \"~^always$\" canary;\n    \"~^never$\" stable;\n    default $g0_cookie;"),
            "{c}"
        );
        assert!(c.contains("map $g0_header $g0_side"), "{c}");
        assert!(c.contains("canary \"default-app-canary-80\";"), "{c}");
    }

    #[test]
    fn header_values_match_exactly_and_literally() {
        let st = split(
            &[1001],
            &[1002],
            CanaryRoute {
                by_header: Some("X-Canary".into()),
                by_header_value: Some("v1.2~x".into()),
                ..CanaryRoute::weight(0)
            },
        );
        let c = render(&cfg(), &st, 1);
        // `\.` and `\~` in the regex; each backslash doubled inside the nginx string.
        assert!(c.contains(r#""~^v1\\.2\\~x$" canary;"#), "{c}");
    }

    #[test]
    fn hosts_become_servers_and_prefixes_get_their_exact_twin() {
        let st = RouterState {
            routes: vec![
                route(Some("a.example"), "/api", PathType::Prefix, &[1001]),
                route(Some("a.example"), "/exact", PathType::Exact, &[1002]),
                route(Some("*.example"), "/", PathType::Prefix, &[1003]),
                route(None, "/", PathType::Prefix, &[1004]),
            ],
        };
        let c = render(&cfg(), &st, 1);
        assert!(
            c.contains("listen 127.0.0.1:18080 default_server;\n    server_name _;"),
            "{c}"
        );
        assert!(c.contains("server_name \"a.example\";"), "{c}");
        assert!(c.contains(r#"server_name "~^[\\w-]+\\.example$";"#), "{c}");
        assert!(c.contains("location \"/api/\" {"), "{c}");
        assert!(c.contains("location = \"/api\" {"), "{c}");
        assert!(c.contains("location = \"/exact\" {"), "{c}");
        assert!(!c.contains("location \"/exact/\""), "{c}");
        // a.example has no root route: its root is the default backend, labelled by its Ingress.
        assert!(c.contains("set $gauntlet_side default;"), "{c}");
        assert_eq!(c.matches("return 404;").count(), 1, "{c}");
    }

    #[test]
    fn a_place_taken_twice_renders_once() {
        let st = RouterState {
            routes: vec![
                route(None, "/foo", PathType::Prefix, &[1001]),
                route(None, "/foo/", PathType::Prefix, &[1002]),
                route(None, "/foo", PathType::Exact, &[1003]),
            ],
        };
        let c = render(&cfg(), &st, 1);
        assert_eq!(c.matches("location \"/foo/\" {").count(), 1, "{c}");
        assert_eq!(c.matches("location = \"/foo\" {").count(), 1, "{c}");
        assert_eq!(c.matches("location = \"/foo/\" {").count(), 1, "{c}");
        // The default server without a root route: 404 and no log line.
        assert!(c.contains("location / {\n      access_log off;\n"), "{c}");
        assert!(
            c.contains("set $gauntlet_path \"\";\n      return 404;"),
            "{c}"
        );
    }

    #[test]
    fn label_values_keep_dollars_literal() {
        let mut r = route(None, "/a$b", PathType::Prefix, &[1001]);
        r.names.ingress = "x\"y".into();
        let c = render(&cfg(), &RouterState { routes: vec![r] }, 1);
        assert!(
            c.contains("set $gauntlet_path \"/a${gauntlet_dollar}b\";"),
            "{c}"
        );
        assert!(c.contains("set $gauntlet_ingress \"x\\\"y\";"), "{c}");
        assert!(c.contains("location \"/a$b/\""), "{c}");
    }

    #[test]
    fn announce_reports_per_route_changes() {
        let timeline = Timeline::new();
        let before = split(&[1001], &[], CanaryRoute::default());
        let mut after = split(&[1001], &[1002], CanaryRoute::weight(20));
        after.routes[0].names.namespace = "team-a".into();
        announce(&timeline, &before, &after);
        announce(&timeline, &after, &after);
        let events = timeline.snapshot();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].kind, "canary-route");
        assert_eq!(events[0].data["weight"], 20);
        assert_eq!(events[0].data["namespace"], "team-a");
        assert_eq!(events[1].kind, "endpoints");
        assert_eq!(events[1].data["canary"][0], "127.0.0.1:1002");
        assert_eq!(events[1].data["ingress"], "app");
    }

    /// Kills what a failed test left running (nginx's workers outlive a killed master).
    struct KillOnDrop(ProcessRegistry);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            self.0.kill_all(Duration::from_secs(2));
        }
    }

    /// A loopback HTTP server answering every request with `name`.
    async fn backend(name: &'static str) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = axum::Router::new().fallback(move || async move { name });
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    }

    /// Host and path routing, the default server, 503 and the canary decision, through a real
    /// nginx.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_nginx_routes_hosts_paths_and_canaries() {
        let nginx =
            process::find_program("nginx").expect("nginx is installed (Debian package nginx)");
        let (a, b, c, d, e) = (
            backend("A").await,
            backend("B").await,
            backend("C").await,
            backend("D").await,
            backend("E").await,
        );
        let mut main = route(Some("a.example"), "/", PathType::Prefix, &[]);
        main.endpoints = vec![a];
        main.canary = Some(CanaryBackend {
            endpoints: vec![b],
            route: CanaryRoute {
                by_header: Some("X-Canary".into()),
                ..CanaryRoute::weight(0)
            },
            upstream: "default-b-80".into(),
        });
        let mut api = route(Some("a.example"), "/api", PathType::Exact, &[]);
        api.endpoints = vec![c];
        let mut wild = route(Some("*.wild.example"), "/", PathType::Prefix, &[]);
        wild.endpoints = vec![d];
        let mut only = route(None, "/only", PathType::Prefix, &[]);
        only.endpoints = vec![e];
        let mut down = route(Some("b.example"), "/", PathType::Prefix, &[]);
        down.canary = main.canary.clone();
        let mut state = RouterState {
            routes: vec![main, api, wild, only, down],
        };

        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = RouterConfig {
            dir: dir.path().to_path_buf(),
            listen: addr(port),
            placement: None,
        };
        let registry = ProcessRegistry::default();
        let _cleanup = KillOnDrop(registry.clone());
        let mut router = Router::start(&nginx, cfg, state.clone(), registry.clone())
            .await
            .unwrap();
        // No connection pool: a retiring nginx worker keeps a connection that has not carried a
        // request yet (hyper parks spare ones in its pool) and answers its first request with
        // the old configuration.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let get = |host: &'static str, path: &'static str, header: Option<&'static str>| {
            let http = http.clone();
            async move {
                let mut req = http
                    .get(format!("http://127.0.0.1:{port}{path}"))
                    .header(reqwest::header::HOST, host);
                if let Some(v) = header {
                    req = req.header("X-Canary", v);
                }
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let body = res.text().await.unwrap();
                if status == 200 {
                    body
                } else {
                    status.to_string()
                }
            }
        };
        assert_eq!(get("a.example", "/", None).await, "A");
        assert_eq!(get("a.example", "/", Some("always")).await, "B");
        assert_eq!(
            get("a.example", "/", Some("Always")).await,
            "A",
            "values compare case-sensitively"
        );
        assert_eq!(get("a.example", "/api", None).await, "C");
        assert_eq!(
            get("a.example", "/api/x", None).await,
            "A",
            "Exact is exact"
        );
        assert_eq!(get("x.wild.example", "/", None).await, "D");
        assert_eq!(
            get("x.y.wild.example", "/", None).await,
            "404",
            "a wildcard is one label"
        );
        assert_eq!(get("unknown.example", "/", None).await, "404");
        assert_eq!(get("unknown.example", "/only", None).await, "E");
        assert_eq!(get("unknown.example", "/only/x", None).await, "E");
        assert_eq!(get("unknown.example", "/onlyx", None).await, "404");
        assert_eq!(
            get("b.example", "/", Some("always")).await,
            "503",
            "no endpoints: 503, canary or not"
        );

        // Each access-log line carries its route's labels; the canary's names its upstream.
        let log = router.config().access_log();
        let canary_line = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(l) = text.lines().find(|l| l.contains(r#""side":"canary""#)) {
                    return l.to_string();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("nginx logs the canary request");
        let line: serde_json::Value = serde_json::from_str(&canary_line).unwrap();
        assert_eq!(line["canary"], "default-b-80", "{line}");
        assert_eq!(line["ingress"], "app", "{line}");
        assert_eq!(line["service"], "app-stable", "{line}");
        assert_eq!(line["route"], "/", "{line}");

        // A weight change is live once apply returns.
        state.routes[0].canary.as_mut().unwrap().route = CanaryRoute::weight(100);
        router.apply(state).await.unwrap();
        assert_eq!(router.reloads(), 1);
        for i in 0..20 {
            assert_eq!(get("a.example", "/", None).await, "B", "request {i}");
        }
        router.stop().await;
        assert!(registry.live().is_empty());
    }
}
