//! Handlers (Twisted's `Resource`): [`Handler`], what one returns
//! ([`Reply`]), and a small [`Router`] for matching paths.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use super::message::Method;
use super::request::Request;
use super::response::Response;
use crate::context::Core;
use crate::defer::{Deferred, Failure};

/// What a handler returns: a response now, or a Deferred of one (an error
/// from it is answered `500`, and so is a Deferred abandoned by its producer:
/// every [`Trigger`](crate::defer::Trigger) dropped unfired, see
/// [`Deferred::or_abandoned`]).
// Boxing the response would cost every synchronous answer an allocation;
// a Reply lives only from the handler's return to its dispatch.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// The response.
    Now(Response),
    /// A response that is not ready yet.
    Later(Deferred<Response, Failure>),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Now(r) => f.debug_tuple("Now").field(r).finish(),
            Reply::Later(d) => f.debug_tuple("Later").field(d).finish(),
        }
    }
}

impl From<Response> for Reply {
    fn from(r: Response) -> Reply {
        Reply::Now(r)
    }
}

impl From<Deferred<Response, Failure>> for Reply {
    fn from(d: Deferred<Response, Failure>) -> Reply {
        Reply::Later(d)
    }
}

/// Answers requests (Twisted's `IResource.render`). A closure
/// `FnMut(&mut Core, Request) -> R` with `R` a [`Response`] or a
/// `Deferred<Response>` is a handler. A panic in a handler is answered `500`.
///
/// ```
/// use torsion::http::{Handler, Request, Response};
/// use torsion::Core;
///
/// fn hello() -> impl Handler {
///     |_core: &mut Core, req: Request| Response::text(200, format!("you asked for {}\n", req.path()))
/// }
/// # let _ = hello();
/// ```
pub trait Handler: 'static {
    /// Answers `req`.
    fn handle(&mut self, core: &mut Core, req: Request) -> Reply;

    /// Whether this request's body should stream in
    /// ([`Request::take_incoming`]) instead of being read whole (up to
    /// [`Limits::max_body_size`](super::Limits::max_body_size)) before
    /// [`handle`](Self::handle) runs. Default: read whole.
    fn streams_body(&self, req: &Request) -> bool {
        let _ = req;
        false
    }
}

impl<F, R> Handler for F
where
    F: FnMut(&mut Core, Request) -> R + 'static,
    R: Into<Reply>,
{
    fn handle(&mut self, core: &mut Core, req: Request) -> Reply {
        self(core, req).into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(p) => path == p,
            Pattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

struct Route {
    method: Option<Method>,
    pattern: Pattern,
    handler: Box<dyn Handler>,
}

/// Sends each request to the first route whose method and path match
/// (Twisted's `putChild` tree, flattened): exact paths, or prefixes ending
/// the route with `*`. A path that matches with another method is answered
/// `405`, one that matches nothing `404` (or the fallback). `HEAD` matches
/// `GET` routes. Serving a metrics page is one line:
///
/// ```
/// use torsion::http::{Request, Response, Router};
/// use torsion::Core;
///
/// let router = Router::new()
///     .get("/metrics", |_: &mut Core, _: Request| {
///         Response::text(200, "requests_total 42\n")
///     })
///     .get("/files/*", |_: &mut Core, req: Request| Response::text(200, req.path().to_owned()));
/// # let _ = router;
/// ```
pub struct Router {
    /// Which router this is, for the [`RouteHint`]s it leaves.
    id: u32,
    routes: Vec<Route>,
    fallback: Option<Box<dyn Handler>>,
}

impl Default for Router {
    fn default() -> Router {
        // From 1: a hint of 0 is none.
        static NEXT_ID: AtomicU32 = AtomicU32::new(1);
        Router {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            routes: Vec::new(),
            fallback: None,
        }
    }
}

/// What [`Router::find`] gave for a request, kept in it between the
/// server's `streams_body` and `handle` calls: valid for the router that
/// left it while the request's method is the same (a new target clears
/// it). Packed in one word (a `Request` is moved several times per
/// request): the router's id (high 32 bits, never 0), the method's
/// [`hint_tag`] (8 bits) and the answer (24 bits: 0 for no path matched, 1
/// for another method's path, else the route's index + 2). 0 is none.
pub(crate) type RouteHint = u64;

/// The method as 8 bits for a [`RouteHint`] (`None` for `Other`, which is
/// not hinted).
fn hint_tag(method: &Method) -> Option<u64> {
    Some(match method {
        Method::Get => 0,
        Method::Head => 1,
        Method::Post => 2,
        Method::Put => 3,
        Method::Delete => 4,
        Method::Options => 5,
        Method::Patch => 6,
        Method::Connect => 7,
        Method::Trace => 8,
        Method::Other(_) => return None,
    })
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                let m = r.method.as_ref().map_or("*", Method::as_str);
                match &r.pattern {
                    Pattern::Exact(p) => format!("{m} {p}"),
                    Pattern::Prefix(p) => format!("{m} {p}*"),
                }
            })
            .collect();
        f.debug_struct("Router")
            .field("routes", &routes)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Router {
    /// No routes: everything is `404`.
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a route for `method` (`None`: any) and `path` (a trailing `*`
    /// makes it a prefix).
    pub fn route(mut self, method: Option<Method>, path: &str, handler: impl Handler) -> Router {
        let pattern = match path.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact(path.to_owned()),
        };
        self.routes.push(Route {
            method,
            pattern,
            handler: Box::new(handler),
        });
        self
    }

    /// A `GET` (and `HEAD`) route.
    pub fn get(self, path: &str, handler: impl Handler) -> Router {
        self.route(Some(Method::Get), path, handler)
    }

    /// A `POST` route.
    pub fn post(self, path: &str, handler: impl Handler) -> Router {
        self.route(Some(Method::Post), path, handler)
    }

    /// What answers requests no route matches (default: `404`).
    pub fn fallback(mut self, handler: impl Handler) -> Router {
        self.fallback = Some(Box::new(handler));
        self
    }

    fn method_matches(route: &Route, method: &Method) -> bool {
        match &route.method {
            None => true,
            Some(m) => m == method || (*m == Method::Get && *method == Method::Head),
        }
    }

    /// The route for `req` (found once: the first search leaves its answer
    /// in the request for the next).
    fn route_of(&self, req: &Request) -> Result<usize, bool> {
        let Some(tag) = hint_tag(&req.method) else {
            return self.find(req);
        };
        let key = u64::from(self.id) << 32 | tag << 24;
        let hint = req.route.get();
        if hint != 0 && hint & !0xff_ffff == key {
            return match hint & 0xff_ffff {
                0 => Err(false),
                1 => Err(true),
                n => Ok(n as usize - 2),
            };
        }
        let found = self.find(req);
        let answer = match found {
            Err(false) => 0,
            Err(true) => 1,
            Ok(i) => i as u64 + 2,
        };
        if answer <= 0xff_ffff {
            req.route.set(key | answer);
        }
        found
    }

    fn find(&self, req: &Request) -> Result<usize, bool> {
        let path = req.path();
        let mut path_matched = false;
        for (i, r) in self.routes.iter().enumerate() {
            if r.pattern.matches(path) {
                if Self::method_matches(r, &req.method) {
                    return Ok(i);
                }
                path_matched = true;
            }
        }
        Err(path_matched)
    }
}

impl Handler for Router {
    fn handle(&mut self, core: &mut Core, req: Request) -> Reply {
        match self.route_of(&req) {
            Ok(i) => self.routes[i].handler.handle(core, req),
            Err(true) => Reply::Now(Response::error(405)),
            Err(false) => match &mut self.fallback {
                Some(f) => f.handle(core, req),
                None => Reply::Now(Response::not_found()),
            },
        }
    }

    fn streams_body(&self, req: &Request) -> bool {
        match self.route_of(req) {
            Ok(i) => self.routes[i].handler.streams_body(req),
            Err(_) => self.fallback.as_ref().is_some_and(|f| f.streams_body(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Instant;

    use super::*;
    use crate::http::Body;

    fn answer(reply: Reply) -> String {
        match reply {
            Reply::Now(r) => match r.body {
                Body::Full(b) => String::from_utf8_lossy(&b).into_owned(),
                _ => String::new(),
            },
            Reply::Later(_) => "later".to_owned(),
        }
    }

    /// A route that says its name, and streams when `streams` says.
    struct Named(&'static str, bool, Rc<Cell<u32>>);

    impl Handler for Named {
        fn handle(&mut self, _: &mut Core, _: Request) -> Reply {
            Reply::Now(Response::ok(self.0))
        }
        fn streams_body(&self, _: &Request) -> bool {
            self.2.set(self.2.get() + 1);
            self.1
        }
    }

    #[test]
    fn the_route_found_for_streams_body_is_the_one_handle_uses_unless_the_request_changed() {
        let asked = Rc::new(Cell::new(0));
        let mut router = Router::new()
            .get("/a", Named("a", true, asked.clone()))
            .post("/a", Named("post a", false, asked.clone()))
            .get("/b", Named("b", false, asked.clone()));
        let mut core = Core::new(Instant::now(), None);
        let req = Request::new(Method::Get, "/a");
        assert!(router.streams_body(&req));
        assert_eq!(answer(router.handle(&mut core, req)), "a");
        // Changed between the two calls: routed again.
        let mut req = Request::new(Method::Get, "/a");
        assert!(router.streams_body(&req));
        req.set_target("/b");
        assert_eq!(answer(router.handle(&mut core, req)), "b");
        let mut req = Request::new(Method::Get, "/a");
        assert!(router.streams_body(&req));
        req.method = Method::Post;
        assert!(!router.streams_body(&req));
        assert_eq!(answer(router.handle(&mut core, req)), "post a");
        let mut req = Request::new(Method::Get, "/a");
        assert!(router.streams_body(&req));
        req.method = Method::Delete;
        assert!(answer(router.handle(&mut core, req)).starts_with("405"));
        // Another router's answer is not this one's.
        let mut other = Router::new().get("/a", Named("other", false, asked.clone()));
        let req = Request::new(Method::Get, "/a");
        assert!(router.streams_body(&req));
        assert!(!other.streams_body(&req));
        assert_eq!(answer(other.handle(&mut core, req)), "other");
        let req = Request::new(Method::Other("PURGE".into()), "/nowhere");
        assert!(!router.streams_body(&req));
        assert!(answer(router.handle(&mut core, req)).starts_with("Not Found"));
        assert_eq!(asked.get(), 7);
    }
}
