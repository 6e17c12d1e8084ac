//! The user's controller objects, parsed from their real YAML.
//!
//! A scenario's `target` is a folder of the manifests a user would apply to a cluster.
//! [`load_target`] reads it ([`manifests`]), decodes the objects the emulation interprets
//! ([`argo`], [`flagger`]) and validates them as their CRD and controller would,
//! plus what would only fail at run time. Any problem refuses the policy up front (exit 2),
//! every one of them reported with file, object and key path ([`SpecError`]).

pub mod argo;
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
/// Every problem of the target: unreadable files, YAML errors, objects that do not decode,
/// and every validation rule broken. On kind/kube, where the real controller runs the objects,
/// callers may keep [`SpecErrors::without_unsupported`].
pub fn load_target(dir: &Path) -> Result<Manifests, SpecErrors> {
    let (manifests, mut errors) = Manifests::load_partial(dir);
    errors.extend(argo::validate(&manifests));
    errors.extend(flagger::validate(&manifests));
    SpecErrors(errors).into_result(manifests)
}
