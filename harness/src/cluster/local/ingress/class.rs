//! Which Ingresses the router takes, as ingress-nginx's store decides (controller-v1.13.0,
//! `internal/ingress/controller/store/store.go`, `GetIngressClass`): `spec.ingressClassName` when
//! set (and then the annotation is not looked at), else the `kubernetes.io/ingress.class`
//! annotation, else only when told to watch Ingresses without a class.

use k8s_openapi::api::networking::v1::Ingress;

/// The legacy class annotation.
pub const ANNOTATION: &str = "kubernetes.io/ingress.class";

/// What the router's ingress-nginx is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassOptions {
    /// The IngressClass it owns, and the annotation value it accepts (`--ingress-class`,
    /// default `nginx`). ingress-nginx accepts a `spec.ingressClassName` when its store holds an
    /// IngressClass of that name whose `spec.controller` is `k8s.io/ingress-nginx`; the router
    /// watches no IngressClasses and assumes this one exists.
    pub ingress_class: String,
    /// `--watch-ingress-without-class` (default false).
    pub watch_without_class: bool,
}

impl Default for ClassOptions {
    fn default() -> Self {
        ClassOptions {
            ingress_class: "nginx".into(),
            watch_without_class: false,
        }
    }
}

/// `Ok` when the Ingress is the router's, else why not.
pub fn owned(ing: &Ingress, opts: &ClassOptions) -> Result<(), String> {
    if let Some(name) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_ref())
    {
        return if *name == opts.ingress_class {
            Ok(())
        } else {
            Err(format!(
                "its ingressClassName {name:?} is not {:?}",
                opts.ingress_class
            ))
        };
    }
    if let Some(class) = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
    {
        return if *class == opts.ingress_class {
            Ok(())
        } else {
            Err(format!(
                "its {ANNOTATION} annotation {class:?} is not {:?}",
                opts.ingress_class
            ))
        };
    }
    if opts.watch_without_class {
        Ok(())
    } else {
        Err("it has no ingressClassName nor class annotation, and Ingresses without a class are not watched".into())
    }
}
