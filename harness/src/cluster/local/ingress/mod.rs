//! From Kubernetes objects to the router's routes, as ingress-nginx (controller-v1.13.0) turns
//! Ingresses, Services and EndpointSlices into its nginx configuration and Lua backends.
//!
//! [`translate`] is pure: it takes the objects as a watch would list them and returns the
//! [`Route`]s with warnings for everything it ignores or that ingress-nginx would handle in a way
//! worth knowing (a canary that merges nowhere, a second canary for one backend, an annotation
//! the router does not emulate). [`follow`] keeps a [`Router`](super::router::Router) in line with
//! a cluster's objects.
//!
//! The rules, each settled against ingress-nginx's code:
//! - which Ingresses: [`class`];
//! - canary annotations: [`annotations`];
//! - endpoints of a backend: [`endpoints`];
//! - upstreams, servers, locations and the merge of canary Ingresses: the `translate` module.

pub mod annotations;
pub mod class;
pub mod endpoints;
mod follow;
mod translate;

#[cfg(test)]
mod tests;

use std::fmt;

pub use self::class::ClassOptions;
pub use self::follow::follow;
pub use self::translate::translate;
use super::router::Route;

/// The routes for a set of objects, and what was ignored on the way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Translation {
    pub routes: Vec<Route>,
    pub warnings: Vec<Warning>,
}

/// Something the translation ignored or that deserves a look, about one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Warning {
    /// `Ingress <namespace>/<name>` and the like.
    pub object: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}
