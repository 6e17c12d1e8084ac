//! Sending one request the way real HTTP clients do.
//!
//! nginx closes idle keep-alive connections when a reload retires a worker. A request written
//! onto such a connection at that instant gets no response at all. Go's `net/http` (behind k6,
//! vegeta, hey), curl and browsers resend an idempotent request in exactly that case (RFC 9110
//! §9.2.2); hyper does not. Without the same rule here every weight change would cost a few
//! "failed" requests that no real user would see, and the error budget would measure our client
//! instead of the release. Only a connection closed before any byte of a response qualifies; a
//! 5xx, a reset mid-response or a timeout is counted as the failure it is.

use reqwest::{RequestBuilder, Response};

/// A response, and whether it needed a resend.
#[derive(Debug)]
pub struct Sent {
    pub response: Response,
    pub resent: bool,
}

/// Resends at most this many times. One retiring nginx worker can hold several idle pooled
/// connections, and the resend may draw the next of them; Go keeps retrying on such stale
/// connections too. A live server answers the first fresh connection.
pub const MAX_RESENDS: usize = 3;

/// Sends `request`, resending it while the connection closed before any response came (at
/// most [`MAX_RESENDS`] times). Requests with a streaming body cannot be cloned and are never
/// resent.
pub async fn send(request: RequestBuilder) -> Result<Sent, reqwest::Error> {
    let mut next = request.try_clone();
    let mut result = request.send().await;
    let mut resends = 0;
    while let Err(e) = &result
        && closed_before_response(e)
        && resends < MAX_RESENDS
        && let Some(again) = next.take()
    {
        next = again.try_clone();
        resends += 1;
        result = again.send().await;
    }
    result.map(|response| Sent {
        response,
        resent: resends > 0,
    })
}

/// Whether `send()` failed because the server closed the connection before any response:
/// hyper's "connection closed before message completed", or a reset / broken pipe (a close
/// with the request still unread in the server's buffer makes the kernel answer with RST).
/// These are the cases Go's transport resends an idempotent request for.
pub fn closed_before_response(e: &reqwest::Error) -> bool {
    if !e.is_request() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that closes the first connection after reading the request, unanswered, and
    /// answers on the next one.
    async fn flaky_server(first: &'static [u8]) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut served = 0;
            for i in 0..2 {
                let Ok((mut s, _)) = listener.accept().await else {
                    break;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                served += 1;
                if i == 0 {
                    let _ = s.write_all(first).await;
                    drop(s);
                } else {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                }
            }
            served
        });
        (url, task)
    }

    #[tokio::test]
    async fn a_connection_closed_unanswered_is_resent_once() {
        let (url, server) = flaky_server(b"").await;
        let sent = send(reqwest::Client::new().get(&url)).await.unwrap();
        assert!(sent.resent);
        assert_eq!(sent.response.status(), 200);
        assert_eq!(server.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_response_cut_midway_is_a_failure_not_a_resend() {
        let (url, server) = flaky_server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab").await;
        let result = send(reqwest::Client::new().get(&url)).await;
        // Headers arrived, so send() succeeds and the body read fails; nothing was resent.
        let sent = result.unwrap();
        assert!(!sent.resent);
        assert!(sent.response.bytes().await.is_err());
        server.abort();
    }
}
