//! Scenario namespaces that outlived their run. A run deletes its namespaces when it ends, on
//! failure and on Ctrl-C too; a run that was killed (SIGKILL, a lost CI machine) cannot. Its
//! namespaces carry gauntlet's label and the scenario annotation, so they can be found, and
//! their age tells them from the namespaces of a run still going. Their names are
//! `gauntlet-<scenario>-<salt>` too: a namespace `gauntlet up` deployed a baseline into (the
//! target's own, e.g. `default`) carries the label and annotation but is not gauntlet's to
//! delete.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};

use super::render::{MANAGED_BY, SCENARIO_ANNOTATION, SCENARIO_PREFIX};

/// A scenario namespace left on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub namespace: String,
    pub scenario: String,
    pub age: Duration,
}

/// gauntlet's scenario namespaces created more than `older_than` ago and not already being
/// deleted, oldest first. Namespaces gauntlet did not create for a scenario (the controllers'
/// and Prometheus' of `up --backend kind`, anyone else's) are never listed.
///
/// # Errors
/// The API server refused the list.
pub async fn stale(client: &Client, older_than: Duration) -> Result<Vec<Leftover>, kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let now = SystemTime::now();
    let mut out: Vec<Leftover> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .into_iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
        .filter(|ns| ns.name_any().starts_with(SCENARIO_PREFIX))
        .filter_map(|ns| {
            let scenario = ns.annotations().get(SCENARIO_ANNOTATION)?.clone();
            let created: SystemTime = ns.creation_timestamp()?.0.into();
            let age = now.duration_since(created).unwrap_or_default();
            (age >= older_than).then(|| Leftover {
                namespace: ns.name_any(),
                scenario,
                age,
            })
        })
        .collect();
    out.sort_by_key(|l| std::cmp::Reverse(l.age));
    Ok(out)
}

/// Deletes `namespace` (in the background: the namespace controller removes what is in it).
/// A namespace already gone counts as deleted.
///
/// # Errors
/// The API server refused the delete.
pub async fn delete(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(namespace, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
