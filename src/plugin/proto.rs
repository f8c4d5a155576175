//! The CNPG-I messages and services, generated at build time from
//! `proto/cnpgi/` (see build.rs).

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod identity {
    tonic::include_proto!("cnpgi.identity.v1");
}

pub mod lifecycle {
    tonic::include_proto!("cnpgi.operator_lifecycle.v1");
}

pub mod operator {
    tonic::include_proto!("cnpgi.operator.v1");
}
