//! A TCP proxy the test controls, in front of a real server (PostgreSQL here), to make the
//! failures a network makes: the server refusing connections, and the server (or a middlebox)
//! going silent without closing anything.
//!
//! Modes, switched at any time:
//! - [`Proxy::restore`] (the start): connections are forwarded both ways.
//! - [`Proxy::refuse`]: existing connections are closed, new ones are accepted and closed at
//!   once (what a client sees of a stopped server: the connection ends).
//! - [`Proxy::black_hole`]: nothing is forwarded any more on existing connections and
//!   nothing is closed (half-open: the client's writes are taken by the kernel, no answer ever
//!   comes); new connections are accepted and then ignored, never answered, never closed.
//!
//! A connection that was black-holed stays black-holed after [`Proxy::restore`], as behind a
//! middlebox that lost its state: only new connections work again, so a client recovers only
//! if it gives up on the silent ones by itself. Every socket is closed when the proxy drops.
//!
//! Plain threads and blocking sockets, so both the Tokio tests of `ackline-worker` and the
//! process tests of `ackline` use it (the latter include this file by path).

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Refuse,
    BlackHole,
}

/// One accepted connection: its sockets (kept open while the proxy lives, so a black-holed
/// connection is never closed) and whether it is frozen.
struct Conn {
    sockets: Vec<TcpStream>,
    frozen: Arc<AtomicBool>,
}

struct Shared {
    mode: Mutex<Mode>,
    conns: Mutex<Vec<Conn>>,
    dropped: AtomicBool,
    accepted: AtomicU64,
}

/// The proxy; see the module doc.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Up),
            conns: Mutex::new(Vec::new()),
            dropped: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(&listener, upstream, &s));
        Proxy { addr, shared }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far (in any mode).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Forward new connections again (black-holed ones stay silent).
    pub fn restore(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Up;
    }

    /// Close every connection and close new ones at once.
    pub fn refuse(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Refuse;
        for c in self.shared.conns.lock().unwrap().drain(..) {
            c.frozen.store(true, Ordering::SeqCst);
            for s in c.sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    /// Stop forwarding anything, closing nothing.
    pub fn black_hole(&self) {
        *self.shared.mode.lock().unwrap() = Mode::BlackHole;
        for c in self.shared.conns.lock().unwrap().iter() {
            c.frozen.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.dropped.store(true, Ordering::SeqCst);
        for c in self.shared.conns.lock().unwrap().drain(..) {
            c.frozen.store(true, Ordering::SeqCst);
            for s in c.sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        // Wakes the accept loop, which sees `dropped` and ends (closing the listener).
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.dropped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        // The mode is read and the connection registered under the connections' lock, so a
        // concurrent `black_hole` or `refuse` sees this connection.
        let mut conns = shared.conns.lock().unwrap();
        let mode = *shared.mode.lock().unwrap();
        match mode {
            Mode::Refuse => drop(client),
            Mode::BlackHole => conns.push(Conn {
                sockets: vec![client],
                frozen: Arc::new(AtomicBool::new(true)),
            }),
            Mode::Up => {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let frozen = Arc::new(AtomicBool::new(false));
                let clones = (
                    client.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                    server.try_clone(),
                );
                let (Ok(c1), Ok(c2), Ok(s1), Ok(s2)) = clones else {
                    continue;
                };
                pump(c1, s1, frozen.clone());
                pump(s2, c2, frozen.clone());
                conns.push(Conn {
                    sockets: vec![client, server],
                    frozen,
                });
            }
        }
    }
}

/// Copies `from` to `to` until the end, unless frozen: then what is read is dropped and
/// nothing is closed.
fn pump(mut from: TcpStream, mut to: TcpStream, frozen: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if frozen.load(Ordering::SeqCst) {
                continue; // black hole: taken, never delivered
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        if !frozen.load(Ordering::SeqCst) {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        }
    });
}
