//! The cluster's certificates and keys, laid out as kubeadm lays out `/etc/kubernetes/pki`, but
//! generated in-process (rcgen, aws-lc-rs) so that a run needs neither kubeadm nor openssl.
//!
//! Every key is ECDSA P-256, which Go's crypto accepts everywhere the control plane reads a key:
//! TLS serving and client certificates, and the service-account signing key (ES256 tokens;
//! client-go's keyutil reads the PKCS#8 `PRIVATE KEY` blocks written here).
//!
//! The CA's key stays in memory so that more client certificates can be signed after
//! [`Pki::create`]; it is also written out (`ca.key`) for kube-controller-manager's
//! `--cluster-signing-key-file`. A PKI is made fresh for each cluster and never reopened.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, string::Ia5String,
};

/// The CA outlives any test run by far; a leaf a year.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start an hour in the past, so that one made a moment ago is valid to a process
/// whose clock reads a little earlier.
const BACKDATE: Duration = Duration::from_secs(3600);

/// The files [`Pki::create`] writes, which a client certificate must not overwrite.
const RESERVED_STEMS: [&str; 3] = ["ca", "apiserver", "sa"];

/// X.520 organizationName, the attribute Kubernetes reads groups from.
const ORGANIZATION_OID: &[u64] = &[2, 5, 4, 10];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating {what} for {}: {source}", path.display())]
    Generate {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what} for {}: {reason}", path.display())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The names kube-apiserver's serving certificate is valid for: every address and name a client
/// may dial it by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingNames {
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
}

impl ServingNames {
    /// kubeadm's set: `localhost` and the `kubernetes` Service's names in `domain`, plus `ips`
    /// (loopback, the node's IP, the Service's ClusterIP).
    pub fn apiserver(ips: &[IpAddr], domain: &str) -> ServingNames {
        let mut dns: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ]
        .map(String::from)
        .to_vec();
        dns.push(format!("kubernetes.default.svc.{domain}"));
        ServingNames {
            ips: ips.to_vec(),
            dns,
        }
    }
}

/// A certificate and its private key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The cluster CA and what it signed; see the module doc.
pub struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    ca_files: CertFiles,
    serving: CertFiles,
    sa_pub: PathBuf,
    sa_key: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Creates `dir` and writes into it: `ca.crt`/`ca.key`, kube-apiserver's
    /// `apiserver.crt`/`apiserver.key` for `names`, and the service-account key pair
    /// `sa.key`/`sa.pub`. Keys are written with mode 0600, certificates 0644.
    pub fn create(dir: &Path, names: &ServingNames) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            step: "creating the PKI folder",
            path: dir.to_path_buf(),
            source,
        })?;
        let ca_files = files(dir, "ca");
        let generate = |what| {
            let path = ca_files.cert.clone();
            move |source| PkiError::Generate { what, path, source }
        };
        let ca_key = KeyPair::generate().map_err(generate("the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kubernetes");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let ca_cert = params
            .self_signed(&ca_key)
            .map_err(generate("the CA certificate"))?;
        write(&ca_files.cert, &ca_cert.pem(), 0o644)?;
        write(&ca_files.key, &ca_key.serialize_pem(), 0o600)?;

        let mut pki = Pki {
            dir: dir.to_path_buf(),
            ca: Issuer::new(params, ca_key),
            serving: files(dir, "apiserver"),
            ca_files,
            sa_pub: dir.join("sa.pub"),
            sa_key: dir.join("sa.key"),
        };
        pki.serving = pki.serving_cert(names)?;
        pki.write_service_account_key()?;
        Ok(pki)
    }

    /// A client certificate for user `cn` in the groups `organizations`, signed by the CA and
    /// written to `<stem>.crt`/`<stem>.key`. At most two groups: rcgen keeps one value per
    /// attribute type, and the organization attribute can be named two ways there.
    pub fn client_cert(
        &self,
        stem: &str,
        cn: &str,
        organizations: &[&str],
    ) -> Result<CertFiles, PkiError> {
        let files = self.stem_files(stem)?;
        let mut dn = DistinguishedName::new();
        match organizations {
            [] => {}
            [one] => dn.push(DnType::OrganizationName, *one),
            [one, two] => {
                dn.push(DnType::OrganizationName, *one);
                dn.push(DnType::CustomDnType(ORGANIZATION_OID.to_vec()), *two);
            }
            more => {
                return Err(PkiError::Invalid {
                    what: "a client certificate",
                    path: files.cert,
                    reason: format!("{} organizations asked, at most 2 supported", more.len()),
                });
            }
        }
        dn.push(DnType::CommonName, cn);
        self.sign(
            &files,
            dn,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            "a client certificate",
        )?;
        Ok(files)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `--client-ca-file`, `--root-ca-file`, and every kubeconfig's `certificate-authority`.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_files.cert
    }

    /// kube-controller-manager's `--cluster-signing-key-file`.
    pub fn ca_key(&self) -> &Path {
        &self.ca_files.key
    }

    /// `--tls-cert-file` and `--tls-private-key-file`.
    pub fn serving(&self) -> &CertFiles {
        &self.serving
    }

    /// (`sa.pub`, `sa.key`): `--service-account-key-file`, and
    /// `--service-account-signing-key-file` / `--service-account-private-key-file`.
    pub fn service_account(&self) -> (&Path, &Path) {
        (&self.sa_pub, &self.sa_key)
    }

    /// A serving certificate for `cn` with `names` as its SANs, signed by the CA and written to
    /// `<stem>.crt`/`<stem>.key` (the node's kubelet API has one).
    pub fn server_cert(
        &self,
        stem: &str,
        cn: &str,
        names: &ServingNames,
    ) -> Result<CertFiles, PkiError> {
        let files = self.stem_files(stem)?;
        self.sign_serving(files, cn, names)
    }

    fn serving_cert(&self, names: &ServingNames) -> Result<CertFiles, PkiError> {
        self.sign_serving(files(&self.dir, "apiserver"), "kube-apiserver", names)
    }

    fn sign_serving(
        &self,
        files: CertFiles,
        cn: &str,
        names: &ServingNames,
    ) -> Result<CertFiles, PkiError> {
        let mut sans: Vec<SanType> = names.ips.iter().copied().map(SanType::IpAddress).collect();
        for name in &names.dns {
            let name = Ia5String::try_from(name.as_str()).map_err(|e| PkiError::Invalid {
                what: "the serving certificate",
                path: files.cert.clone(),
                reason: format!("{name:?} is not a DNS name: {e}"),
            })?;
            sans.push(SanType::DnsName(name));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        self.sign(
            &files,
            dn,
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            "the serving certificate",
        )?;
        Ok(files)
    }

    fn sign(
        &self,
        files: &CertFiles,
        dn: DistinguishedName,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        what: &'static str,
    ) -> Result<(), PkiError> {
        let generate = |source| PkiError::Generate {
            what,
            path: files.cert.clone(),
            source,
        };
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALIDITY);
        let cert = params.signed_by(&key, &self.ca).map_err(generate)?;
        write(&files.key, &key.serialize_pem(), 0o600)?;
        write(&files.cert, &cert.pem(), 0o644)
    }

    fn write_service_account_key(&self) -> Result<(), PkiError> {
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "the service-account key",
            path: self.sa_key.clone(),
            source,
        })?;
        write(&self.sa_key, &key.serialize_pem(), 0o600)?;
        write(&self.sa_pub, &key.public_key_pem(), 0o644)
    }

    /// `<stem>.crt`/`<stem>.key` in the PKI folder. A stem that would leave the folder, or
    /// overwrite the CA's, the serving or the service-account files, is refused.
    fn stem_files(&self, stem: &str) -> Result<CertFiles, PkiError> {
        let invalid = |reason: &str| PkiError::Invalid {
            what: "a client certificate",
            path: self.dir.join(stem),
            reason: reason.into(),
        };
        if stem.is_empty() || stem == "." || stem == ".." || stem.contains('/') {
            return Err(invalid("the file stem must be a plain file name"));
        }
        if RESERVED_STEMS.contains(&stem) {
            return Err(invalid("the file stem is the PKI's own"));
        }
        Ok(files(&self.dir, stem))
    }
}

fn files(dir: &Path, stem: &str) -> CertFiles {
    CertFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    }
}

/// Valid from now − [`BACKDATE`] to now + `length`. rcgen's time type is reached through
/// `date_time_ymd`, so that the `time` crate need not be a dependency here.
fn set_validity(params: &mut CertificateParams, length: Duration) {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - BACKDATE;
    params.not_after = now + length;
}

/// Writes `contents` with `mode`, narrowing an existing file's mode before a key goes into it.
fn write(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let io = |step| {
        move |source| PkiError::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io("opening"))?;
    // `mode` above applies to a new file only, and through the umask.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io("setting the mode of"))?;
    file.write_all(contents.as_bytes()).map_err(io("writing"))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::Command;

    use super::*;

    pub(crate) fn names() -> ServingNames {
        let ips = ["127.0.0.1", "10.200.0.1", "10.96.0.1"].map(|s| s.parse().unwrap());
        ServingNames::apiserver(&ips, "cluster.local")
    }

    /// openssl's exit status and output, or `None` (said on stderr) when it is not installed.
    pub(crate) fn openssl(args: &[&str]) -> Option<(bool, String)> {
        match Command::new("openssl").args(args).output() {
            Ok(out) => Some((
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: openssl is not installed ({e})");
                None
            }
            Err(e) => panic!("running openssl: {e}"),
        }
    }

    fn text(path: &Path) -> Option<String> {
        let path = path.to_str().unwrap();
        let (ok, out) = openssl(&["x509", "-in", path, "-noout", "-text"])?;
        assert!(ok, "{out}");
        Some(out)
    }

    fn verify(ca: &Path, purpose: &str, cert: &Path) -> Option<(bool, String)> {
        let (ca, cert) = (ca.to_str().unwrap(), cert.to_str().unwrap());
        openssl(&["verify", "-CAfile", ca, "-purpose", purpose, cert])
    }

    #[test]
    fn create_writes_every_file_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(&dir.path().join("pki"), &names()).unwrap();
        let (sa_pub, sa_key) = pki.service_account();
        for (path, mode) in [
            (pki.ca_cert(), 0o644),
            (pki.ca_key(), 0o600),
            (pki.serving().cert.as_path(), 0o644),
            (pki.serving().key.as_path(), 0o600),
            (sa_pub, 0o644),
            (sa_key, 0o600),
        ] {
            let meta = std::fs::metadata(path).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "{}",
                path.display()
            );
        }
        for key in [pki.ca_key(), &pki.serving().key, sa_key] {
            let pem = std::fs::read_to_string(key).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
            KeyPair::from_pem(&pem).expect("the key parses");
        }
        for cert in [pki.ca_cert(), &pki.serving().cert] {
            let pem = std::fs::read_to_string(cert).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        }
        let pem = std::fs::read_to_string(sa_pub).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    }

    #[test]
    fn the_serving_certificate_names_every_address_and_chains_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path(), &names()).unwrap();
        let Some(ca) = text(pki.ca_cert()) else {
            return;
        };
        assert!(ca.contains("CA:TRUE"), "{ca}");
        assert!(ca.contains("Certificate Sign"), "{ca}");

        let Some(serving) = text(&pki.serving().cert) else {
            return;
        };
        for san in [
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "IP Address:127.0.0.1",
            "IP Address:10.200.0.1",
            "IP Address:10.96.0.1",
        ] {
            assert!(serving.contains(san), "{san} missing:\n{serving}");
        }
        assert!(
            serving.contains("TLS Web Server Authentication"),
            "{serving}"
        );
        assert!(!serving.contains("Client Authentication"), "{serving}");
        assert!(serving.contains("CA:FALSE"), "{serving}");
        assert!(serving.contains("prime256v1"), "{serving}");
        let Some((ok, out)) = verify(pki.ca_cert(), "sslserver", &pki.serving().cert) else {
            return;
        };
        assert!(ok && out.contains(": OK"), "{out}");
    }

    #[test]
    fn client_certificates_carry_the_user_and_groups_for_client_auth_only() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path(), &names()).unwrap();
        let cases: [(&str, &str, &[&str], &str); 4] = [
            (
                "admin",
                "admin",
                &["system:masters"],
                "subject=O = system:masters, CN = admin",
            ),
            (
                "controller-manager",
                "system:kube-controller-manager",
                &[],
                "subject=CN = system:kube-controller-manager",
            ),
            (
                "kubelet",
                "system:node:n1",
                &["system:nodes"],
                "subject=O = system:nodes, CN = system:node:n1",
            ),
            (
                "argo-rollouts",
                "system:serviceaccount:argo-rollouts:argo-rollouts",
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:argo-rollouts",
                ],
                "subject=O = system:serviceaccounts, O = system:serviceaccounts:argo-rollouts, \
                 CN = system:serviceaccount:argo-rollouts:argo-rollouts",
            ),
        ];
        for (stem, cn, orgs, subject) in cases {
            let files = pki.client_cert(stem, cn, orgs).unwrap();
            assert_eq!(files.cert, dir.path().join(format!("{stem}.crt")));
            assert_eq!(files.key, dir.path().join(format!("{stem}.key")));
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let cert = files.cert.to_str().unwrap();
            let Some((ok, out)) = openssl(&["x509", "-in", cert, "-noout", "-subject"]) else {
                return;
            };
            assert!(ok, "{out}");
            assert_eq!(out.trim(), subject);
            let out = text(&files.cert).unwrap();
            assert!(out.contains("TLS Web Client Authentication"), "{out}");
            assert!(!out.contains("Server Authentication"), "{out}");
            assert!(!out.contains("Subject Alternative Name"), "{out}");
            let (ok, out) = verify(pki.ca_cert(), "sslclient", &files.cert).unwrap();
            assert!(ok && out.contains(": OK"), "{out}");
            let (ok, out) = verify(pki.ca_cert(), "sslserver", &files.cert).unwrap();
            assert!(!ok, "a client certificate must not serve: {out}");
        }
    }

    #[test]
    fn a_certificate_from_another_ca_does_not_verify() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let pki_one = Pki::create(one.path(), &names()).unwrap();
        let pki_two = Pki::create(two.path(), &names()).unwrap();
        let foreign = pki_two
            .client_cert("admin", "admin", &["system:masters"])
            .unwrap();
        let Some((ok, out)) = verify(pki_one.ca_cert(), "sslclient", &foreign.cert) else {
            return;
        };
        assert!(!ok, "{out}");
        let (ok, out) = verify(pki_one.ca_cert(), "sslserver", &pki_two.serving().cert).unwrap();
        assert!(!ok, "{out}");
    }

    #[test]
    fn the_service_account_public_key_is_the_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path(), &names()).unwrap();
        let (sa_pub, sa_key) = pki.service_account();
        let Some((ok, derived)) = openssl(&["pkey", "-in", sa_key.to_str().unwrap(), "-pubout"])
        else {
            return;
        };
        assert!(ok, "{derived}");
        assert_eq!(derived, std::fs::read_to_string(sa_pub).unwrap());
        let (ok, out) = openssl(&[
            "pkey",
            "-pubin",
            "-in",
            sa_pub.to_str().unwrap(),
            "-noout",
            "-text",
        ])
        .unwrap();
        assert!(ok && out.contains("prime256v1"), "{out}");
    }

    #[test]
    fn bad_requests_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path(), &names()).unwrap();
        for stem in ["", ".", "..", "../escape", "a/b", "ca", "apiserver", "sa"] {
            let err = pki.client_cert(stem, "x", &[]).unwrap_err();
            assert!(matches!(err, PkiError::Invalid { .. }), "{stem:?}: {err}");
        }
        let err = pki.client_cert("many", "x", &["a", "b", "c"]).unwrap_err();
        assert!(err.to_string().contains("many.crt"), "{err}");
        assert!(!dir.path().join("many.key").exists());

        let mut names = names();
        names.dns.push("ünïcode.local".into());
        let err = Pki::create(&dir.path().join("other"), &names).unwrap_err();
        assert!(err.to_string().contains("apiserver.crt"), "{err}");

        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = Pki::create(&file.join("pki"), &super::tests::names()).unwrap_err();
        assert!(matches!(err, PkiError::Io { .. }), "{err}");
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
