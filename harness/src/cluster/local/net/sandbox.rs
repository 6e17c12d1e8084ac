//! Pod sandboxes: a network namespace per pod with its own IP, reached from the node by a veth
//! pair and a host route (routed, as Calico does, rather than bridged: every packet between
//! pods crosses the node's namespace, where kube-proxy's rules apply without a bridge netfilter
//! module), and the files a pod sees as `/etc/hosts` and `/etc/resolv.conf`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{ClusterNet, NODE_IP, Netns, POD_IPS, Placement};

/// Hands out pod IPs from the node's pod CIDR; an IP is free again once its sandbox is gone.
#[derive(Debug, Clone, Default)]
pub struct PodIps {
    taken: Arc<Mutex<BTreeSet<Ipv4Addr>>>,
}

impl PodIps {
    fn take(&self) -> Option<Ipv4Addr> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let (first, last) = (u32::from(POD_IPS.0), u32::from(POD_IPS.1));
        let ip = (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| !taken.contains(ip))?;
        taken.insert(ip);
        Some(ip)
    }

    fn release(&self, ip: Ipv4Addr) {
        self.taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

/// One pod's network: its namespace and IP, and its files. Removed by [`Sandbox::remove`];
/// dropping it without that still frees the namespace (and with it the veth pair and route)
/// once no process is left inside.
pub struct Sandbox {
    netns: Netns,
    ip: Ipv4Addr,
    host_veth: String,
    files: PathBuf,
    ips: PodIps,
    net: ClusterNet,
}

impl Sandbox {
    /// Creates the sandbox of pod `name` in `namespace`, writing its files under `dir`.
    ///
    /// # Errors
    /// The pod CIDR is exhausted, or the namespace or its interfaces could not be set up.
    pub async fn create(
        net: &ClusterNet,
        ips: &PodIps,
        namespace: &str,
        name: &str,
        dir: &Path,
    ) -> std::io::Result<Sandbox> {
        let ip = ips
            .take()
            .ok_or_else(|| std::io::Error::other("the node's pod CIDR has no free address"))?;
        let made = Self::create_at(net, ips, ip, namespace, name, dir).await;
        if made.is_err() {
            ips.release(ip);
        }
        made
    }

    async fn create_at(
        net: &ClusterNet,
        ips: &PodIps,
        ip: Ipv4Addr,
        namespace: &str,
        name: &str,
        dir: &Path,
    ) -> std::io::Result<Sandbox> {
        let netns = Netns::create()?;
        let id = format!("{:08x}", u32::from(ip));
        let host_veth = format!("veth{id}");
        let peer = format!("p{id}");
        // A leftover of an earlier pod with this IP (its namespace may still be going away).
        let _ = net.netns.ip(&[format!("link del {host_veth}")]).await;
        net.netns
            .ip(&[
                format!("link add {host_veth} type veth peer name {peer}"),
                format!("link set {peer} netns {}", netns.path().display()),
                format!("link set {host_veth} up"),
                format!("route replace {ip}/32 dev {host_veth}"),
            ])
            .await?;
        netns
            .ip(&[
                "link set lo up".into(),
                format!("link set {peer} name eth0"),
                "link set eth0 up".into(),
                format!("addr add {ip}/32 dev eth0"),
                format!("route add {NODE_IP} dev eth0 scope link"),
                format!("route add default via {NODE_IP} dev eth0"),
            ])
            .await?;
        std::fs::create_dir_all(dir)?;
        let files = dir.to_path_buf();
        std::fs::write(
            files.join("resolv.conf"),
            ClusterNet::resolv_conf(namespace),
        )?;
        std::fs::write(
            files.join("hosts"),
            format!(
                "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{name}\n"
            ),
        )?;
        Ok(Sandbox {
            netns,
            ip,
            host_veth,
            files,
            ips: ips.clone(),
            net: net.clone(),
        })
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Where the pod's containers run.
    pub fn placement(&self) -> Placement {
        self.netns
            .placement()
            .with_resolv_conf(&self.files.join("resolv.conf"))
            .with_hosts(&self.files.join("hosts"))
    }

    /// Deletes the veth pair and route at once (the namespace goes with the last reference)
    /// and frees the IP. The pod's processes must have exited.
    pub async fn remove(self) {
        if let Err(e) = self
            .net
            .netns
            .ip(&[format!("link del {}", self.host_veth)])
            .await
        {
            tracing::debug!("removing {}: {e}", self.host_veth);
        }
        self.ips.release(self.ip);
    }
}
