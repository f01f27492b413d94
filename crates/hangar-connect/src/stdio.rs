//! Our own stdin and stdout as async streams.
//!
//! `tokio::io::stdin()`/`stdout()` hand every read and write to a blocking
//! thread, two thread hops per message. When the MCP client gave us a pipe
//! or a socket (what clients do: Node's `spawn` makes socketpairs, Python's
//! `subprocess` pipes), we register the descriptors with the runtime in
//! non-blocking mode instead; anything else (a terminal, a file) falls back
//! to tokio's blocking versions.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub type Input = Pin<Box<dyn AsyncRead + Send>>;
pub type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// Stdin, registered with the runtime when it is a pipe or a socket.
pub fn stdin() -> Input {
    #[cfg(unix)]
    if let Some(input) = unix::input() {
        return input;
    }
    Box::pin(tokio::io::stdin())
}

/// Stdout, registered with the runtime when it is a pipe or a socket.
pub fn stdout() -> Output {
    #[cfg(unix)]
    if let Some(output) = unix::output() {
        return output;
    }
    Box::pin(tokio::io::stdout())
}

#[cfg(unix)]
mod unix {
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::fs::FileTypeExt;

    use tokio::net::unix::pipe;

    use super::*;

    enum Kind {
        Pipe,
        Socket,
    }

    /// A duplicate of `fd` (so dropping ours never closes the real 0 or 1)
    /// and what it is.
    fn inspect(fd: std::os::fd::BorrowedFd<'_>) -> Option<(OwnedFd, Kind)> {
        let owned = fd.try_clone_to_owned().ok()?;
        let file_type = File::from(owned.try_clone().ok()?)
            .metadata()
            .ok()?
            .file_type();
        if file_type.is_fifo() {
            Some((owned, Kind::Pipe))
        } else if file_type.is_socket() {
            Some((owned, Kind::Socket))
        } else {
            None
        }
    }

    fn socket(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true).ok()?;
        tokio::net::UnixStream::from_std(std).ok()
    }

    pub(super) fn input() -> Option<Input> {
        match inspect(io::stdin().as_fd())? {
            (fd, Kind::Pipe) => Some(Box::pin(pipe::Receiver::from_owned_fd(fd).ok()?)),
            (fd, Kind::Socket) => Some(Box::pin(ReadHalf(socket(fd)?))),
        }
    }

    pub(super) fn output() -> Option<Output> {
        match inspect(io::stdout().as_fd())? {
            (fd, Kind::Pipe) => Some(Box::pin(pipe::Sender::from_owned_fd(fd).ok()?)),
            (fd, Kind::Socket) => Some(Box::pin(WriteHalf(socket(fd)?))),
        }
    }
}

/// Only the reading side of a socket (a socketpair end can do both; the
/// stdin one must only be read).
struct ReadHalf<T>(T);

impl<T: AsyncRead + Unpin> AsyncRead for ReadHalf<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// Only the writing side of a socket. Dropping it does not shut the socket
/// down (the client sees end-of-file when we exit).
struct WriteHalf<T>(T);

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteHalf<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
}
