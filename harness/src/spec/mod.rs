//! The user's controller objects, parsed from their real YAML.
//!
//! A scenario's `target` is a folder of the manifests a user would apply to a cluster.
//! [`load_target`] reads it ([`manifests`]), checks the Argo Rollouts and Flagger objects against
//! the real CRDs' `openAPIV3Schema` ([`crd`]), decodes the objects the emulation interprets
//! ([`argo`], [`flagger`]) and validates them as their controller would, plus what would only
//! fail at run time. Any problem refuses the policy up front (exit 2),
//! every one of them reported with file, object and key path ([`SpecError`]).

pub mod argo;
pub mod crd;
pub mod duration;
pub mod error;
pub mod flagger;
pub mod manifests;
pub mod shape;

use std::path::Path;

pub use self::error::{KeyPath, SpecError, SpecErrorKind, SpecErrors};
pub use self::manifests::{
    ControllerKind, DEFAULT_NAMESPACE, Manifest, Manifests, Origin, RawManifest,
};

/// Reads, decodes and validates the manifests of a target folder (or one file).
///
/// # Errors
/// Every problem of the target: unreadable files, YAML errors, what the CRDs refuse, objects
/// that do not decode, and every validation rule broken. On kind/kube, where the real
/// controller runs the objects, callers may keep [`SpecErrors::without_unsupported`]. Without
/// Go the CRDs cannot be read and their part is skipped ([`crd::partial_notice`]).
pub fn load_target(dir: &Path) -> Result<Manifests, SpecErrors> {
    let (manifests, mut errors) = Manifests::load_partial(dir);
    errors.extend(argo::validate(&manifests));
    errors.extend(flagger::validate(&manifests));
    let crd = crd::validate_manifests(&manifests);
    SpecErrors(crd::merge(crd, errors)).into_result(manifests)
}
