//! A TCP proxy that adds a round-trip time between a client and a server,
//! for benchmarks against an S3 server on loopback (benches/s3_latency.sh).
//!
//! The host's network stack is left alone: no `tc netem` on `lo`, so other
//! processes' loopback traffic keeps its speed. Only connections made to
//! the proxy's port are delayed.
//!
//! Each direction of each connection is delayed by RTT/2: a chunk read at
//! time t is written at t + RTT/2 by a second thread, while the first keeps
//! reading, so data keeps flowing and requests are never serialised. A new
//! connection's first bytes wait one more RTT, the TCP handshake a real
//! link costs. The bytes in flight per direction are capped at WINDOW
//! (default 4 MiB, about what Linux's receive-window autotuning reaches with
//! the default `tcp_rmem`), so one connection carries at most WINDOW/RTT,
//! as on a real link; TCP slow start is not modelled.
//!
//! Standard library only, so the bench script builds it with `rustc -O`:
//!   latency_proxy UPSTREAM_HOST:PORT RTT_MS [WINDOW_BYTES]
//! prints the loopback port it listens on, then serves until killed.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::exit,
    reason = "a bench tool prints its port, and its usage before it exits"
)]
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CHUNK: usize = 256 * 1024;

/// Bytes read but not yet written, with a wake-up for the reader.
struct InFlight {
    bytes: Mutex<usize>,
    drained: Condvar,
}

fn pipe(mut from: TcpStream, mut to: TcpStream, half_rtt: Duration, not_before: Instant, window: usize) {
    let in_flight = Arc::new(InFlight { bytes: Mutex::new(0), drained: Condvar::new() });
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_flight = in_flight.clone();
    let mut to_w = to.try_clone().expect("clone socket");
    let writer = thread::spawn(move || {
        for (due, data) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if data.is_empty() {
                let _ = to_w.shutdown(Shutdown::Write);
                return;
            }
            let ok = to_w.write_all(&data).is_ok();
            *writer_flight.bytes.lock().unwrap() -= data.len();
            writer_flight.drained.notify_one();
            if !ok {
                return;
            }
        }
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        {
            let mut b = in_flight.bytes.lock().unwrap();
            while *b >= window {
                b = in_flight.drained.wait(b).unwrap();
            }
        }
        // An error ends this direction like an orderly close.
        let n = from.read(&mut buf).unwrap_or_default();
        let due = Instant::now().max(not_before) + half_rtt;
        *in_flight.bytes.lock().unwrap() += n;
        if tx.send((due, buf[..n].to_vec())).is_err() || n == 0 {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = to.flush();
    let _ = from.shutdown(Shutdown::Read);
}

/// Accepts clients on `listener` and joins each to `upstream` through the
/// delaying pipes, for ever.
fn serve(listener: TcpListener, upstream: String, rtt: Duration, window: usize) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let upstream = upstream.clone();
        thread::spawn(move || {
            let Ok(server) = TcpStream::connect(&upstream) else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let opened = Instant::now();
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            // The handshake: a real client sends its first bytes one RTT
            // after it starts connecting.
            let up = thread::spawn(move || pipe(client, server, rtt / 2, opened + rtt, window));
            pipe(s2, c2, rtt / 2, opened, window);
            let _ = up.join();
        });
    }
}

/// `cargo test --all-targets` runs this without arguments: an echo server
/// behind the proxy at 20 ms must return every byte, in order, and no
/// sooner than one round trip.
fn self_test() {
    let echo = TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
    let upstream = echo.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for c in echo.incoming().flatten() {
            thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                let _ = std::io::copy(&mut &c, &mut w);
            });
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let port = listener.local_addr().unwrap().port();
    let rtt = Duration::from_millis(20);
    thread::spawn(move || serve(listener, upstream, rtt, 64 << 10));
    let sent: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let start = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
    let writer = {
        let (mut w, sent) = (c.try_clone().unwrap(), sent.clone());
        thread::spawn(move || w.write_all(&sent).expect("send through the proxy"))
    };
    let mut got = vec![0u8; sent.len()];
    c.read_exact(&mut got).expect("every byte comes back");
    writer.join().unwrap();
    assert!(got == sent, "the proxy changed or reordered bytes");
    assert!(start.elapsed() >= rtt, "no delay: {:?}", start.elapsed());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args.is_empty() {
        self_test();
        return;
    }
    if args.len() < 2 {
        eprintln!("usage: latency_proxy UPSTREAM_HOST:PORT RTT_MS [WINDOW_BYTES]");
        std::process::exit(2);
    }
    let upstream = args[0].clone();
    let rtt = Duration::from_secs_f64(args[1].parse::<f64>().expect("RTT_MS is a number") / 1000.0);
    let window: usize = args.get(2).map(|w| w.parse().expect("WINDOW_BYTES is a number")).unwrap_or(4 << 20);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    serve(listener, upstream, rtt, window);
}
