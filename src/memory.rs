//! Process memory policy for training on the CPU.
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

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_policy_and_large_blocks_still_work() {
        assert!(super::apply());
        let big = vec![1u8; 100 << 20];
        assert_eq!(big.iter().map(|b| *b as usize).sum::<usize>(), 100 << 20);
    }
}
