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
    /// Exited, and its pod's `restartPolicy` will not start it again (see [`Finished`]).
    Finished(Finished),
}

/// A container that ran and will not run again: what `state.terminated` shows.
#[derive(Debug, Clone)]
pub struct Finished {
    pub termination: Termination,
    /// Start and end of its last run.
    pub run: Option<(SystemTime, SystemTime)>,
    pub restarts: u32,
}

impl Finished {
    /// `(exitCode, reason)` as the kubelet reports a termination.
    fn code_and_reason(&self) -> (i32, &'static str) {
        termination_code(&self.termination)
    }
}

fn termination_code(t: &Termination) -> (i32, &'static str) {
    match t {
        Termination::OOMKilled => (137, "OOMKilled"),
        Termination::Error { exit_code } => (*exit_code, "Error"),
        Termination::Completed => (0, "Completed"),
    }
}

/// The phase of a pod whose containers are `containers`, as the kubelet computes it: once every
/// container has finished for good (its `restartPolicy` will not restart it), `Succeeded` when
/// all exited 0 and `Failed` otherwise; before that `Running` once any container ran, else
/// `Pending`. A container the policy restarts never counts as finished, so a pod under
/// `Always` (or `OnFailure` after a failure) stays `Running` while it backs off.
pub fn phase(containers: &[ContainerView]) -> &'static str {
    let finished: Vec<&Finished> = containers
        .iter()
        .filter_map(|c| match &c.state {
            ContainerState::Finished(f) => Some(f),
            _ => None,
        })
        .collect();
    if !containers.is_empty() && finished.len() == containers.len() {
        return if finished
            .iter()
            .all(|f| f.termination == Termination::Completed)
        {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let started_any = containers.iter().any(|c| match &c.state {
        ContainerState::Supervised(rt) => rt.running || rt.restarts > 0 || rt.last_run.is_some(),
        ContainerState::Finished(_) => true,
        ContainerState::Refused(_) => false,
    });
    if started_any { "Running" } else { "Pending" }
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
        ContainerState::Refused(_) | ContainerState::Finished(_) => false,
    };
    let all_ready = !containers.is_empty() && containers.iter().all(ready_of);
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !ready_of(c))
        .map(|c| c.name.as_str())
        .collect();
    let phase = phase(containers);
    let done = matches!(phase, "Succeeded" | "Failed");
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
    // The kubelet's reason for a pod that has run to its end.
    let not_ready = Some(if done {
        ("PodCompleted", String::new())
    } else {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    });
    let conditions = vec![
        cond("PodReadyToStartContainers", ip.is_some(), None),
        cond("Initialized", true, None),
        cond("Ready", all_ready, not_ready.clone()),
        cond("ContainersReady", all_ready, not_ready),
    ];
    let mut status = json!({
        "phase": phase,
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
        ContainerState::Finished(f) => {
            let (code, reason) = f.code_and_reason();
            s["restartCount"] = f.restarts.into();
            let mut t = json!({"exitCode": code, "reason": reason});
            if let Some((from, to)) = f.run {
                t["startedAt"] = time(from).into();
                t["finishedAt"] = time(to).into();
            }
            s["state"] = json!({"terminated": t});
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
                let (code, reason) = termination_code(term);
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

    fn finished(term: Termination) -> ContainerView {
        let now = SystemTime::now();
        ContainerView {
            name: "app".into(),
            image: "gauntlet/sample-app:latest".into(),
            state: ContainerState::Finished(Finished {
                termination: term,
                run: Some((now, now)),
                restarts: 0,
            }),
        }
    }

    #[test]
    fn a_pod_whose_containers_all_finished_succeeds_or_fails_by_their_exit_codes() {
        let mut tr = Transitions::default();
        let ip = Some(Ipv4Addr::new(10, 244, 0, 3));
        let s = pod_status(
            ip,
            SystemTime::now(),
            &[finished(Termination::Completed)],
            &mut tr,
        );
        assert_eq!(s["phase"], "Succeeded");
        let c = &s["containerStatuses"][0];
        assert_eq!(c["ready"], false);
        assert_eq!(c["state"]["terminated"]["reason"], "Completed");
        assert_eq!(c["state"]["terminated"]["exitCode"], 0);
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "PodCompleted");

        let mut two = finished(Termination::Error { exit_code: 2 });
        two.name = "sidecar".into();
        let s = pod_status(
            ip,
            SystemTime::now(),
            &[finished(Termination::Completed), two],
            &mut Transitions::default(),
        );
        assert_eq!(s["phase"], "Failed", "one container exited non-zero");
        let c = &s["containerStatuses"][1];
        assert_eq!(c["state"]["terminated"]["reason"], "Error");
        assert_eq!(c["state"]["terminated"]["exitCode"], 2);
    }

    #[test]
    fn a_pod_with_a_container_still_running_or_backing_off_is_not_done() {
        let running = view(PodRuntime {
            running: true,
            ..PodRuntime::default()
        });
        let mut other = finished(Termination::Completed);
        other.name = "init-like".into();
        assert_eq!(phase(&[running, other]), "Running");
        // OnFailure after a failure (or Always): the supervisor backs off to restart it.
        let backing_off = view(PodRuntime {
            backing_off: true,
            last_termination: Some(Termination::Error { exit_code: 1 }),
            last_run: Some((SystemTime::now(), SystemTime::now())),
            ..PodRuntime::default()
        });
        assert_eq!(phase(&[backing_off]), "Running");
        assert_eq!(phase(&[]), "Pending");
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
