//! Stream sources for [`Context::stream_from`](crate::Context::stream_from)(crate::Context::stream_from).

use bytes::Bytes;

/// A stream source for [`Context::stream_from`](crate::Context::stream_from) that reads `reader` (a file, say)
/// in chunks of up to `chunk_size` bytes, until its end. Reads are blocking:
/// fine for local files, not for pipes or sockets that may stall.
///
/// ```no_run
/// use torsion::{read_chunks, Context, Protocol};
///
/// /// Sends a file to whoever connects, then closes.
/// struct FileSender;
/// impl Protocol for FileSender {
///     fn connection_made(&mut self, ctx: &mut Context<'_>) {
///         match std::fs::File::open("/var/lib/big.iso") {
///             Ok(file) => ctx.stream_from(read_chunks(file, 64 * 1024)),
///             Err(_) => ctx.lose_connection(),
///         }
///     }
///     fn data_received(&mut self, _ctx: &mut Context<'_>, _data: &[u8]) {}
///     fn streaming_finished(&mut self, ctx: &mut Context<'_>, _result: std::io::Result<()>) {
///         ctx.lose_connection();
///     }
/// }
/// ```
pub fn read_chunks<R: std::io::Read>(
    mut reader: R,
    chunk_size: usize,
) -> impl Iterator<Item = std::io::Result<Bytes>> {
    let chunk_size = chunk_size.max(1);
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = bytes::BytesMut::zeroed(chunk_size);
        loop {
            return match reader.read(&mut buf) {
                Ok(0) => {
                    done = true;
                    None
                }
                Ok(n) => {
                    buf.truncate(n);
                    Some(Ok(buf.freeze()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    done = true;
                    Some(Err(e))
                }
            };
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_chunks_yields_everything_in_order_then_ends() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let chunks: Vec<Bytes> = read_chunks(&data[..], 4096).map(|c| c.unwrap()).collect();
        assert!(chunks.iter().all(|c| c.len() <= 4096 && !c.is_empty()));
        assert_eq!(chunks.concat(), data);
    }

    #[test]
    fn read_chunks_reports_a_read_error_once() {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("bad disk"))
            }
        }
        let mut it = read_chunks(Broken, 10);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
