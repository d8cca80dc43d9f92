//! What a unit test's `tracing` subscriber wrote (for tests that check a
//! log line: the unhandled-error report, the HTTP access log).

use std::sync::{Arc, Mutex};

/// Runs `f` with a `tracing` subscriber that records events at `level` and
/// above, and returns the lines it wrote.
pub(crate) fn capture_logs(level: tracing::Level, f: impl FnOnce()) -> Vec<String> {
    #[derive(Clone)]
    struct W(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = W(Arc::new(Mutex::new(Vec::new())));
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text.lines().map(str::to_owned).collect()
}
