//! `gauntlet up --backend local --controller real`: the target's baseline under the real
//! controller on a local control plane, held until Ctrl-C; `gauntlet down --backend local`;
//! `gauntlet controlplane build`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::up::{interrupted, start_unless_stopped};
use crate::cluster::InfraError;
use crate::cluster::kube::{KubeCluster, KubeOptions};
use crate::cluster::local::Binaries;
use crate::cluster::local::controlplane;
use crate::cluster::local::real::{RealCluster, RealOptions, leftovers};
use crate::exit::Exit;
use crate::spec::{ControllerKind, Manifests};
use crate::timeline::Timeline;

/// How long the baseline may take under the real controller: the node starts the pods at once,
/// but Flagger initializes a Canary on its 10 s control loop and waits for the primary.
const BASELINE_WITHIN: Duration = Duration::from_secs(180);

/// The target's namespace: its workload's, or `default`.
fn target_namespace(m: &Manifests) -> String {
    m.rollouts
        .first()
        .and_then(|r| r.object.metadata.namespace.clone())
        .or_else(|| {
            m.others
                .iter()
                .find(|o| o.kind == "Canary")
                .map(|o| o.namespace.clone())
        })
        .unwrap_or_else(|| crate::spec::manifests::DEFAULT_NAMESPACE.to_string())
}

/// Starts a real cluster running `kinds`, printing each step on stderr.
///
/// # Errors
/// A binary is missing or could not be built, or a part did not start.
pub async fn start_cluster(kinds: Vec<ControllerKind>) -> Result<RealCluster, InfraError> {
    let bins = Binaries::locate()?;
    let controlplane = controlplane::binaries().await?;
    RealCluster::start(RealOptions {
        controllers: kinds,
        bins,
        controlplane,
        timeline: Timeline::new(),
        progress: Arc::new(|line: &str| eprintln!("{line} ...")),
        backoff: Default::default(),
    })
    .await
}

/// Applies the target into its namespace (the kube backend's code path: server-side apply)
/// and waits until the controller reports its baseline (Argo: Healthy; Flagger: Initialized).
///
/// # Errors
/// The API server refused an object, or the baseline was not in place in time.
pub async fn deploy_baseline(
    cluster: &RealCluster,
    manifests: &Manifests,
    within: Duration,
) -> Result<KubeCluster, InfraError> {
    cluster.publish_for(manifests).await?;
    let namespace = target_namespace(manifests);
    let opts = KubeOptions {
        scenario: "up".into(),
        namespace,
        ingress_host: None,
        image: None,
        keep_namespace: true,
    };
    let mut kc = KubeCluster::new(cluster.client(), manifests, opts, Timeline::new())
        .map_err(InfraError::Other)?;
    kc.provision(&[], within).await?;
    Ok(kc)
}

/// `gauntlet up --backend local --controller real`.
pub async fn up_real(target_dir: &Path) -> Exit {
    let stop = interrupted();
    tokio::pin!(stop);
    let loaded = crate::spec::load_target(target_dir);
    if let Some(notice) = crate::spec::crd::partial_notice() {
        eprintln!("warning: {notice}");
    }
    let manifests = match loaded {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::BadInput;
        }
    };
    let kind = match manifests.controller() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {}: {e}", target_dir.display());
            return Exit::BadInput;
        }
    };
    let started = tokio::time::Instant::now();
    let start = async {
        let cluster = start_cluster(vec![kind]).await?;
        eprintln!(
            "applying {} and waiting for its baseline ...",
            target_dir.display()
        );
        let kc = deploy_baseline(&cluster, &manifests, BASELINE_WITHIN).await?;
        Ok::<_, InfraError>((cluster, kc))
    };
    let (mut cluster, kc) = match start_unless_stopped(start, stop.as_mut()).await {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    eprintln!(
        "ready in {:.1}s ({}); Ctrl-C to stop",
        started.elapsed().as_secs_f64(),
        kc.status().line
    );
    println!("ingress: {}", cluster.ingress_url());
    println!("prometheus: {}", cluster.prometheus_url());
    println!("kubeconfig: {}", cluster.kubeconfig().display());
    println!("namespace: {}", kc.namespace());
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let exit = loop {
        tokio::select! {
            why = &mut stop => {
                eprintln!("{why}: stopping");
                break Exit::Passed;
            }
            _ = health.tick() => {
                if let Err(e) = cluster.check_alive().await {
                    eprintln!("error: {e}");
                    break Exit::Infra;
                }
            }
        }
    };
    drop(kc);
    cluster.shutdown().await;
    exit
}

/// `gauntlet down --backend local`: removes what killed gauntlets left (folders, cgroups,
/// stray processes); running ones are left alone.
pub fn down_local() -> Exit {
    let swept = leftovers::sweep(None);
    for f in &swept.folders {
        eprintln!("removed {}", f.display());
    }
    for c in &swept.cgroups {
        eprintln!("removed cgroup {}", c.display());
    }
    if swept.processes > 0 {
        eprintln!("killed {} leftover process(es)", swept.processes);
    }
    if swept.folders.is_empty() {
        eprintln!("nothing left behind by a stopped gauntlet");
    }
    Exit::Passed
}

/// `gauntlet controlplane build`: builds (or finds) the pinned control plane and prints the
/// folder of its binaries.
pub async fn controlplane_build() -> Exit {
    match controlplane::binaries().await {
        Ok(b) => {
            println!("{}", b.dir.display());
            Exit::Passed
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Infra
        }
    }
}
