//! Kubeconfig files for the control plane's clients (kube-controller-manager, kube-scheduler,
//! kube-proxy, the kubelet, Argo Rollouts, gauntlet itself): one cluster, one user, one context.
//!
//! The files refer to the CA, certificate and key by absolute path rather than embedding them:
//! each key then exists once, with mode 0600, the CA a kubeconfig trusts is by construction the
//! file kube-apiserver was given, and a kubeconfig stays short enough to read in a failure
//! report. They are only read on this machine, inside the run's folder, so nothing needs them
//! self-contained.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

/// What one kubeconfig says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigSpec {
    /// e.g. `https://10.200.0.1:6443`.
    pub server: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The cluster's name (kubeadm: `kubernetes`).
    pub cluster: String,
    /// The user's name (kubeadm: `kubernetes-admin`, `system:kube-scheduler`, …); the context is
    /// `<user>@<cluster>`, as kubeadm names it.
    pub user: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{step} the kubeconfig {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serializing the kubeconfig {}: {source}", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_saphyr::ser::Error,
    },
}

/// Writes `spec` to `path` (mode 0600, like kubeadm's), as YAML kubectl, client-go and kube-rs
/// read. Relative file paths in `spec` are made absolute against the current directory.
pub fn write(path: &Path, spec: &KubeconfigSpec) -> Result<(), KubeconfigError> {
    let io = |step| {
        move |source| KubeconfigError::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    };
    let absolute = |p: &Path| -> Result<String, KubeconfigError> {
        let p = std::path::absolute(p).map_err(io("resolving a file path for"))?;
        Ok(p.to_string_lossy().into_owned())
    };
    let context = format!("{}@{}", spec.user, spec.cluster);
    let config = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: spec.cluster.clone(),
            cluster: Some(Cluster {
                server: Some(spec.server.clone()),
                certificate_authority: Some(absolute(&spec.ca)?),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: spec.user.clone(),
            auth_info: Some(AuthInfo {
                client_certificate: Some(absolute(&spec.cert)?),
                client_key: Some(absolute(&spec.key)?),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: context.clone(),
            context: Some(Context {
                cluster: spec.cluster.clone(),
                user: Some(spec.user.clone()),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(context),
        ..Kubeconfig::default()
    };
    let yaml = serde_saphyr::to_string(&config).map_err(|source| KubeconfigError::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("opening"))?;
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(io("setting the mode of"))?;
    file.write_all(yaml.as_bytes()).map_err(io("writing"))
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;
    use std::time::Duration;

    use kube::config::KubeConfigOptions;
    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;
    use crate::cluster::local::controlplane::pki::tests::names;
    use crate::cluster::local::controlplane::pki::{CertFiles, Pki};

    fn spec(server: &str, ca: &Path, client: &CertFiles) -> KubeconfigSpec {
        KubeconfigSpec {
            server: server.into(),
            ca: ca.into(),
            cert: client.cert.clone(),
            key: client.key.clone(),
            cluster: "kubernetes".into(),
            user: "kubernetes-admin".into(),
        }
    }

    async fn kube_config(path: &Path) -> kube::Config {
        let kubeconfig = Kubeconfig::read_from(path).expect("kube-rs reads the kubeconfig");
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kube-rs makes a Config of it")
    }

    #[tokio::test]
    async fn kube_rs_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path(), &names()).unwrap();
        let admin = pki
            .client_cert("admin", "kubernetes-admin", &["system:masters"])
            .unwrap();
        let path = dir.path().join("admin.conf");
        write(
            &path,
            &spec("https://10.200.0.1:6443", pki.ca_cert(), &admin),
        )
        .unwrap();

        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let config = kube_config(&path).await;
        assert_eq!(config.cluster_url.to_string(), "https://10.200.0.1:6443/");
        let ca = config.root_cert.expect("the CA is loaded");
        assert_eq!(ca.len(), 1, "one CA certificate");
        let read = Kubeconfig::read_from(&path).unwrap();
        assert_eq!(
            read.current_context.as_deref(),
            Some("kubernetes-admin@kubernetes")
        );
        let user = read.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.client_key.as_deref(), admin.key.to_str());
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relative.conf");
        let files = CertFiles {
            cert: "pki/admin.crt".into(),
            key: "pki/admin.key".into(),
        };
        write(
            &path,
            &spec("https://127.0.0.1:6443", Path::new("pki/ca.crt"), &files),
        )
        .unwrap();
        let read = Kubeconfig::read_from(&path).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let ca = read.clusters[0]
            .cluster
            .as_ref()
            .unwrap()
            .certificate_authority
            .clone();
        assert_eq!(
            ca,
            Some(cwd.join("pki/ca.crt").to_string_lossy().into_owned())
        );
    }

    #[test]
    fn a_failed_write_names_the_file_and_the_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/admin.conf");
        let files = CertFiles {
            cert: "admin.crt".into(),
            key: "admin.key".into(),
        };
        let err = write(
            &path,
            &spec("https://127.0.0.1:6443", Path::new("ca.crt"), &files),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                KubeconfigError::Io {
                    step: "opening",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("missing/admin.conf"), "{err}");
    }

    #[test]
    fn kubectl_reads_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path(), &names()).unwrap();
        let admin = pki
            .client_cert("admin", "kubernetes-admin", &["system:masters"])
            .unwrap();
        let path = dir.path().join("admin.conf");
        write(
            &path,
            &spec("https://10.200.0.1:6443", pki.ca_cert(), &admin),
        )
        .unwrap();
        let template = "{.current-context} {.clusters[0].cluster.server} \
                        {.clusters[0].cluster.certificate-authority} \
                        {.users[0].user.client-certificate}";
        let out = std::process::Command::new("kubectl")
            .args(["config", "view", "--kubeconfig"])
            .arg(&path)
            .args(["-o", &format!("jsonpath={template}")])
            .output();
        let out = match out {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: kubectl is not installed ({e})");
                return;
            }
            Err(e) => panic!("running kubectl: {e}"),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout,
            format!(
                "kubernetes-admin@kubernetes https://10.200.0.1:6443 {} {}",
                pki.ca_cert().display(),
                admin.cert.display()
            )
        );
    }

    /// `openssl s_server` with the generated serving certificate, requiring a client certificate
    /// from the CA and answering `GET /version` from a file.
    struct TlsServer {
        port: u16,
        _child: tokio::process::Child,
        _www: tempfile::TempDir,
    }

    async fn tls_server(pki: &Pki) -> Option<TlsServer> {
        let www = tempfile::tempdir().unwrap();
        std::fs::write(
            www.path().join("version"),
            r#"{"major":"1","minor":"34","gitVersion":"v1.34.1-gauntlet-test","gitCommit":"0",
                "gitTreeState":"clean","buildDate":"2025-09-09T00:00:00Z","goVersion":"go1.24",
                "compiler":"gc","platform":"linux/amd64"}"#,
        )
        .unwrap();
        let spawned = tokio::process::Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-WWW"])
            .arg("-cert")
            .arg(&pki.serving().cert)
            .arg("-key")
            .arg(&pki.serving().key)
            .arg("-CAfile")
            .arg(pki.ca_cert())
            .args(["-Verify", "1", "-verify_return_error"])
            .current_dir(www.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: openssl is not installed ({e})");
                return None;
            }
            Err(e) => panic!("starting openssl s_server: {e}"),
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(addr) = line.strip_prefix("ACCEPT ") {
                    return addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
                }
            }
            panic!("openssl s_server exited without listening");
        })
        .await
        .expect("openssl s_server listens within 30 s");
        // Keep draining its log so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(TlsServer {
            port,
            _child: child,
            _www: www,
        })
    }

    /// `GET /version` through a kube-rs client built from a kubeconfig.
    async fn version(kubeconfig: &Path) -> Result<String, String> {
        let client =
            kube::Client::try_from(kube_config(kubeconfig).await).map_err(|e| e.to_string())?;
        let info = tokio::time::timeout(Duration::from_secs(30), client.apiserver_version())
            .await
            .expect("an answer or an error within 30 s");
        info.map(|i| i.git_version).map_err(|e| {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain += &format!(": {s}");
                source = s.source();
            }
            chain
        })
    }

    #[tokio::test]
    async fn a_kube_client_from_the_kubeconfig_completes_mutual_tls_with_the_serving_cert() {
        let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let pki = Pki::create(dir.path(), &names()).unwrap();
        let foreign = Pki::create(other.path(), &names()).unwrap();
        let Some(server) = tls_server(&pki).await else {
            return;
        };
        let url = format!("https://127.0.0.1:{}", server.port);
        let admin = pki
            .client_cert("admin", "kubernetes-admin", &["system:masters"])
            .unwrap();
        let intruder = foreign
            .client_cert("admin", "kubernetes-admin", &["system:masters"])
            .unwrap();

        // A client trusting another CA refuses the server. Both CAs are named `kubernetes`, so
        // rustls finds the issuer by name and rejects its signature.
        let path = dir.path().join("wrong-ca.conf");
        write(&path, &spec(&url, foreign.ca_cert(), &admin)).unwrap();
        let err = version(&path).await.unwrap_err();
        assert!(err.contains("invalid peer certificate"), "{err}");
        // The server refuses a client certificate from another CA.
        let path = dir.path().join("wrong-client.conf");
        write(&path, &spec(&url, pki.ca_cert(), &intruder)).unwrap();
        let err = version(&path).await.unwrap_err();
        assert!(err.contains("received fatal alert"), "{err}");
        // Everything from the one PKI: the handshake completes both ways and the request is served.
        let path = dir.path().join("admin.conf");
        write(&path, &spec(&url, pki.ca_cert(), &admin)).unwrap();
        assert_eq!(
            version(&path).await,
            Ok("v1.34.1-gauntlet-test".to_string())
        );
    }
}
