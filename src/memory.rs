//! Process memory policy for training on the CPU, and the peak-memory figure `compare` reports.
//!
//! A training step allocates and frees hundreds of megabytes of activations and gradients.
//! glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh `mmap`
//! and unmaps it on free, so each step faults all those pages in again and the kernel zeroes
//! them: measured at ~20% of a MobileNetV2 step at 224x224, batch 16 (`dermclass bench
//! --profile`: 17.5 img/s with glibc's defaults, 22.4-23.7 with this policy). [`keep_freed_memory`]
//! makes glibc serve large blocks from its heap and keep freed memory for reuse instead. The
//! process then holds on to its peak memory until it exits, which is what a training run
//! wants.

/// Tells glibc's allocator to serve large blocks from the heap and not to return freed memory
/// to the system, unless the environment sets `DERMCLASS_MALLOC_DEFAULTS=1`. Returns whether
/// the policy was applied (never on other C libraries and systems, where it is a no-op).
pub fn keep_freed_memory() -> bool {
    if std::env::var("DERMCLASS_MALLOC_DEFAULTS").is_ok_and(|v| v == "1") {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only changes allocator parameters (glibc serialises it against
    // allocation), and both options and values are valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

/// Starts a new window for the process's peak resident memory (Linux's `VmHWM`): returns
/// freed heap memory to the system first, so memory a finished job kept for reuse does not
/// count as the next job's, then resets the peak to what the process holds now. Returns
/// false where the peak cannot be reset (other systems, or a kernel that refuses).
pub fn start_peak_window() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident memory of the process since it started or since the last
/// [`start_peak_window`], in MB (Linux; `None` elsewhere).
pub fn peak_resident_mb() -> Option<f64> {
    crate::data::bench::proc_status_kb("VmHWM").map(|kb| kb as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_policy_and_large_blocks_still_work() {
        assert!(super::apply());
        let big = vec![1u8; 100 << 20];
        assert_eq!(big.iter().map(|b| *b as usize).sum::<usize>(), 100 << 20);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_peak_window_forgets_memory_freed_before_it() {
        let before = {
            let big = vec![1u8; 300 << 20];
            std::hint::black_box(&big);
            super::peak_resident_mb().unwrap()
        };
        assert!(super::start_peak_window());
        let after = super::peak_resident_mb().unwrap();
        assert!(
            after < before - 200.0,
            "peak {before:.0} MB before the window, {after:.0} MB after"
        );
    }
}
