//! Conformance tests: the sandbox driven by the real `kube` client and `kubectl`,
//! proving each API-server rule it claims to enforce, failure answers included.

mod accounting;
mod admission;
mod common;
mod crd_schema;
mod crud;
mod errors;
mod faults;
mod kubectl;
mod policy_crd;
mod pvc_rules;
mod rbac;
mod real_server;
mod status;
mod watch;
