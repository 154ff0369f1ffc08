//! Microbenchmarks of the wire protocol: the server's request parser on a pipelined batch, the client's frame
//! decoder on a batch of replies, and the server's reply encoder. Run with `cargo bench -p shoal-bench --bench
//! protocol`; `cargo test` never runs them.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shoal_protocol::{Frame, FrameDecoder, FrameLimits, Proto, ReplyWriter, RequestLimits, RequestParser};
use std::hint::black_box;

/// Commands per pipelined batch, as a client with `-P 16` sends them.
const BATCH: usize = 16;
const VALUE: &[u8] = b"0123456789abcdef0123456789abcdef";

/// 8 SETs and 8 GETs, alternating, as one buffer.
fn request_batch() -> Vec<u8> {
    let mut buf = BytesMut::new();
    for i in 0..BATCH / 2 {
        let key = format!("key:{i:06}");
        Frame::command([b"SET".as_slice(), key.as_bytes(), VALUE]).encode(&mut buf);
        Frame::command([b"GET".as_slice(), key.as_bytes()]).encode(&mut buf);
    }
    buf.to_vec()
}

/// The replies to [`request_batch`]: `+OK` and a bulk string, alternating.
fn reply_batch() -> Vec<u8> {
    let mut buf = BytesMut::new();
    for _ in 0..BATCH / 2 {
        buf.extend_from_slice(b"+OK\r\n");
        Frame::Bulk(bytes::Bytes::from_static(VALUE)).encode(&mut buf);
    }
    buf.to_vec()
}

fn request_parser(c: &mut Criterion) {
    let buf = request_batch();
    let limits = RequestLimits::default();
    let mut group = c.benchmark_group("request_parser");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("pipelined_16_set_get", |b| {
        let mut parser = RequestParser::new();
        b.iter(|| {
            let mut at = 0;
            let mut args = 0;
            while let Ok(Some(n)) = parser.parse(&buf[at..], &limits) {
                args += parser.request(&buf[at..]).len();
                at += n;
            }
            black_box(args)
        })
    });
    group.finish();
}

fn frame_decoder(c: &mut Criterion) {
    let replies = reply_batch();
    let limits = FrameLimits::default();
    let mut group = c.benchmark_group("frame_decoder");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("replies_16_ok_bulk", |b| {
        b.iter_batched(
            || BytesMut::from(&replies[..]),
            |mut buf| {
                let mut decoder = FrameDecoder::new();
                let mut frames = 0;
                while let Ok(Some(frame)) = decoder.decode(&mut buf, &limits) {
                    black_box(&frame);
                    frames += 1;
                }
                frames
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn reply_writer(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply_writer");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("bulk_16", |b| {
        let mut w = ReplyWriter::new(Proto::Resp2);
        b.iter(|| {
            w.clear();
            for _ in 0..BATCH {
                w.bulk(black_box(VALUE));
            }
            black_box(w.len())
        })
    });
    group.bench_function("integer_16", |b| {
        let mut w = ReplyWriter::new(Proto::Resp2);
        b.iter(|| {
            w.clear();
            for i in 0..BATCH as i64 {
                w.integer(black_box(i * 1_000_003 - 7));
            }
            black_box(w.len())
        })
    });
    group.finish();
}

criterion_group!(benches, request_parser, frame_decoder, reply_writer);
criterion_main!(benches);
