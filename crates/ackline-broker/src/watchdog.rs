//! A watchdog for the private servers tests start (feature `contract`): a test that panics,
//! or a test process that is killed, must not leave a broker running on the machine.
//!
//! Invariant: the server `pid` is SIGKILLed at the latest `lifetime` after [`watch`], and
//! within about a second after the test process that called it is gone; the watchdog ends
//! as soon as the server does. It is a `sh` loop, so it outlives a SIGKILLed test process,
//! which no `Drop` could.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts a watchdog for the server process `pid`; kill the returned child (the watchdog)
/// together with the server when the test ends normally.
///
/// # Panics
/// When `sh` cannot be started (a test-support function: the test cannot run without it).
#[must_use]
pub fn watch(pid: u32, lifetime: Duration) -> Child {
    let script = format!(
        "i=0; while [ $i -lt {} ] && kill -0 {} 2>/dev/null && kill -0 {pid} 2>/dev/null; \
         do sleep 1; i=$((i+1)); done; kill -9 {pid} 2>/dev/null",
        lifetime.as_secs(),
        std::process::id(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the watchdog")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_outliving_its_lifetime_is_killed() {
        let mut server = Command::new("sleep").arg("60").spawn().unwrap();
        let mut dog = watch(server.id(), Duration::from_secs(1));
        let status = server.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "SIGKILLed: {status:?}");
        dog.wait().unwrap(); // and the watchdog ended with it
    }
}
