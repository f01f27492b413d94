//! Resumable SSE streams of a legacy session.
//!
//! Every SSE stream the session opens (one per POST answered with SSE, plus
//! the standalone GET stream) gets a number; its events get ids
//! `"{stream}_{seq}"`, unique within the session and naming their stream, so
//! a `Last-Event-ID` tells us which stream to resume and from where. Events
//! are kept in a bounded replay buffer; the HTTP body that currently carries
//! the stream is the *live* attachment and can come and go.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::sse;

/// The stream number of a session's standalone (GET) stream.
pub const STANDALONE: u64 = 0;

/// How many bytes a live attachment may lag before we drop it (the client
/// then resumes from the replay buffer).
const LIVE_CAPACITY: usize = 1024;
/// Most bytes of events a stream keeps for replay; older events go first.
/// A large answer still reaches the live attachment whole, but one over
/// this is not kept for a client that resumes later: memory stays bounded
/// whatever size the answers are.
pub const REPLAY_BYTES_PER_STREAM: usize = 1024 * 1024;

struct StreamBuf {
    next_seq: u64,
    events: VecDeque<(u64, Bytes)>,
    /// The bytes in `events`.
    kept_bytes: usize,
    live: Option<mpsc::Sender<Bytes>>,
    /// Events up to here reached a live attachment (for the standalone stream,
    /// whose undelivered events go to the next GET even without Last-Event-ID).
    delivered_upto: u64,
    finished: bool,
}

impl StreamBuf {
    fn new() -> StreamBuf {
        StreamBuf {
            next_seq: 1,
            events: VecDeque::new(),
            kept_bytes: 0,
            live: None,
            delivered_upto: 0,
            finished: false,
        }
    }
}

/// All SSE streams of one session.
pub struct Streams {
    next_stream: u64,
    streams: HashMap<u64, StreamBuf>,
    finished_order: VecDeque<u64>,
    replay_limit: usize,
    max_finished: usize,
}

pub fn event_id(stream: u64, seq: u64) -> String {
    format!("{stream}_{seq}")
}

/// Parses a `Last-Event-ID` we issued.
pub fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (stream, seq) = id.trim().split_once('_')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

impl Streams {
    pub fn new(replay_limit: usize, max_finished: usize) -> Streams {
        let mut streams = HashMap::new();
        streams.insert(STANDALONE, StreamBuf::new());
        Streams {
            next_stream: 1,
            streams,
            finished_order: VecDeque::new(),
            replay_limit,
            max_finished,
        }
    }

    /// Opens a new stream with a live attachment; returns its number and the
    /// body's receiver, primed with the priming event.
    pub fn open(&mut self, retry_ms: u64) -> (u64, mpsc::Receiver<Bytes>) {
        let id = self.next_stream;
        self.next_stream += 1;
        let (tx, rx) = mpsc::channel(LIVE_CAPACITY);
        let _ = tx.try_send(sse::priming(&event_id(id, 0), retry_ms));
        let mut buf = StreamBuf::new();
        buf.live = Some(tx);
        self.streams.insert(id, buf);
        (id, rx)
    }

    /// Appends a message to a stream: buffered for replay and sent live.
    pub fn push(&mut self, stream: u64, data: &str) {
        let limit = self.replay_limit;
        let Some(buf) = self.streams.get_mut(&stream) else {
            return;
        };
        let seq = buf.next_seq;
        buf.next_seq += 1;
        let bytes = sse::event(Some(&event_id(stream, seq)), data);
        if let Some(live) = &buf.live {
            if live.try_send(bytes.clone()).is_ok() {
                buf.delivered_upto = seq;
            } else {
                // Closed or hopelessly behind: detach; the client resumes by id.
                buf.live = None;
            }
        }
        buf.kept_bytes += bytes.len();
        buf.events.push_back((seq, bytes));
        while buf.events.len() > limit || buf.kept_bytes > REPLAY_BYTES_PER_STREAM {
            match buf.events.pop_front() {
                Some((_, old)) => buf.kept_bytes -= old.len(),
                None => break,
            }
        }
    }

    /// Marks a request stream complete and ends its live body.
    pub fn finish(&mut self, stream: u64) {
        if let Some(buf) = self.streams.get_mut(&stream) {
            buf.finished = true;
            buf.live = None;
            self.finished_order.push_back(stream);
        }
        while self.finished_order.len() > self.max_finished {
            if let Some(old) = self.finished_order.pop_front() {
                self.streams.remove(&old);
            }
        }
    }

    /// Attaches a new body to a stream, replaying what came after `after_seq`
    /// (or, for the standalone stream without `Last-Event-ID`, what no body has
    /// seen yet). `None` when the stream is unknown or gone.
    pub fn resume(
        &mut self,
        stream: u64,
        after_seq: Option<u64>,
        retry_ms: u64,
    ) -> Option<mpsc::Receiver<Bytes>> {
        let buf = self.streams.get_mut(&stream)?;
        let from = after_seq.unwrap_or(buf.delivered_upto);
        let (tx, rx) = mpsc::channel(LIVE_CAPACITY);
        if after_seq.is_none() {
            let _ = tx.try_send(sse::priming(&event_id(stream, 0), retry_ms));
        }
        for (seq, bytes) in buf.events.iter().filter(|(seq, _)| *seq > from) {
            if tx.try_send(bytes.clone()).is_ok() {
                buf.delivered_upto = buf.delivered_upto.max(*seq);
            }
        }
        if !buf.finished {
            buf.live = Some(tx); // replaces (and so ends) any older attachment
        }
        Some(rx)
    }

    /// True while some body is attached to any stream.
    pub fn any_live(&self) -> bool {
        self.streams
            .values()
            .any(|b| b.live.as_ref().is_some_and(|l| !l.is_closed()))
    }

    /// Ends one stream's live attachment, telling the client when to retry.
    pub fn detach(&mut self, stream: u64, retry_ms: u64) {
        if let Some(live) = self.streams.get_mut(&stream).and_then(|b| b.live.take()) {
            let _ = live.try_send(sse::retry(retry_ms));
        }
    }

    /// Ends every live attachment (shutdown), telling clients when to retry.
    pub fn detach_all(&mut self, retry_ms: u64) {
        for buf in self.streams.values_mut() {
            if let Some(live) = buf.live.take() {
                let _ = live.try_send(sse::retry(retry_ms));
            }
        }
    }
}

/// The body of an SSE response: the live attachment's bytes, with a keep-alive
/// comment whenever the stream has been quiet for a while.
pub struct SseBody {
    rx: mpsc::Receiver<Bytes>,
    keep_alive: tokio::time::Interval,
    /// Dropped with the body; used to cancel work when the client goes away.
    _on_drop: Option<Box<dyn Send + Sync>>,
}

impl SseBody {
    pub fn new(rx: mpsc::Receiver<Bytes>, keep_alive: Duration) -> SseBody {
        let start = tokio::time::Instant::now() + keep_alive;
        let mut keep_alive = tokio::time::interval_at(start, keep_alive);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        SseBody {
            rx,
            keep_alive,
            _on_drop: None,
        }
    }

    /// Keeps `guard` alive exactly as long as the body.
    pub fn with_guard(mut self, guard: impl Send + Sync + 'static) -> SseBody {
        self._on_drop = Some(Box::new(guard));
        self
    }
}

impl Stream for SseBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => {
                self.keep_alive.reset();
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.keep_alive.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Ok(sse::keep_alive()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut mpsc::Receiver<Bytes>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.push(String::from_utf8(b.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn resumes_after_last_event_id_on_the_same_stream_only() {
        let mut s = Streams::new(16, 4);
        let (a, mut rx_a) = s.open(100);
        let (b, _rx_b) = s.open(100);
        s.push(a, "a1");
        s.push(b, "b1");
        s.push(a, "a2");
        drop(rx_a.try_recv()); // priming
        drop(rx_a);
        s.push(a, "a3"); // no live body any more: buffered only
        let mut again = s.resume(a, Some(1), 100).unwrap();
        let got = drain(&mut again);
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("id: 1_2") && got[0].contains("a2"));
        assert!(got[1].contains("id: 1_3") && got[1].contains("a3"));
        assert!(!got.iter().any(|e| e.contains("b1")));
    }

    #[test]
    fn replay_buffer_is_bounded() {
        let mut s = Streams::new(3, 4);
        let (a, _rx) = s.open(100);
        for i in 0..10 {
            s.push(a, &format!("m{i}"));
        }
        let mut again = s.resume(a, Some(0), 100).unwrap();
        assert_eq!(drain(&mut again).len(), 3);
    }

    /// Issue 10: a stream kept every large answer for replay (up to 256
    /// events per stream, 32 finished streams per session), so a session of
    /// 64 MiB answers held gigabytes. The live body still gets every byte.
    #[test]
    fn replay_buffer_is_bounded_in_bytes_too() {
        let mut s = Streams::new(256, 4);
        let (a, mut live) = s.open(100);
        let big = "x".repeat(REPLAY_BYTES_PER_STREAM / 2 + 1);
        for _ in 0..3 {
            s.push(a, &big);
        }
        let got = drain(&mut live);
        assert_eq!(got.iter().filter(|e| e.contains(&big)).count(), 3);
        let buf = &s.streams[&a];
        assert!(
            buf.kept_bytes <= REPLAY_BYTES_PER_STREAM,
            "{}",
            buf.kept_bytes
        );
        assert_eq!(buf.events.len(), 1);
        let mut again = s.resume(a, Some(0), 100).unwrap();
        assert_eq!(drain(&mut again).len(), 1);
    }

    #[test]
    fn finished_streams_are_evicted_oldest_first() {
        let mut s = Streams::new(3, 2);
        let ids: Vec<u64> = (0..3).map(|_| s.open(100).0).collect();
        for id in &ids {
            s.finish(*id);
        }
        assert!(s.resume(ids[0], Some(0), 100).is_none());
        assert!(s.resume(ids[2], Some(0), 100).is_some());
    }

    #[test]
    fn standalone_stream_delivers_what_no_body_saw() {
        let mut s = Streams::new(16, 4);
        s.push(STANDALONE, "early");
        let mut rx = s.resume(STANDALONE, None, 100).unwrap();
        let got = drain(&mut rx);
        assert!(got[0].starts_with("id: 0_0"));
        assert!(got[1].contains("early"));
        s.push(STANDALONE, "later");
        assert!(drain(&mut rx)[0].contains("later"));
        drop(rx);
        let mut rx = s.resume(STANDALONE, None, 100).unwrap();
        assert_eq!(
            drain(&mut rx).len(),
            1,
            "only the priming event: everything was delivered"
        );
        assert!(parse_event_id("3_14") == Some((3, 14)) && parse_event_id("x").is_none());
    }

    #[test]
    fn detach_ends_one_stream_only() {
        let mut s = Streams::new(16, 4);
        let mut get = s.resume(STANDALONE, None, 100).unwrap();
        let (a, mut post) = s.open(100);
        s.detach(STANDALONE, 250);
        let got = drain(&mut get);
        assert!(got.last().unwrap().starts_with("retry: 250"));
        assert!(
            matches!(get.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)),
            "the standalone body has ended"
        );
        s.push(a, "response");
        let got = drain(&mut post);
        assert!(got.iter().any(|e| e.contains("response")), "{got:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_streams_get_keep_alive_comments() {
        use futures_util::StreamExt;
        let (tx, rx) = mpsc::channel(4);
        let mut body = SseBody::new(rx, std::time::Duration::from_secs(15));
        tx.send(Bytes::from_static(b"data: 1\n\n")).await.unwrap();
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"data: 1\n\n");
        // Nothing to send for 15 s: a comment line keeps the connection alive.
        let next = body.next().await.unwrap().unwrap();
        assert_eq!(&next[..], b": keep-alive\n\n");
        drop(tx);
        assert!(body.next().await.is_none(), "the body ends with its stream");
    }
}
