//! Process faults for failover drills (`keel drill`): what a dispatcher or worker does to
//! itself when an operator asks it, through its admin endpoint, to fail.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A fault a process inflicts on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Die at once, like `kill -9`: no resignation, no session close.
    Kill,
    /// Stop gracefully, like SIGTERM: resign, close the session, exit 0.
    Terminate,
    /// Freeze (SIGSTOP) for this long, then continue (SIGCONT): a GC pause or a hung VM.
    Pause(Duration),
    /// Drop the ZooKeeper session and contend again (dispatchers only).
    Isolate,
}

impl Fault {
    /// Parses the admin API's names: `kill`, `terminate`, `pause` (with `pause_ms`), `isolate`.
    pub fn parse(name: &str, pause_ms: Option<u64>) -> Result<Fault, String> {
        match name {
            "kill" => Ok(Fault::Kill),
            "terminate" => Ok(Fault::Terminate),
            "pause" => match pause_ms {
                Some(ms) if ms > 0 && ms <= 600_000 => Ok(Fault::Pause(Duration::from_millis(ms))),
                other => Err(format!("pause needs pause_ms between 1 and 600000, got {other:?}")),
            },
            "isolate" => Ok(Fault::Isolate),
            other => Err(format!("unknown fault {other:?}; expected kill, terminate, pause or isolate")),
        }
    }
}

/// Inflicts `fault` on this process shortly after returning (so the admin request can be
/// answered first). `Isolate` is the caller's to handle; here it does nothing.
pub fn inflict(fault: Fault, shutdown: CancellationToken) {
    tracing::warn!(?fault, "drill: inflicting a fault on this process");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match fault {
            Fault::Kill => {
                // SAFETY: sending a signal to our own pid.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
            Fault::Terminate => shutdown.cancel(),
            Fault::Pause(d) => {
                let pid = std::process::id();
                // A detached helper resumes us: a stopped process cannot resume itself.
                let resume = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("sleep {}; kill -CONT {pid}", d.as_secs_f64()))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                match resume {
                    // SAFETY: sending a signal to our own pid.
                    Ok(_) => unsafe {
                        libc::kill(libc::getpid(), libc::SIGSTOP);
                    },
                    Err(e) => tracing::error!(error = %e, "cannot start the resume helper; not pausing"),
                }
            }
            Fault::Isolate => {}
        }
    });
}
