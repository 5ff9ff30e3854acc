//! What every kernel module shares: the instruction set of this CPU, detected once, and
//! the output buffers the kernels fill.

use std::sync::OnceLock;

/// Code path for the hot loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// `avx512f` (+ `avx2`, `fma`): 16-lane FMAs.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// `avx2` + `fma`: 8-lane FMAs.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Baseline target, separate multiply and add (no libm `fma` calls).
    Portable,
}

/// Every code path this CPU can run, the portable one first (tests check them all).
pub(crate) fn available() -> Vec<Isa> {
    #[allow(unused_mut)]
    let mut isas = vec![Isa::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        let fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if fma {
            isas.push(Isa::Avx2);
        }
        if fma && is_x86_feature_detected!("avx512f") {
            isas.push(Isa::Avx512);
        }
    }
    isas
}

/// The best code path of this CPU, detected once.
pub(crate) fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        *available()
            .last()
            .expect("the portable path is always there")
    })
}

/// An empty Vec with room for `len` outputs, which a kernel writes in full before
/// `set_len` (skipping the zeroing pass over a buffer that is overwritten anyway). In test
/// builds the spare capacity is poisoned with NaN, so an output the kernel misses fails
/// the checks.
pub(crate) fn output_buffer(len: usize) -> Vec<f32> {
    #[allow(unused_mut)]
    let mut v = Vec::with_capacity(len);
    #[cfg(test)]
    v.spare_capacity_mut()[..len].fill(std::mem::MaybeUninit::new(f32::NAN));
    v
}

/// Panics unless `c_in -> c_out` channels split into `groups` equal groups; `op` names the
/// kernel in the message.
pub(crate) fn check_groups(op: &str, c_in: usize, c_out: usize, groups: usize) {
    assert!(
        groups > 0 && c_in.is_multiple_of(groups) && c_out.is_multiple_of(groups),
        "{op}: {c_in} -> {c_out} channels do not split into {groups} groups"
    );
}

/// A raw output pointer that may cross threads: each rayon task writes a disjoint block
/// through it.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used to hand out non-overlapping output blocks to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer `offset` floats further (a method, so closures capture the whole
    /// `SendPtr`, not its raw field).
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the allocation the pointer came from.
        unsafe { self.0.add(offset) }
    }
}
