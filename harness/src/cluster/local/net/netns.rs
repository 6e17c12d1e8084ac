//! Network namespaces that belong to gauntlet alone.
//!
//! A namespace is made by a short-lived thread that `unshare`s into a new one and hands back an
//! open `/proc/thread-self/ns/net`; that file descriptor is what keeps the namespace alive. Nothing
//! is named under `/run/netns` and no holder process exists: when the last descriptor closes and
//! the last process inside exits, the kernel removes the namespace with every interface, route and
//! firewall rule in it. A gauntlet killed with SIGKILL therefore leaves no namespace behind (its
//! children die with it by `PR_SET_PDEATHSIG`).
//!
//! A [`NetnsThread`] lives inside one namespace for gauntlet's own sockets there (relays, probes,
//! the DNS server, the metrics exporter): a socket stays in the namespace it was created in,
//! whichever thread uses it later.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::Placement;

/// An open network namespace; see the module doc.
#[derive(Debug, Clone)]
pub struct Netns {
    fd: Arc<OwnedFd>,
}

impl Netns {
    /// Creates an empty network namespace (only a `lo`, down).
    ///
    /// # Errors
    /// Not permitted (gauntlet's real tier needs root), or the kernel refused.
    pub fn create() -> std::io::Result<Netns> {
        let fd = std::thread::spawn(|| -> std::io::Result<OwnedFd> {
            // SAFETY: unshare only changes this thread's own namespace; the thread ends here.
            if unsafe { nix::libc::unshare(nix::libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
        })
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))??;
        Ok(Netns { fd: Arc::new(fd) })
    }

    pub fn fd(&self) -> &Arc<OwnedFd> {
        &self.fd
    }

    /// A path that opens this namespace, for tools that take one (`ip link set DEV netns PATH`).
    /// Valid while this process holds the namespace.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }

    /// Where a process runs to be inside this namespace (with the host's files).
    pub fn placement(&self) -> Placement {
        Placement::new(self.fd.clone())
    }

    /// Runs `ip -batch -` inside the namespace with `commands`, one per line.
    ///
    /// # Errors
    /// `ip` is missing (Debian package `iproute2`) or refused a command; the error holds its
    /// message.
    pub async fn ip(&self, commands: &[String]) -> std::io::Result<()> {
        let mut cmd = tokio::process::Command::new(ip_binary());
        cmd.args(["-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        self.placement().apply(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("running `ip` (Debian package iproute2): {e}"),
            )
        })?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(commands.join("\n").as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "ip -batch failed ({}): {} [commands: {}]",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                commands.join("; ")
            )))
        }
    }
}

fn ip_binary() -> PathBuf {
    crate::cluster::local::process::find_program("ip").unwrap_or_else(|| "ip".into())
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread inside one network namespace that makes gauntlet's sockets there; see the module doc.
/// Cheap to clone; the thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct NetnsThread {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for NetnsThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetnsThread")
    }
}

impl NetnsThread {
    /// Starts the thread and moves it into `netns`.
    ///
    /// # Errors
    /// The thread could not enter the namespace.
    pub fn start(netns: &Netns) -> std::io::Result<NetnsThread> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let fd = netns.fd.clone();
        std::thread::Builder::new()
            .name("gauntlet-netns".into())
            .spawn(move || {
                // SAFETY: setns on this thread only, with a valid namespace descriptor.
                let rc = unsafe { nix::libc::setns(fd.as_raw_fd(), nix::libc::CLONE_NEWNET) };
                let entered = if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                };
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the namespace thread ended"))??;
        Ok(NetnsThread { jobs })
    }

    /// Runs `f` on the thread, inside the namespace (e.g. to write its `/proc/sys/net` files).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| std::io::Error::other("the namespace thread ended"))?;
        rx.await
            .map_err(|_| std::io::Error::other("the namespace thread ended"))?
    }

    /// A TCP connection from inside the namespace.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let socket = self
            .run(move || {
                let s = socket2::Socket::new(
                    socket2::Domain::for_address(addr),
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )?;
                s.set_nonblocking(true)?;
                s.set_cloexec(true)?;
                Ok(s)
            })
            .await?;
        let std: std::net::TcpStream = socket.into();
        tokio::net::TcpSocket::from_std_stream(std)
            .connect(addr)
            .await
    }

    /// A TCP listener bound inside the namespace.
    pub async fn listen(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let std = self
            .run(move || {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .await?;
        tokio::net::TcpListener::from_std(std)
    }

    /// A UDP socket bound inside the namespace.
    pub async fn udp(&self, addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let std = self
            .run(move || {
                let s = std::net::UdpSocket::bind(addr)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .await?;
        tokio::net::UdpSocket::from_std(std)
    }

    /// Writes a sysctl of the namespace (`net/ipv4/ip_forward` etc.).
    pub async fn sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
        let path = format!("/proc/sys/{key}");
        let value = value.to_string();
        self.run(move || {
            std::fs::write(&path, &value)
                .map_err(|e| std::io::Error::new(e.kind(), format!("writing {path}: {e}")))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    #[tokio::test]
    async fn a_namespace_is_private_and_its_sockets_stay_in_it() {
        if !root() {
            eprintln!("skipped: network namespaces need root");
            return;
        }
        let ns = Netns::create().unwrap();
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let t = NetnsThread::start(&ns).unwrap();
        let inside = t
            .run(|| std::fs::read_link("/proc/thread-self/ns/net"))
            .await
            .unwrap();
        assert_ne!(own, inside);
        ns.ip(&["link set lo up".into()]).await.unwrap();
        // A listener inside the namespace on 127.0.0.1 is not the host's 127.0.0.1.
        let l = t.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let accept = tokio::spawn(async move { l.accept().await.map(|_| ()) });
        t.connect(addr).await.unwrap();
        accept.await.unwrap().unwrap();
        let host = tokio::net::TcpStream::connect(addr).await;
        assert!(
            host.is_err(),
            "the host reached a port inside the namespace"
        );
    }
}
