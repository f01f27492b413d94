#![no_main]
//! The stdio line framing (`mcp_transport::lines::next_line`): how
//! `hangar wrap` reads a stdio server's stdout and the stdio programs read
//! their stdin.
//!
//! Property: for any input, buffer size and line limit, the lines read are
//! exactly those of a plain model: the input split at LF; a CR right before
//! the LF is part of the line break, not of the line; a line longer than the
//! limit is reported as too long (and skipped), never cut or merged; the
//! last piece counts when it is not empty; reading ends at EOF and goes on
//! after a bad line. Every read is bounded: the buffer never holds more
//! than the limit.

use arbitrary::Arbitrary;
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use mcp_transport::lines::{next_line, Line};

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    max: u8,
    data: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Got {
    Line(Vec<u8>),
    TooLong,
}

fn model(data: &[u8], max: usize) -> Vec<Got> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let last = pieces.pop().unwrap_or_default();
    for piece in pieces {
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        out.push(if line.len() > max {
            Got::TooLong
        } else {
            Got::Line(line.to_vec())
        });
    }
    if !last.is_empty() {
        out.push(if last.len() > max {
            Got::TooLong
        } else {
            Got::Line(last.to_vec())
        });
    }
    out
}

fuzz_target!(|input: Input| {
    let capacity = input.capacity as usize + 1;
    let max = input.max as usize;
    let mut reader = tokio::io::BufReader::with_capacity(capacity, input.data.as_slice());
    let mut buf = Vec::new();
    let mut got = Vec::new();
    block_on(async {
        // Each call consumes at least one byte or ends: the count is bounded.
        for _ in 0..=input.data.len() {
            let line = next_line(&mut reader, &mut buf, max).await.unwrap();
            assert!(
                buf.len() <= max,
                "{} bytes kept with a {max}-byte limit",
                buf.len()
            );
            match line {
                Line::Eof => return,
                Line::TooLong => got.push(Got::TooLong),
                Line::Complete => got.push(Got::Line(buf.clone())),
            }
        }
        panic!("reading did not end");
    });
    assert_eq!(got, model(&input.data, max), "capacity {capacity}");
});
