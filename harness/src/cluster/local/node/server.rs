//! The node's kubelet API on port 10250: HTTPS with a certificate of the cluster's CA, clients
//! authenticated by their CA-signed certificates (the API server's `--kubelet-client-*`,
//! Prometheus'), as a kubelet serves it. What it answers:
//! - `/containerLogs/{namespace}/{pod}/{container}` (`kubectl logs`, gauntlet's artifacts), with
//!   `tailLines` and `limitBytes`; the log of the container's current and earlier runs;
//! - `/metrics/cadvisor` and `/metrics`: the pod series ([`super::metrics`]);
//! - `/healthz`.
//!
//! `exec`, `attach`, `portForward` and `follow` need a container runtime and answer 501.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::NodeContext;
use super::metrics;
use crate::cluster::InfraError;

/// The files the server is made of.
pub struct Tls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// A rustls server configuration that requires a client certificate signed by `tls.ca`.
///
/// # Errors
/// A file is unreadable or not PEM of the expected kind.
pub fn server_config(tls: &Tls<'_>) -> Result<rustls::ServerConfig, InfraError> {
    let bad = |what: &str, p: &Path, e: String| {
        InfraError::Other(format!("the node's {what} {}: {e}", p.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(tls.ca).map_err(|e| bad("CA", tls.ca, e.to_string()))? {
        let c = c.map_err(|e| bad("CA", tls.ca, e.to_string()))?;
        roots.add(c).map_err(|e| bad("CA", tls.ca, e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| bad("CA", tls.ca, e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls.cert)
        .map_err(|e| bad("certificate", tls.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", tls.cert, e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_file(tls.key).map_err(|e| bad("key", tls.key, e.to_string()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("certificate", tls.cert, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
    #[serde(default)]
    follow: bool,
}

async fn container_logs(
    State(ctx): State<Arc<NodeContext>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> axum::response::Response {
    if q.follow {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "gauntlet's node cannot follow a log; ask without follow\n",
        )
            .into_response();
    }
    let Some(c) = ctx
        .running()
        .into_iter()
        .find(|c| c.namespace == namespace && c.pod == pod && c.container == container)
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container} of pod {namespace}/{pod} does not run on this node\n"),
        )
            .into_response();
    };
    let text = tokio::fs::read_to_string(&c.log).await.unwrap_or_default();
    let mut text = match q.tail_lines {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            lines[from..].iter().map(|l| format!("{l}\n")).collect()
        }
        None => text,
    };
    if let Some(limit) = q.limit_bytes
        && text.len() > limit
    {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text.into_response()
}

async fn pod_metrics(State(ctx): State<Arc<NodeContext>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::cluster::local::exporter::OPENMETRICS,
        )],
        crate::cluster::local::exporter::encode_pods(&metrics::samples(&ctx)),
    )
}

async fn unsupported() -> impl IntoResponse {
    (
        StatusCode::NOT_IMPLEMENTED,
        "gauntlet's node has no container runtime: exec, attach and port-forward are not served\n",
    )
}

/// Serves the kubelet API on `listener` (inside the cluster's namespace) until aborted.
///
/// # Errors
/// Never returns otherwise; a failing connection only ends that connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    ctx: Arc<NodeContext>,
) -> Result<(), InfraError> {
    let app = axum::Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            axum::routing::get(container_logs),
        )
        .route("/metrics/cadvisor", axum::routing::get(pod_metrics))
        .route("/metrics", axum::routing::get(pod_metrics))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/exec/{*rest}", axum::routing::any(unsupported))
        .route("/attach/{*rest}", axum::routing::any(unsupported))
        .route("/portForward/{*rest}", axum::routing::any(unsupported))
        .with_state(ctx);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("kubelet API: accept: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("kubelet API: TLS with {peer}: {e}");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!("kubelet API: {peer}: {e}");
            }
        });
    }
}
