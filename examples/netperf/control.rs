//! The client's side of the control connection: asks a `netperf --server` for
//! its CPU use and byte counts. Blocking, on the main thread, outside the
//! measurement's reactors.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::wire::{self, ServerStats};

/// What answered the control hello.
#[derive(Debug)]
pub enum Remote {
    /// A netperf server, with its control connection open.
    Netperf(BufReader<TcpStream>),
    /// Something that echoed the hello: a plain echo server.
    Echo,
    /// Nothing usable (why).
    Unknown(String),
}

impl Remote {
    /// Opens a control connection to `addr` and says hello.
    pub fn open(addr: SocketAddr, timeout: Duration) -> Remote {
        match hello(addr, timeout) {
            Ok(r) => r,
            Err(e) => Remote::Unknown(e.to_string()),
        }
    }

    /// Whether a netperf server answered.
    pub fn is_netperf(&self) -> bool {
        matches!(self, Remote::Netperf(_))
    }

    /// How the remote is described in reports.
    pub fn describe(&self) -> String {
        match self {
            Remote::Netperf(_) => "netperf server".into(),
            Remote::Echo => "echo server (no remote figures)".into(),
            Remote::Unknown(why) => format!("unknown ({why})"),
        }
    }

    /// Asks the server for its figures since the hello.
    ///
    /// # Errors
    /// A message when there is no netperf server, or it does not answer.
    pub fn stats(&mut self) -> Result<ServerStats, String> {
        let Remote::Netperf(conn) = self else {
            return Err("no netperf server".into());
        };
        conn.get_mut()
            .write_all(wire::STATS_REQUEST)
            .map_err(|e| format!("control connection: {e}"))?;
        let line = read_line(conn).map_err(|e| format!("control connection: {e}"))?;
        ServerStats::parse(&line)
    }
}

fn read_line(conn: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *conn, wire::MAX_LINE as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn hello(addr: SocketAddr, timeout: Duration) -> std::io::Result<Remote> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    s.write_all(wire::CONTROL_HELLO)?;
    let mut conn = BufReader::new(s);
    let line = read_line(&mut conn)?;
    Ok(if line.as_bytes() == wire::CONTROL_OK {
        Remote::Netperf(conn)
    } else if line.as_bytes() == wire::CONTROL_HELLO {
        Remote::Echo
    } else {
        Remote::Unknown(format!("unexpected answer {:?}", line.trim_end()))
    })
}
