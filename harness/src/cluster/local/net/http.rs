//! Plain HTTP GETs from inside a namespace: the kubelet's probes and the readiness checks of the
//! cluster's own components, which listen where only the namespace reaches.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};

use super::netns::NetnsThread;

/// `GET http://addr{path}` from inside `inside`'s namespace; the status and the body.
///
/// # Errors
/// No connection, a broken answer, or no answer within `timeout`.
pub async fn get(
    inside: &NetnsThread,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, bytes::Bytes)> {
    let work = async {
        let stream = inside.connect(addr).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        let conn = tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::USER_AGENT, "kube-probe/1.34")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(std::io::Error::other)?;
        let res = sender
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        conn.abort();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("GET {addr}{path}: no answer within {timeout:?}"),
        )
    })?
}
