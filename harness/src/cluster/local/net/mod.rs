//! The real tier's network: one network namespace per cluster and per pod, the pods' IPs, the
//! Services' names, and relays from the host's loopback into the cluster.

pub mod dns;
pub mod forward;
pub mod http;
pub mod netns;
pub mod placement;
pub mod sandbox;

pub use self::forward::Forward;
pub use self::netns::{Netns, NetnsThread};
pub use self::placement::Placement;

use std::net::{Ipv4Addr, SocketAddr};

/// The node's address inside the cluster's namespace: what the API server advertises, where
/// the node's own services (Prometheus, the DNS server, the loadtester, the ingress) listen,
/// and every pod's gateway. Each cluster has its own namespace, so all clusters use the same
/// addresses without colliding.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The node's pod CIDR (`Node.spec.podCIDR`): pods get `.2` to `.254`.
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The whole cluster's pod range (kube-proxy's `--cluster-cidr`).
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// Services' ClusterIPs (the API server's `--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service: the first address of the range, as the API server allocates it.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// `kube-system/kube-dns`, as kubeadm places it (the tenth address of the range).
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The cluster domain (`--cluster-domain`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The ingress port on the node, as ingress-nginx's.
pub const INGRESS_PORT: u16 = 80;
/// ingress-nginx's metrics port, where the node serves the ingress series.
pub const INGRESS_METRICS_PORT: u16 = 10254;

/// The first pod address and the last, of [`POD_CIDR`].
pub const POD_IPS: (Ipv4Addr, Ipv4Addr) =
    (Ipv4Addr::new(10, 244, 0, 2), Ipv4Addr::new(10, 244, 0, 254));

/// One cluster's network namespace, with the node's address and forwarding on.
#[derive(Debug, Clone)]
pub struct ClusterNet {
    pub netns: Netns,
    pub inside: NetnsThread,
    /// `cgroup.procs` of the cluster's system cgroup, which its processes join.
    system: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

impl ClusterNet {
    /// Creates the namespace: `lo` up with [`NODE_IP`], IP forwarding on (the node routes
    /// between its pods), and a route for the Service range so that the node's own processes
    /// can reach ClusterIPs (kube-proxy's rules rewrite them after routing).
    ///
    /// # Errors
    /// Not root, `ip` missing, or the kernel refused.
    pub async fn create(
        system: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    ) -> std::io::Result<ClusterNet> {
        let netns = Netns::create()?;
        let inside = NetnsThread::start(&netns)?;
        netns
            .ip(&[
                "link set lo up".into(),
                format!("addr add {NODE_IP}/32 dev lo"),
                format!("route add {SERVICE_CIDR} dev lo"),
            ])
            .await?;
        inside.sysctl("net/ipv4/ip_forward", "1").await?;
        Ok(ClusterNet {
            netns,
            inside,
            system,
        })
    }

    /// Where the cluster's own processes run: its namespace and its system cgroup.
    pub fn placement(&self) -> Placement {
        self.netns.placement().with_cgroup(self.system.clone())
    }

    /// `addr` on the node's address.
    pub fn node(port: u16) -> SocketAddr {
        SocketAddr::from((NODE_IP, port))
    }

    /// The `resolv.conf` of a process in `namespace`, as the kubelet writes a pod's with
    /// `dnsPolicy: ClusterFirst`.
    pub fn resolv_conf(namespace: &str) -> String {
        format!(
            "search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\nnameserver {DNS_SERVICE_IP}\noptions ndots:5\n"
        )
    }
}
