//! The real control plane of `--controller real`: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kube-proxy, built from the project's pinned Go modules ([`build`]) and run
//! as processes inside the cluster's network namespace, with their own CA ([`pki`]).
//!
//! Inside the namespace every component talks to the API server at the node's address; on the
//! host, the user and gauntlet reach it through a relay on `127.0.0.1`, which the admin
//! kubeconfig names. Each component authenticates with a client certificate for the identity
//! its kubeadm install has, so RBAC and the Node authorizer apply as on a real cluster.

pub mod build;
pub mod component;
pub mod kubeconfig;
pub mod modules;
pub mod pki;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::build::ControlPlaneBinaries;
use self::component::{Component, Launch, wait_ready};
use self::pki::Pki;
use super::net::{
    CLUSTER_CIDR, CLUSTER_DOMAIN, ClusterNet, Forward, KUBERNETES_SERVICE_IP, NODE_IP, SERVICE_CIDR,
};
use super::process::ProcessRegistry;
use crate::cluster::InfraError;

/// The API server's port inside the namespace (kubeadm's).
pub const APISERVER_PORT: u16 = 6443;
/// The node's name: one node per cluster, and clusters never share an API server.
pub const NODE_NAME: &str = "gauntlet-node";

/// How long each component may take to become ready. The API server installs its bootstrap
/// RBAC policy and CRD machinery on first start, which takes seconds on 2 loaded cores.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// An identity of the cluster: a client certificate and a kubeconfig for it, one that reaches
/// the API server from inside the namespace and one from the host.
#[derive(Debug, Clone)]
pub struct Identity {
    /// For processes inside the namespace (`https://10.200.0.1:6443`).
    pub inside: PathBuf,
    /// For processes on the host (through the relay on 127.0.0.1).
    pub host: PathBuf,
    /// The client certificate itself, for clients that take files (Prometheus' scrapes).
    pub cert: pki::CertFiles,
}

/// What [`ControlPlane::start`] needs.
pub struct ControlPlaneOptions<'a> {
    pub dir: &'a Path,
    pub binaries: &'a ControlPlaneBinaries,
    pub net: &'a ClusterNet,
    pub registry: &'a ProcessRegistry,
    /// Where each step is told (`up` prints it).
    pub progress: &'a (dyn Fn(&str) + Send + Sync),
}

/// The running control plane; see the module doc.
pub struct ControlPlane {
    dir: PathBuf,
    pki: Pki,
    components: Vec<Component>,
    api: Forward,
    admin: Identity,
    client: kube::Client,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler, in that order,
    /// each waited for; kube-proxy is started by [`ControlPlane::start_proxy`] once the node
    /// exists.
    ///
    /// # Errors
    /// A component did not start or was not ready in time (its log's tail is in the error).
    pub async fn start(o: ControlPlaneOptions<'_>) -> Result<ControlPlane, InfraError> {
        let dir = o.dir.to_path_buf();
        for sub in ["logs", "home", "etcd", "pki", "kubeconfig"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(InfraError::io(format!(
                "creating {}",
                dir.join(sub).display()
            )))?;
        }
        // etcd wants its data private.
        std::fs::set_permissions(
            dir.join("etcd"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(InfraError::io("securing etcd's data folder"))?;
        let api = Forward::start(o.net.inside.clone(), ClusterNet::node(APISERVER_PORT), 0)
            .await
            .map_err(InfraError::io("relaying the API server to the host"))?;
        let pki = Pki::create(
            &dir.join("pki"),
            &pki::ServingNames::apiserver(
                &[
                    IpAddr::from([127, 0, 0, 1]),
                    IpAddr::V4(NODE_IP),
                    IpAddr::V4(KUBERNETES_SERVICE_IP),
                ],
                CLUSTER_DOMAIN,
            ),
        )
        .map_err(|e| InfraError::Other(format!("creating the cluster's certificates: {e}")))?;
        let admin = identity(
            &pki,
            &dir,
            &api,
            "admin",
            "kubernetes-admin",
            &["system:masters"],
        )?;
        let client = kube_client(&admin.host).await?;
        let mut cp = ControlPlane {
            admin,
            client,
            dir,
            pki,
            components: Vec::new(),
            api,
        };

        (o.progress)("starting etcd");
        let etcd = cp.spawn(
            &o,
            "etcd",
            &o.binaries.etcd,
            vec![
                "--name=gauntlet".into(),
                format!("--data-dir={}", cp.dir.join("etcd").display()),
                "--listen-client-urls=http://127.0.0.1:2379".into(),
                "--advertise-client-urls=http://127.0.0.1:2379".into(),
                "--listen-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
                "--initial-cluster=gauntlet=http://127.0.0.1:2380".into(),
                "--listen-metrics-urls=http://127.0.0.1:2381".into(),
                // A test cluster's data dies with it: no fsync, a small quota.
                "--unsafe-no-fsync".into(),
                "--quota-backend-bytes=1073741824".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let inside = o.net.inside.clone();
        wait_ready(etcd, READY_WITHIN, || {
            let inside = inside.clone();
            async move {
                let addr = "127.0.0.1:2379".parse().expect("literal");
                match super::net::http::get(&inside, addr, "/health", Duration::from_secs(2)).await
                {
                    Ok((200, body))
                        if serde_json::from_slice::<serde_json::Value>(&body)
                            .is_ok_and(|v| v["health"] == "true") =>
                    {
                        Ok(())
                    }
                    Ok((s, body)) => Err(format!(
                        "/health answered {s}: {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;

        (o.progress)("starting kube-apiserver");
        let p = |f: &Path| f.display().to_string();
        let (sa_pub, sa_key) = cp.pki.service_account();
        let (sa_pub, sa_key) = (sa_pub.to_path_buf(), sa_key.to_path_buf());
        let serving = cp.pki.serving();
        let (serving_cert, serving_key) = (serving.cert.clone(), serving.key.clone());
        let ca = cp.pki.ca_cert().to_path_buf();
        let kubelet_client = cp.pki_client(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["kubeadm:cluster-admins"],
        )?;
        let apiserver_args = vec![
            "--etcd-servers=http://127.0.0.1:2379".into(),
            "--bind-address=0.0.0.0".into(),
            format!("--secure-port={APISERVER_PORT}"),
            format!("--advertise-address={NODE_IP}"),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--service-node-port-range=30000-32767".into(),
            format!("--client-ca-file={}", p(&ca)),
            format!("--tls-cert-file={}", p(&serving_cert)),
            format!("--tls-private-key-file={}", p(&serving_key)),
            format!("--kubelet-client-certificate={}", p(&kubelet_client.cert)),
            format!("--kubelet-client-key={}", p(&kubelet_client.key)),
            format!("--kubelet-certificate-authority={}", p(&ca)),
            // The node's name resolves nowhere the API server looks; its address does.
            "--kubelet-preferred-address-types=InternalIP".into(),
            format!("--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}"),
            format!("--service-account-key-file={}", p(&sa_pub)),
            format!("--service-account-signing-key-file={}", p(&sa_key)),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--event-ttl=1h".into(),
        ];
        let client = cp.client.clone();
        let apiserver = cp.spawn(
            &o,
            "kube-apiserver",
            &o.binaries.kube_apiserver,
            apiserver_args,
        )?;
        wait_ready(apiserver, READY_WITHIN, || {
            let client = client.clone();
            async move {
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                match client.request_text(req).await {
                    Ok(t) if t.trim() == "ok" => Ok(()),
                    Ok(t) => Err(format!("/readyz: {}", t.trim())),
                    Err(e) => Err(format!("/readyz: {e}")),
                }
            }
        })
        .await?;

        (o.progress)("starting kube-controller-manager and kube-scheduler");
        let kcm = cp.identity("controller-manager", "system:kube-controller-manager", &[])?;
        let kcm_args = vec![
            format!("--kubeconfig={}", p(&kcm.inside)),
            format!("--authentication-kubeconfig={}", p(&kcm.inside)),
            format!("--authorization-kubeconfig={}", p(&kcm.inside)),
            "--secure-port=0".into(),
            "--leader-elect=false".into(),
            "--controllers=*".into(),
            "--use-service-account-credentials=true".into(),
            format!("--service-account-private-key-file={}", p(&sa_key)),
            format!("--root-ca-file={}", p(&ca)),
            format!("--cluster-cidr={CLUSTER_CIDR}"),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--allocate-node-cidrs=false".into(),
            "--profiling=false".into(),
        ];
        cp.spawn(
            &o,
            "kube-controller-manager",
            &o.binaries.kube_controller_manager,
            kcm_args,
        )?;
        let scheduler = cp.identity("scheduler", "system:kube-scheduler", &[])?;
        let scheduler_args = vec![
            format!("--kubeconfig={}", p(&scheduler.inside)),
            format!("--authentication-kubeconfig={}", p(&scheduler.inside)),
            format!("--authorization-kubeconfig={}", p(&scheduler.inside)),
            "--secure-port=0".into(),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ];
        cp.spawn(
            &o,
            "kube-scheduler",
            &o.binaries.kube_scheduler,
            scheduler_args,
        )?;
        Ok(cp)
    }

    /// Starts kube-proxy (iptables mode) inside the namespace, for the node `node`.
    ///
    /// # Errors
    /// It did not start.
    pub fn start_proxy(&mut self, o: &ControlPlaneOptions<'_>) -> Result<(), InfraError> {
        let proxy = self.identity("kube-proxy", "system:kube-proxy", &[])?;
        let args = vec![
            format!("--kubeconfig={}", proxy.inside.display()),
            format!("--hostname-override={NODE_NAME}"),
            "--proxy-mode=iptables".into(),
            format!("--cluster-cidr={CLUSTER_CIDR}"),
            // Conntrack sizes and timeouts are the host's sysctls: leave them alone.
            "--conntrack-max-per-core=0".into(),
            "--conntrack-tcp-timeout-established=0".into(),
            "--conntrack-tcp-timeout-close-wait=0".into(),
            "--metrics-bind-address=127.0.0.1:10249".into(),
            "--healthz-bind-address=127.0.0.1:10256".into(),
        ];
        self.spawn(o, "kube-proxy", &o.binaries.kube_proxy, args)?;
        Ok(())
    }

    fn spawn(
        &mut self,
        o: &ControlPlaneOptions<'_>,
        name: &str,
        binary: &Path,
        args: Vec<String>,
    ) -> Result<&mut Component, InfraError> {
        // As kube-system pods see it: cluster DNS, never the host's resolvers.
        let resolv = self.dir.join("kube-system.resolv.conf");
        std::fs::write(&resolv, ClusterNet::resolv_conf("kube-system"))
            .map_err(InfraError::io(format!("writing {}", resolv.display())))?;
        let c = Component::spawn(Launch {
            name,
            binary,
            args,
            env: Vec::new(),
            placement: &o.net.placement().with_resolv_conf(&resolv),
            logs: &self.dir.join("logs"),
            home: &self.dir.join("home"),
            registry: o.registry,
        })?;
        self.components.push(c);
        Ok(self.components.last_mut().expect("just pushed"))
    }

    fn pki_client(
        &self,
        stem: &str,
        cn: &str,
        orgs: &[&str],
    ) -> Result<pki::CertFiles, InfraError> {
        client_cert(&self.pki, stem, cn, orgs)
    }

    /// A client certificate for `cn` in `orgs` and its two kubeconfigs (see [`Identity`]).
    ///
    /// # Errors
    /// The certificate or a file could not be written.
    pub fn identity(&self, stem: &str, cn: &str, orgs: &[&str]) -> Result<Identity, InfraError> {
        identity(&self.pki, &self.dir, &self.api, stem, cn, orgs)
    }

    /// A serving certificate of the cluster's CA for `cn` at `names` (the node's kubelet API).
    ///
    /// # Errors
    /// The certificate could not be written.
    pub fn serving_cert(
        &self,
        stem: &str,
        cn: &str,
        names: &pki::ServingNames,
    ) -> Result<pki::CertFiles, InfraError> {
        self.pki
            .server_cert(stem, cn, names)
            .map_err(|e| InfraError::Other(format!("a serving certificate for {cn}: {e}")))
    }

    /// The admin kubeconfig for the host (what `up` prints and kubectl uses).
    pub fn kubeconfig(&self) -> &Path {
        &self.admin.host
    }

    /// A client with the admin's rights.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The API server's address on the host.
    pub fn api_url(&self) -> String {
        format!("https://{}", self.api.local())
    }

    pub fn ca_cert(&self) -> &Path {
        self.pki.ca_cert()
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Fails when a component has died.
    pub fn check_alive(&mut self) -> Result<(), InfraError> {
        for c in &mut self.components {
            c.check_alive()?;
        }
        Ok(())
    }

    /// The pids of the components, for measurements.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.components
            .iter()
            .map(|c| (c.name().to_string(), c.pid()))
            .collect()
    }

    /// Stops the components in reverse order of their start.
    pub async fn stop(mut self) {
        while let Some(c) = self.components.pop() {
            c.stop(Duration::from_secs(5)).await;
        }
    }
}

/// A kube client from a kubeconfig file.
///
/// # Errors
/// The file is unreadable or names no usable cluster.
pub async fn kube_client(kubeconfig: &Path) -> Result<kube::Client, InfraError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| InfraError::Other(format!("reading {}: {e}", kubeconfig.display())))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| InfraError::Other(format!("using {}: {e}", kubeconfig.display())))?;
    kube::Client::try_from(config).map_err(|e| InfraError::Other(format!("Kubernetes client: {e}")))
}

fn client_cert(
    pki: &Pki,
    stem: &str,
    cn: &str,
    orgs: &[&str],
) -> Result<pki::CertFiles, InfraError> {
    pki.client_cert(stem, cn, orgs)
        .map_err(|e| InfraError::Other(format!("a certificate for {cn}: {e}")))
}

fn identity(
    pki: &Pki,
    dir: &Path,
    api: &Forward,
    stem: &str,
    cn: &str,
    orgs: &[&str],
) -> Result<Identity, InfraError> {
    let cert = client_cert(pki, stem, cn, orgs)?;
    let inside = dir.join("kubeconfig").join(format!("{stem}.inside.yaml"));
    let host = dir.join("kubeconfig").join(format!("{stem}.yaml"));
    for (path, server) in [
        (&inside, format!("https://{NODE_IP}:{APISERVER_PORT}")),
        (&host, format!("https://{}", api.local())),
    ] {
        kubeconfig::write(
            path,
            &kubeconfig::KubeconfigSpec {
                server,
                ca: pki.ca_cert().to_path_buf(),
                cert: cert.cert.clone(),
                key: cert.key.clone(),
                cluster: "gauntlet".into(),
                user: stem.into(),
            },
        )
        .map_err(|e| InfraError::Other(e.to_string()))?;
    }
    Ok(Identity { inside, host, cert })
}

/// The control plane's binaries: prebuilt (`GAUNTLET_CONTROLPLANE_BIN`), cached, or built now
/// from the pinned modules with progress on stderr (see [`build`]).
///
/// # Errors
/// No Go to build with, a failed download or build (exit 3), with what to do.
pub async fn binaries() -> Result<ControlPlaneBinaries, InfraError> {
    build::ensure_with_stderr_progress()
        .await
        .map_err(InfraError::from)
}
