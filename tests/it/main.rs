//! Integration tests: portcullis between real clients and a real upstream registry.
//! One test binary, so the crate and the harness are compiled once.

mod common;
mod skopeo;
mod store_cli;
