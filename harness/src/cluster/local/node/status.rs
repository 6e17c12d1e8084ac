//! A pod's `status` as the kubelet reports it, computed from what the node's supervisors see.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::container::Waiting;
use crate::cluster::Termination;
use crate::cluster::local::net::NODE_IP;
use crate::cluster::local::pods::PodRuntime;

/// One container as the status shows it.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub state: ContainerState,
}

#[derive(Debug, Clone)]
pub enum ContainerState {
    /// The node will not run it (see [`Waiting`]).
    Refused(Waiting),
    /// Its supervisor's state.
    Supervised(PodRuntime),
}

/// Remembers when each condition last changed, so `lastTransitionTime` moves only on a change.
#[derive(Debug, Default)]
pub struct Transitions {
    seen: BTreeMap<&'static str, (bool, SystemTime)>,
}

impl Transitions {
    fn at(&mut self, kind: &'static str, status: bool) -> SystemTime {
        let now = SystemTime::now();
        let e = self.seen.entry(kind).or_insert((status, now));
        if e.0 != status {
            *e = (status, now);
        }
        e.1
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The `status` of a pod with IP `ip` (once its sandbox exists), started at `started`.
pub fn pod_status(
    ip: Option<Ipv4Addr>,
    started: SystemTime,
    containers: &[ContainerView],
    transitions: &mut Transitions,
) -> Value {
    let statuses: Vec<Value> = containers.iter().map(container_status).collect();
    let ready_of = |c: &ContainerView| match &c.state {
        ContainerState::Supervised(rt) => rt.ready_since.is_some() && rt.running,
        ContainerState::Refused(_) => false,
    };
    let all_ready = !containers.is_empty() && containers.iter().all(ready_of);
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !ready_of(c))
        .map(|c| c.name.as_str())
        .collect();
    let started_any = containers.iter().any(|c| {
        matches!(&c.state, ContainerState::Supervised(rt) if rt.running || rt.restarts > 0 || rt.last_run.is_some())
    });
    let mut cond = |kind: &'static str, status: bool, why: Option<(&str, String)>| {
        let mut c = json!({
            "type": kind,
            "status": if status { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": time(transitions.at(kind, status)),
        });
        if let (false, Some((reason, message))) = (status, why) {
            c["reason"] = reason.into();
            c["message"] = message.into();
        }
        c
    };
    let not_ready = Some((
        "ContainersNotReady",
        format!("containers with unready status: [{}]", unready.join(" ")),
    ));
    let conditions = vec![
        cond("PodReadyToStartContainers", ip.is_some(), None),
        cond("Initialized", true, None),
        cond("Ready", all_ready, not_ready.clone()),
        cond("ContainersReady", all_ready, not_ready),
    ];
    let mut status = json!({
        "phase": if started_any { "Running" } else { "Pending" },
        "hostIP": NODE_IP.to_string(),
        "hostIPs": [{"ip": NODE_IP.to_string()}],
        "startTime": time(started),
        "conditions": conditions,
        "containerStatuses": statuses,
    });
    if let Some(ip) = ip {
        status["podIP"] = ip.to_string().into();
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    status
}

fn container_status(c: &ContainerView) -> Value {
    let mut s = json!({
        "name": c.name,
        "image": c.image,
        "imageID": "",
        "restartCount": 0,
        "ready": false,
        "started": false,
        "state": {},
        "lastState": {},
    });
    match &c.state {
        ContainerState::Refused(w) => {
            s["state"] = json!({"waiting": {"reason": w.reason, "message": w.message}});
        }
        ContainerState::Supervised(rt) => {
            s["restartCount"] = rt.restarts.into();
            s["ready"] = (rt.running && rt.ready_since.is_some()).into();
            s["started"] = rt.running.into();
            if let Some(pid) = rt.pid {
                s["containerID"] = format!("gauntlet://{pid}").into();
            }
            s["state"] = if rt.running {
                json!({"running": {"startedAt": rt.started_at.map(time)}})
            } else if rt.backing_off {
                json!({"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": format!("back-off restarting failed container {}", c.name),
                }})
            } else {
                json!({"waiting": {"reason": "ContainerCreating"}})
            };
            if let (Some(term), Some((from, to))) = (&rt.last_termination, rt.last_run) {
                let (code, reason) = match term {
                    Termination::OOMKilled => (137, "OOMKilled"),
                    Termination::Error { exit_code } => (*exit_code, "Error"),
                    Termination::Completed => (0, "Completed"),
                };
                s["lastState"] = json!({"terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": time(from),
                    "finishedAt": time(to),
                }});
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(rt: PodRuntime) -> ContainerView {
        ContainerView {
            name: "app".into(),
            image: "gauntlet/sample-app:latest".into(),
            state: ContainerState::Supervised(rt),
        }
    }

    #[test]
    fn a_restarted_oom_killed_container_reports_as_the_kubelet_does() {
        let now = SystemTime::now();
        let rt = PodRuntime {
            running: true,
            pid: Some(42),
            restarts: 2,
            ready_since: Some(tokio::time::Instant::now()),
            started_at: Some(now),
            last_termination: Some(Termination::OOMKilled),
            last_run: Some((now, now)),
            ..PodRuntime::default()
        };
        let mut tr = Transitions::default();
        let s = pod_status(
            Some(Ipv4Addr::new(10, 244, 0, 3)),
            now,
            &[view(rt)],
            &mut tr,
        );
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.244.0.3");
        let c = &s["containerStatuses"][0];
        assert_eq!(c["restartCount"], 2);
        assert_eq!(c["ready"], true);
        assert_eq!(c["lastState"]["terminated"]["reason"], "OOMKilled");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 137);
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
    }

    #[test]
    fn a_refused_container_keeps_the_pod_pending_and_unready() {
        let v = ContainerView {
            name: "app".into(),
            image: "nginx".into(),
            state: ContainerState::Refused(Waiting {
                reason: "ImagePullBackOff",
                message: "image \"nginx\" cannot run".into(),
            }),
        };
        let mut tr = Transitions::default();
        let s = pod_status(None, SystemTime::now(), &[v], &mut tr);
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ImagePullBackOff"
        );
        assert!(s.get("podIP").is_none());
    }

    #[test]
    fn transition_times_move_only_on_a_change() {
        let mut tr = Transitions::default();
        let a = tr.at("Ready", false);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(tr.at("Ready", false), a);
        assert!(tr.at("Ready", true) > a);
    }
}
