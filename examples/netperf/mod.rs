//! netperf's engine, shared by the example binary and its tests: settings,
//! the load-generating connection, the threaded runner, and the report.

pub mod client;
pub mod config;
pub mod report;
pub mod run;
