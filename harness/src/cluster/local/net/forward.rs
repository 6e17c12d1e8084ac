//! Relays from the host's loopback into a cluster's namespace: how the user (kubectl, a browser)
//! and gauntlet's own load and clients reach the API server, the ingress and Prometheus without
//! an interface or route being added to the host.

use std::net::SocketAddr;

use tokio::task::JoinHandle;

use super::netns::NetnsThread;

/// A listening relay on `127.0.0.1`; stops when dropped.
pub struct Forward {
    local: SocketAddr,
    target: SocketAddr,
    task: JoinHandle<()>,
}

impl Forward {
    /// Listens on `127.0.0.1:port` (0: any free port) and relays each connection to `target`
    /// inside the namespace of `inside`.
    ///
    /// # Errors
    /// The port is taken.
    pub async fn start(
        inside: NetnsThread,
        target: SocketAddr,
        port: u16,
    ) -> std::io::Result<Forward> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("listening on 127.0.0.1:{port}: {e}"))
            })?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let inside = inside.clone();
                tokio::spawn(async move {
                    match inside.connect(target).await {
                        Ok(mut upstream) => {
                            let _ = client.set_nodelay(true);
                            let _ = upstream.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                        Err(e) => tracing::debug!("relay to {target}: {e}"),
                    }
                });
            }
        });
        Ok(Forward {
            local,
            target,
            task,
        })
    }

    /// Where the relay listens on the host.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Where it relays to, inside the namespace.
    pub fn target(&self) -> SocketAddr {
        self.target
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
