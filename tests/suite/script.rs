//! A protocol built from closures, with a shared record of what it saw, so
//! each scenario states only what differs.

use std::cell::RefCell;
use std::rc::Rc;

use torsion::{
    Address, ClientFactory, ConnectionHandle, Connector, Context, Core, DisconnectReason, Factory,
    Protocol, Reconnect,
};

/// What one side saw.
#[derive(Default, Debug)]
pub struct Record {
    /// Callbacks in order ("made", "data", "read_lost", "lost:Done"...; "data"
    /// once per run of consecutive data callbacks).
    pub events: Vec<String>,
    pub received: Vec<u8>,
    pub lost: Option<DisconnectReason>,
    pub peer: Option<Address>,
    pub host: Option<Address>,
    pub handle: Option<ConnectionHandle>,
    pub failed: Option<DisconnectReason>,
}

pub type Rec = Rc<RefCell<Record>>;

type Hook = Rc<dyn Fn(&mut Context<'_>, &Rec)>;
type DataHook = Rc<dyn Fn(&mut Context<'_>, &[u8], &Rec)>;

/// The closures a [`Script`] runs (each defaults to nothing).
#[derive(Clone, Default)]
pub struct Hooks {
    pub made: Option<Hook>,
    pub data: Option<DataHook>,
    pub read_lost: Option<Hook>,
    pub write_lost: Option<Hook>,
    pub pause: Option<Hook>,
    pub resume: Option<Hook>,
    pub streamed: Option<Hook>,
}

impl Hooks {
    pub fn on_made(mut self, f: impl Fn(&mut Context<'_>, &Rec) + 'static) -> Self {
        self.made = Some(Rc::new(f));
        self
    }
    pub fn on_data(mut self, f: impl Fn(&mut Context<'_>, &[u8], &Rec) + 'static) -> Self {
        self.data = Some(Rc::new(f));
        self
    }
    pub fn on_read_lost(mut self, f: impl Fn(&mut Context<'_>, &Rec) + 'static) -> Self {
        self.read_lost = Some(Rc::new(f));
        self
    }
    pub fn on_write_lost(mut self, f: impl Fn(&mut Context<'_>, &Rec) + 'static) -> Self {
        self.write_lost = Some(Rc::new(f));
        self
    }
    pub fn on_pause(mut self, f: impl Fn(&mut Context<'_>, &Rec) + 'static) -> Self {
        self.pause = Some(Rc::new(f));
        self
    }
    pub fn on_resume(mut self, f: impl Fn(&mut Context<'_>, &Rec) + 'static) -> Self {
        self.resume = Some(Rc::new(f));
        self
    }
    pub fn on_streamed(mut self, f: impl Fn(&mut Context<'_>, &Rec) + 'static) -> Self {
        self.streamed = Some(Rc::new(f));
        self
    }
}

pub struct Script {
    rec: Rec,
    hooks: Hooks,
}

impl Script {
    fn event(&self, e: &str) {
        self.rec.borrow_mut().events.push(e.to_owned());
    }
}

impl Protocol for Script {
    fn connection_made(&mut self, ctx: &mut Context<'_>) {
        {
            let mut r = self.rec.borrow_mut();
            assert!(
                r.events.iter().all(|e| e == "started"),
                "made after {:?}",
                r.events
            );
            r.events.push("made".into());
            r.peer = Some(ctx.peer().clone());
            r.host = ctx.host().ok();
            r.handle = Some(ctx.handle());
        }
        if let Some(h) = self.hooks.made.clone() {
            h(ctx, &self.rec);
        }
    }
    fn data_received(&mut self, ctx: &mut Context<'_>, data: &[u8]) {
        {
            let mut r = self.rec.borrow_mut();
            assert!(r.lost.is_none(), "data after connection_lost");
            if r.events.last().map(String::as_str) != Some("data") {
                r.events.push("data".into());
            }
            r.received.extend_from_slice(data);
        }
        if let Some(h) = self.hooks.data.clone() {
            h(ctx, data, &self.rec);
        }
    }
    fn connection_lost(&mut self, ctx: &mut Context<'_>, reason: &DisconnectReason) {
        let mut r = self.rec.borrow_mut();
        assert!(r.lost.is_none(), "connection_lost twice");
        assert!(
            ctx.try_write(b"x").is_err(),
            "writes refused in connection_lost"
        );
        r.events.push(format!("lost:{reason:?}"));
        r.lost = Some(reason.clone());
    }
    fn read_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.event("read_lost");
        if let Some(h) = self.hooks.read_lost.clone() {
            h(ctx, &self.rec);
        }
    }
    fn write_connection_lost(&mut self, ctx: &mut Context<'_>) {
        self.event("write_lost");
        if let Some(h) = self.hooks.write_lost.clone() {
            h(ctx, &self.rec);
        }
    }
    fn pause_writing(&mut self, ctx: &mut Context<'_>) {
        self.event("pause_writing");
        if let Some(h) = self.hooks.pause.clone() {
            h(ctx, &self.rec);
        }
    }
    fn resume_writing(&mut self, ctx: &mut Context<'_>) {
        self.event("resume_writing");
        if let Some(h) = self.hooks.resume.clone() {
            h(ctx, &self.rec);
        }
    }
    fn streaming_finished(&mut self, ctx: &mut Context<'_>, result: std::io::Result<()>) {
        self.event(if result.is_ok() {
            "streamed"
        } else {
            "stream_failed"
        });
        if let Some(h) = self.hooks.streamed.clone() {
            h(ctx, &self.rec);
        }
    }
}

/// Builds one [`Script`] per connection; all share one [`Record`] (scenarios
/// make one connection per listener).
pub struct ScriptFactory {
    pub rec: Rec,
    pub hooks: Hooks,
}

impl ScriptFactory {
    pub fn new(hooks: Hooks) -> (ScriptFactory, Rec) {
        let rec = Rec::default();
        (
            ScriptFactory {
                rec: rec.clone(),
                hooks,
            },
            rec,
        )
    }
    /// A protocol recording into this factory's record (for transports
    /// without a factory, such as the pump).
    pub fn script(&mut self) -> Script {
        Script {
            rec: self.rec.clone(),
            hooks: self.hooks.clone(),
        }
    }
}

impl Factory for ScriptFactory {
    type Protocol = Script;
    fn build_protocol(&mut self, peer: &Address) -> Option<Script> {
        self.rec.borrow_mut().peer = Some(peer.clone());
        Some(self.script())
    }
}

impl ClientFactory for ScriptFactory {
    type Protocol = Script;
    fn started_connecting(&mut self, _core: &mut Core, _c: Connector) {
        self.rec.borrow_mut().events.push("started".into());
    }
    fn build_protocol(&mut self, _peer: &Address) -> Option<Script> {
        Some(self.script())
    }
    fn client_connection_failed(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        reason: &DisconnectReason,
    ) -> Reconnect {
        let mut r = self.rec.borrow_mut();
        r.events.push(format!("failed:{reason:?}"));
        r.failed = Some(reason.clone());
        Reconnect::Never
    }
    fn client_connection_lost(
        &mut self,
        _core: &mut Core,
        _c: Connector,
        _reason: &DisconnectReason,
    ) -> Reconnect {
        let mut r = self.rec.borrow_mut();
        assert!(
            r.lost.is_some(),
            "client_connection_lost before connection_lost"
        );
        r.events.push("client_lost".into());
        Reconnect::Never
    }
}

/// A deterministic byte pattern (a position's byte depends on the position).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
