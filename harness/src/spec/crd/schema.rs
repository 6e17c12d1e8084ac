//! A CRD version's `openAPIV3Schema`, compiled once: patterns as regexes, formats the API server
//! does not check dropped, `x-kubernetes-int-or-string` as the type pair it stands for.
//!
//! The input is k8s-openapi's `JSONSchemaProps`, the same Go type the API server decodes a CRD
//! into; [`Schema::compile`] keeps what validation, pruning and defaulting read, as
//! `ConvertJSONSchemaPropsWithPostProcess` and `NewStructural` do in
//! `apiextensions-apiserver/pkg/apiserver/{validation,schema}`.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use regex::Regex;
use serde_json::Value;

use super::format::Format;

/// One node of a schema. Junctors (`allOf`, `anyOf`, `oneOf`, `not`) hold nodes of the same
/// kind, validated as JSON Schema does; only the structural part (`properties`, `items`,
/// `additionalProperties`, the extensions) prunes and defaults.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// `type`; empty when unset (anything passes the type check). `x-kubernetes-int-or-string`
    /// makes it `["integer", "string"]`, as the API server's conversion does.
    pub types: Vec<String>,
    pub nullable: bool,
    /// Only the formats kube-apiserver v1.34 validates; the others (`int32`, `int64`, `url`,
    /// `string`, ...) are stripped there, and here.
    pub format: Option<Format>,
    pub pattern: Option<Pattern>,
    pub enumeration: Option<Vec<Value>>,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub min_length: Option<i64>,
    pub max_length: Option<i64>,
    pub min_items: Option<i64>,
    pub max_items: Option<i64>,
    pub unique_items: bool,
    pub min_properties: Option<i64>,
    pub max_properties: Option<i64>,
    pub required: Vec<String>,
    pub properties: BTreeMap<String, Schema>,
    pub additional_properties: Option<Additional>,
    pub items: Option<Box<Schema>>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    pub default: Option<Value>,
    pub preserve_unknown_fields: bool,
    pub embedded_resource: bool,
    /// `x-kubernetes-list-type`: `atomic`, `set` or `map`.
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    /// `x-kubernetes-validations` rules (CEL), counted, not evaluated.
    pub cel_rules: Vec<String>,
}

/// `additionalProperties`.
#[derive(Debug, Clone)]
pub enum Additional {
    Schema(Box<Schema>),
    Bool(bool),
}

/// A `pattern` and its compiled form; `None` when the Go (RE2) pattern is not valid for the
/// `regex` crate, in which case it is not checked (the two dialects agree on the patterns the
/// pinned CRDs use).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: Option<Regex>,
}

impl Schema {
    /// Compiles one CRD schema node and everything below it.
    pub fn compile(p: &JSONSchemaProps) -> Schema {
        let mut types = Vec::new();
        if let Some(t) = p.type_.as_deref().filter(|t| !t.is_empty()) {
            types.push(t.to_string());
        }
        if p.x_kubernetes_int_or_string == Some(true) {
            types = vec!["integer".into(), "string".into()];
        }
        let list = |v: &Option<Vec<JSONSchemaProps>>| -> Vec<Schema> {
            v.iter().flatten().map(Schema::compile).collect()
        };
        Schema {
            types,
            nullable: p.nullable == Some(true),
            format: p.format.as_deref().and_then(Format::supported),
            pattern: p.pattern.as_ref().map(|s| Pattern {
                source: s.clone(),
                regex: Regex::new(s).ok(),
            }),
            enumeration: p
                .enum_
                .as_ref()
                .map(|e| e.iter().map(|j| j.0.clone()).collect()),
            minimum: p.minimum,
            exclusive_minimum: p.exclusive_minimum == Some(true),
            maximum: p.maximum,
            exclusive_maximum: p.exclusive_maximum == Some(true),
            multiple_of: p.multiple_of,
            min_length: p.min_length,
            max_length: p.max_length,
            min_items: p.min_items,
            max_items: p.max_items,
            unique_items: p.unique_items == Some(true),
            min_properties: p.min_properties,
            max_properties: p.max_properties,
            required: p.required.clone().unwrap_or_default(),
            properties: p
                .properties
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Schema::compile(v)))
                .collect(),
            additional_properties: p.additional_properties.as_ref().map(|a| match a {
                JSONSchemaPropsOrBool::Schema(s) => {
                    Additional::Schema(Box::new(Schema::compile(s)))
                }
                JSONSchemaPropsOrBool::Bool(b) => Additional::Bool(*b),
            }),
            items: p.items.as_ref().and_then(|i| match i {
                JSONSchemaPropsOrArray::Schema(s) => Some(Box::new(Schema::compile(s))),
                // Not allowed in a structural schema; the API server refuses such a CRD.
                JSONSchemaPropsOrArray::Schemas(_) => None,
            }),
            all_of: list(&p.all_of),
            any_of: list(&p.any_of),
            one_of: list(&p.one_of),
            not: p.not.as_ref().map(|n| Box::new(Schema::compile(n))),
            default: p.default.as_ref().map(|d| d.0.clone()),
            preserve_unknown_fields: p.x_kubernetes_preserve_unknown_fields == Some(true),
            embedded_resource: p.x_kubernetes_embedded_resource == Some(true),
            list_type: p.x_kubernetes_list_type.clone(),
            list_map_keys: p.x_kubernetes_list_map_keys.clone().unwrap_or_default(),
            cel_rules: p
                .x_kubernetes_validations
                .iter()
                .flatten()
                .map(|r| r.rule.clone())
                .collect(),
        }
    }

    /// The schema of the values of unnamed keys, if any (`additionalProperties: {...}`).
    pub fn additional_schema(&self) -> Option<&Schema> {
        match &self.additional_properties {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        }
    }

    /// Whether unnamed keys are kept: `additionalProperties` set (a schema, or `true`).
    pub fn keeps_additional(&self) -> bool {
        matches!(
            self.additional_properties,
            Some(Additional::Schema(_) | Additional::Bool(true))
        )
    }

    /// Whether this node only requires keys (`- required: [a, b]`), as Flagger's `oneOf`
    /// alternatives do; such alternatives are listed in hints.
    pub fn only_requires(&self) -> bool {
        !self.required.is_empty()
            && self.types.is_empty()
            && self.properties.is_empty()
            && self.all_of.is_empty()
            && self.any_of.is_empty()
            && self.one_of.is_empty()
            && self.not.is_none()
    }
}
