//! End-to-end tests: the real `gateway` binary over HTTP, on SQLite and PostgreSQL.

mod harness;

mod crash;
mod maintainer;
mod migration;
mod rest;
mod search;
mod startup;
mod submission;
mod terminology;
mod transaction;
mod validate;
