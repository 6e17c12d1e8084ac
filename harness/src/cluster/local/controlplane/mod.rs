//! The real control plane of `--controller real`: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kube-proxy, built from the project's pinned Go modules and run as
//! processes inside the cluster's network namespace.

pub mod build;
pub mod kubeconfig;
pub mod modules;
pub mod pki;
