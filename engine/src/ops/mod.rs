//! What operators see and run: the HTTP endpoint ([`http`]: `/metrics`, `/health` from
//! [`health`]), the stream monitor ([`monitor`]), the backfill display ([`progress`]), and the
//! tools `doctor`, `rollback` ([`readers`]) and `verify`. The top library layer: it may use
//! every layer below, none uses it.

pub mod cli;
pub mod doctor;
pub mod health;
pub mod http;
pub mod monitor;
pub mod progress;
pub mod readers;
pub mod verify;
