//! netperf's engine, shared by the example binary and its tests: settings,
//! the load-generating connections (TCP echo, streams, connect-request-close,
//! UDP), the threaded runner, the server, and the report.

pub mod client;
pub mod config;
pub mod control;
pub mod cpu;
pub mod crr;
pub mod report;
pub mod run;
pub mod server;
pub mod stream;
pub mod tally;
pub mod udp;
pub mod watch;
pub mod wire;
