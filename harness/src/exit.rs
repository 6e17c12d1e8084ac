//! The process exit codes: a documented contract (docs/scenarios.md) that CI scripts branch on.

/// What a gauntlet run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every scenario met its expectation.
    Passed = 0,
    /// At least one scenario ran and did not meet its expectation.
    Failed = 1,
    /// Bad input: usage, a scenario or manifest that does not parse or validate.
    BadInput = 2,
    /// Infrastructure: a part of the stack could not start or died; not the release's fault.
    Infra = 3,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}
