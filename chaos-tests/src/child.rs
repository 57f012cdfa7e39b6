//! Spawning children that die with the test process, signalling them, reading log tails.
//!
//! Every child is forked by one harness thread that lives as long as the test process. The
//! kernel fires `PR_SET_PDEATHSIG` when the *thread* that forked a child exits, not when the
//! process does, so forking from a test's own thread (or from a tokio `spawn_blocking` thread)
//! would kill the child as soon as that thread ends. Forking from a thread that never ends
//! makes the death signal mean "the test process is gone".

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Sender half of the spawner thread's queue.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("chaos-tests-spawner".into())
            .spawn(move || {
                // Never returns while the process lives: the sender sits in a static.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the chaos-tests spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` so that the child gets SIGKILL when the test process dies.
///
/// The fork happens on the long-lived spawner thread (see the module docs), so this can be
/// called from any thread.
pub(crate) fn spawn_with_deathsig(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("chaos-tests spawner thread is gone"))?;
    rx.recv().map_err(|_| io::Error::other("chaos-tests spawner thread dropped the request"))?
}

/// Sends `sig` to `pid`. `ESRCH` (already gone) is reported as an error of kind `NotFound`.
pub(crate) fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a pid we own.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGKILLs (after SIGCONT, so a stopped child is not left behind) and reaps `child`.
/// Never fails: a child that already exited is just reaped.
pub(crate) fn kill_and_reap(child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = signal(child.id(), libc::SIGCONT);
    let _ = child.kill();
    child.wait().ok()
}

/// Polls `child` until it exits or `timeout` passes.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// The last `lines` lines of the file at `path` (reads at most the last 256 KiB).
/// A missing file gives a short note instead of an error: this is for diagnostics.
pub(crate) fn tail_file(path: &Path, lines: usize) -> String {
    const MAX: u64 = 256 * 1024;
    let read = || -> io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        let start = len.saturating_sub(MAX);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            all[from..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}
