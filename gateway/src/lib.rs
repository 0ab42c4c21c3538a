//! The CLINS FHIR gateway: configuration, storage, search and the REST API.

pub mod api;
pub mod auth;
pub mod config;
pub mod mapping;
pub mod metrics;
pub mod operations;
pub mod search;
pub mod server;
pub mod store;
pub mod submission;
