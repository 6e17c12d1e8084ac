//! The webhooks of a tick, by type (`pkg/controller/scheduler_hooks.go`) and the metric checks
//! of `runAnalysis` (`scheduler_metrics.go`): each calls the Canary's hooks of one type in order
//! and records Flagger's events for what they answered.

use super::FlaggerController;
use super::checks::judge;
use super::policy::{Check, HookType, Webhook};
use super::provider::{NO_VALUES, Provider, QUERY_TIMEOUT, Reading, read_answer};
use super::status::Phase;
use crate::cluster::Platform;
use crate::timeline::Source;

impl<P: Platform, M: Provider + Clone> FlaggerController<P, M> {
    pub(super) fn hooks_of(&self, kind: HookType) -> Vec<Webhook> {
        self.policy.hooks(kind).cloned().collect()
    }

    pub(super) async fn confirm_rollout(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::ConfirmRollout) {
            if self.call_hook(&hook, self.status.phase).await.is_err() {
                if self.status.phase != Phase::Waiting {
                    self.set_phase(Phase::Waiting);
                    self.event(
                        true,
                        format!("Halt {who} advancement waiting for approval {}", hook.name),
                    )
                    .await;
                }
                return false;
            }
            self.event(false, format!("Confirm-rollout check {} passed", hook.name))
                .await;
        }
        true
    }

    pub(super) async fn pre_rollout(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::PreRollout) {
            match self.call_hook(&hook, Phase::Progressing).await {
                Err(e) => {
                    self.event(
                        true,
                        format!(
                            "Halt {who} advancement pre-rollout check {} failed {e}",
                            hook.name
                        ),
                    )
                    .await;
                    return false;
                }
                Ok(()) => {
                    self.event(false, format!("Pre-rollout check {} passed", hook.name))
                        .await
                }
            }
        }
        true
    }

    pub(super) async fn post_rollout(&mut self, phase: Phase) {
        for hook in self.hooks_of(HookType::PostRollout) {
            match self.call_hook(&hook, phase).await {
                Err(e) => {
                    self.event(true, format!("Post-rollout hook {} failed {e}", hook.name))
                        .await;
                    return;
                }
                Ok(()) => {
                    self.event(false, format!("Post-rollout check {} passed", hook.name))
                        .await
                }
            }
        }
    }

    pub(super) async fn confirm_traffic_increase(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::ConfirmTrafficIncrease) {
            if self.call_hook(&hook, Phase::Progressing).await.is_err() {
                self.event(
                    true,
                    format!(
                        "Halt {who} advancement waiting for traffic increase approval {}",
                        hook.name
                    ),
                )
                .await;
                return false;
            }
            self.event(
                false,
                format!("Confirm-traffic-increase check {} passed", hook.name),
            )
            .await;
        }
        true
    }

    pub(super) async fn confirm_promotion(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::ConfirmPromotion) {
            if self.call_hook(&hook, Phase::Progressing).await.is_err() {
                if self.status.phase != Phase::WaitingPromotion {
                    self.set_phase(Phase::WaitingPromotion);
                    self.event(
                        true,
                        format!(
                            "Halt {who} advancement waiting for promotion approval {}",
                            hook.name
                        ),
                    )
                    .await;
                } else {
                    self.status.iterations = -1;
                    self.status_written();
                }
                return false;
            }
            self.event(
                false,
                format!("Confirm-promotion check {} passed", hook.name),
            )
            .await;
        }
        true
    }

    pub(super) async fn rollback_hooks(&mut self, phase: Phase) -> bool {
        for hook in self.hooks_of(HookType::Rollback) {
            if self.call_hook(&hook, phase).await.is_err() {
                self.event(
                    false,
                    format!("Rollback hook {} not signaling a rollback", hook.name),
                )
                .await;
            } else {
                self.event(true, format!("Rollback check {} passed", hook.name))
                    .await;
                return true;
            }
        }
        false
    }

    /// `runAnalysis`: rollout hooks, builtin metrics, template metrics; the first failure ends
    /// the tick.
    pub(super) async fn run_analysis(&mut self) -> bool {
        let who = self.who();
        for hook in self.hooks_of(HookType::Rollout) {
            if let Err(e) = self.call_hook(&hook, Phase::Progressing).await {
                self.event(
                    true,
                    format!(
                        "Halt {who} advancement external check {} failed {e}",
                        hook.name
                    ),
                )
                .await;
                return false;
            }
        }
        let checks: Vec<Check> = self
            .policy
            .builtin_checks
            .iter()
            .chain(self.policy.template_checks.iter())
            .cloned()
            .collect();
        for check in &checks {
            if !self.run_check(check).await {
                return false;
            }
        }
        true
    }

    async fn run_check(&mut self, check: &Check) -> bool {
        let reading = read_answer(self.metrics.run_query(&check.query, QUERY_TIMEOUT).await);
        let verdict = judge(
            check,
            &reading,
            &self.policy.name,
            &self.policy.namespace,
            &self.policy.target,
        );
        let (value, shown) = match &reading {
            Reading::Value(v) => (Some(*v), format!("{v}")),
            Reading::NoValues => (None, NO_VALUES.to_string()),
            Reading::Error(e) => (None, format!("error: {e}")),
        };
        self.timeline.emit(
            Source::Analysis,
            "measurement",
            format!(
                "{}: {shown} ({})",
                check.metric,
                if verdict.is_ok() { "pass" } else { "fail" }
            ),
            serde_json::json!({
                "metric": check.metric,
                "query": check.query,
                "value": value,
                "reading": shown,
                "passed": verdict.is_ok(),
                // In the words of Argo's measurements, so the report reads both alike.
                "phase": match (&reading, verdict.is_ok()) {
                    (_, true) => "Successful",
                    (Reading::Error(_), false) => "Error",
                    (_, false) => "Failed",
                },
                "min": check.bounds().0,
                "max": check.bounds().1,
                "condition": check.condition(),
            }),
        );
        match verdict {
            Ok(()) => true,
            Err(msg) => {
                self.event(true, msg).await;
                false
            }
        }
    }
}
