//! `gauntlet down --backend kube`: removes the scenario namespaces that killed runs left on an
//! existing cluster (see `cluster::kube::leftovers`).

use std::time::Duration;

use crate::cluster::kube::{connect, leftovers};
use crate::exit::Exit;

/// Deletes gauntlet's scenario namespaces older than `older_than` on the cluster of `context`.
pub async fn down_kube(context: Option<&str>, older_than: Duration) -> Exit {
    let client = match connect(context).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Infra;
        }
    };
    let found = match leftovers::stale(&client, older_than).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: listing gauntlet's namespaces: {e}");
            return Exit::Infra;
        }
    };
    if found.is_empty() {
        eprintln!(
            "no scenario namespace older than {} left by gauntlet",
            humantime::format_duration(older_than)
        );
        return Exit::Passed;
    }
    let mut exit = Exit::Passed;
    for l in &found {
        let age = humantime::format_duration(Duration::from_secs(l.age.as_secs()));
        match leftovers::delete(&client, &l.namespace).await {
            Ok(()) => eprintln!(
                "deleting namespace {} (scenario {}, {age} old)",
                l.namespace, l.scenario
            ),
            Err(e) => {
                eprintln!("error: deleting namespace {}: {e}", l.namespace);
                exit = Exit::Infra;
            }
        }
    }
    exit
}
