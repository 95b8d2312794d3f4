//! The server's integration tests, one binary (one link, one `common`): each module a former
//! test file.
//!
//! | module | what it proves |
//! | --- | --- |
//! | `api` | auth and scopes, ingest formats and ids, fencing by session, metrics names |
//! | `bounds` | what one client can make the server hold: lines per request, lease and session caps, reason sizes |
//! | `hostile` | slowloris, idle keep-alive, invented methods, queue creation, readiness, UDP drops, a bounded soak |
//! | `crash` | kill -9 under ingest loses no confirmed line (the child is this binary, `crash::crash_child_server`) |
//! | `console` | the web console in a real server: sign-in with its tokens, books and sessions after real traffic, a viewer refused, replay and purge |
//! | `syslog` | syslog over TCP and UDP with `logger` and a private `rsyslogd` |
//!
//! `common` holds the test server, the tokens and one-shot HTTP requests.

#![allow(clippy::unwrap_used)]

mod api;
mod bounds;
mod common;
mod console;
mod crash;
mod hostile;
mod syslog;
