//! Integration tests: portcullis between real clients and a real upstream registry.
//! One test binary, so the crate and the harness are compiled once.

mod auth;
mod bounded;
mod cache;
mod cache_faults;
mod cli;
mod common;
mod containerd;
mod corpus;
mod docker;
mod documents;
mod egress;
mod enforce;
mod faults;
mod json_differential;
mod reputation;
mod scan;
mod skopeo;
mod store_cli;
mod tar_parity;
