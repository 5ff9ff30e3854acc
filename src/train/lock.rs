//! A lock on a run folder: while a process trains (or compares) into a folder, the folder
//! holds `dermclass.lock` with that process's id, so a second process fails at once instead
//! of writing into the same checkpoints. The file is removed when the lock is dropped (on a
//! normal exit or an error); one left behind by a killed process is recognised as stale
//! (no process with that id, or one started at another time) and taken over. Taking a lock
//! also removes the temporary files of atomic writes that a killed process left behind.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Name of the lock file inside a locked folder.
pub const LOCK_FILE: &str = "dermclass.lock";

/// A held lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    owner: String,
}

/// Who holds a lock: a process id and, where the platform tells, the process's start time
/// (so a recycled process id is not mistaken for the holder).
fn owner_line(pid: u32) -> String {
    match process_start_time(pid) {
        Some(start) => format!("{pid} {start}"),
        None => pid.to_string(),
    }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), or `None` when there is no such process or no `/proc`.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded in a lock file's `owner` line still runs.
fn owner_alive(owner: &str) -> bool {
    let mut fields = owner.split_whitespace();
    let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else {
        return false; // unreadable or empty: no process can be waiting on it
    };
    let start: Option<u64> = fields.next().and_then(|s| s.parse().ok());
    if Path::new("/proc/self/stat").exists() {
        return match (process_start_time(pid), start) {
            (None, _) => false,
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
        };
    }
    // Without /proc, assume the holder runs: the message says how to clear the lock.
    true
}

/// Removes the temporary files of [`crate::report::write_atomic`] (`.NAME.tmp.PID.N`) that
/// a killed process left in `dir`: those whose process is gone. Best effort.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, tail)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp.")) else {
            continue;
        };
        let Some((pid, counter)) = tail.split_once('.') else {
            continue;
        };
        if counter.parse::<u64>().is_err() || !entry.path().is_file() {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !owner_alive(&pid.to_string()) {
            eprintln!(
                "note: removing {}, left by an interrupted write",
                entry.path().display()
            );
            let _ = fs::remove_file(entry.path());
        }
    }
}

impl RunLock {
    /// Locks `dir` (which must exist) for this process. Fails with a message naming the
    /// folder, the holding process and the lock file when another live process holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        let owner = owner_line(std::process::id());
        // Two tries: the second after removing a stale lock.
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(format!("{owner}\n").as_bytes())
                        .and_then(|()| f.sync_all())
                        .with_context(|| format!("cannot write the lock {}", path.display()))?;
                    remove_stale_temp_files(dir);
                    return Ok(RunLock { path, owner });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let held = fs::read_to_string(&path).unwrap_or_default();
                    let held = held.trim();
                    if owner_alive(held) {
                        let pid = held.split_whitespace().next().unwrap_or("?");
                        bail!(
                            "{} is in use by another dermclass process (pid {pid}, lock file \
                             {}); wait for it to finish or use another folder. If no such \
                             process runs, remove the lock file",
                            dir.display(),
                            path.display()
                        );
                    }
                    eprintln!(
                        "note: removing the stale lock {} (process {} is gone)",
                        path.display(),
                        held.split_whitespace().next().unwrap_or("?")
                    );
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("cannot remove the stale lock {}", path.display())
                            });
                        }
                    }
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create the lock {}", path.display()));
                }
            }
        }
        bail!(
            "{} was locked again by another process while a stale lock was removed ({})",
            dir.display(),
            path.display()
        )
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only remove the file if it is still ours.
        if fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == self.owner) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_refuses_a_second_holder_and_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        let text = fs::read_to_string(lock.path()).unwrap();
        assert!(text.starts_with(&std::process::id().to_string()), "{text}");
        let err = format!("{:#}", RunLock::acquire(dir.path()).unwrap_err());
        assert!(err.contains("in use by another dermclass process"), "{err}");
        assert!(err.contains(LOCK_FILE), "{err}");
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        drop(RunLock::acquire(dir.path()).unwrap());
    }

    #[test]
    fn stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        // A process id that cannot exist (above Linux's pid_max), garbage, and this process
        // with another start time (a recycled pid): all stale.
        let me = std::process::id();
        for stale in ["4294967295 12", "not a pid", "", &format!("{me} 1")] {
            fs::write(&path, stale).unwrap();
            let lock = RunLock::acquire(dir.path()).unwrap();
            assert_ne!(fs::read_to_string(&path).unwrap().trim(), stale);
            drop(lock);
            assert!(!path.exists());
        }
        // Temporary files of writes interrupted by a kill are removed when the folder is
        // locked; those of live processes and other hidden files stay.
        let dead = dir.path().join(".last.ckpt.tmp.4294967295.3");
        let live = dir.path().join(format!(".metrics.csv.tmp.{me}.0"));
        let other = dir.path().join(".notes.tmp.x");
        for f in [&dead, &live, &other] {
            fs::write(f, b"partial").unwrap();
        }
        drop(RunLock::acquire(dir.path()).unwrap());
        assert!(!dead.exists() && live.exists() && other.exists());
        // This very process, as recorded by a lock: alive.
        fs::write(&path, owner_line(me)).unwrap();
        assert!(RunLock::acquire(dir.path()).is_err());
        assert!(path.exists());
    }
}
