//! The Redis Streams backend against real `redis-server` processes, one private server per
//! test (`common`), in one test binary:
//! - `contract`: the backend contract suite (every rule);
//! - `kill`: a worker process SIGKILLed while holding deliveries;
//! - `restart`: the test's redis-server kill -9ed and restarted on its AOF;
//! - `connection`: a worker's connections dropped by the server (`CLIENT KILL`);
//! - `crash_loop`: consumers dying with a message, across a Redis restart, until `max_attempts`;
//! - `persistence`: the refusal of a server without AOF, and `allow_volatile`;
//! - `tls`: `rediss://` with a private CA.

mod common;
mod connection;
mod contract;
mod crash_loop;
mod kill;
mod persistence;
#[path = "../../../ackline-broker/tests/shared/pki.rs"]
mod pki;
mod restart;
mod tls;
#[path = "../../../ackline-worker/tests/shared/crash_worker.rs"]
mod worker;
