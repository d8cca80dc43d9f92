//! The client's keep-alive pool: idle connections per host, and requests
//! handed to a pooled connection that has not picked them up yet.

use std::collections::HashMap;

use super::client::Job;
use crate::context::ConnectionHandle;

/// Which connections can carry a request: same scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) https: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

#[derive(Default)]
pub(crate) struct Pool {
    idle: HashMap<PoolKey, Vec<ConnectionHandle>>,
    /// Jobs given to an idle connection, until it takes them.
    assigned: HashMap<ConnectionHandle, Job>,
}

impl Pool {
    /// An idle connection to `key`, most recently used first.
    pub(crate) fn take(&mut self, key: &PoolKey) -> Option<ConnectionHandle> {
        let list = self.idle.get_mut(key)?;
        let h = list.pop();
        if list.is_empty() {
            self.idle.remove(key);
        }
        h
    }

    /// Keeps `conn` for later requests to `key`, unless `max` are kept
    /// already (then the caller closes it). Whether it was kept.
    pub(crate) fn put(&mut self, key: PoolKey, conn: ConnectionHandle, max: usize) -> bool {
        let list = self.idle.entry(key).or_default();
        if list.len() >= max {
            return false;
        }
        list.push(conn);
        true
    }

    /// Forgets `conn` (it closed).
    pub(crate) fn remove(&mut self, key: &PoolKey, conn: ConnectionHandle) {
        if let Some(list) = self.idle.get_mut(key) {
            list.retain(|&h| h != conn);
            if list.is_empty() {
                self.idle.remove(key);
            }
        }
    }

    pub(crate) fn assign(&mut self, conn: ConnectionHandle, job: Job) {
        self.assigned.insert(conn, job);
    }

    pub(crate) fn take_assigned(&mut self, conn: ConnectionHandle) -> Option<Job> {
        self.assigned.remove(&conn)
    }

    /// Idle connections kept, over all hosts.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }
}
