//! A per-op timer for the fast kernels (`dermclass bench --profile`): wall time and call
//! count per kernel phase, so a training step's time can be split into the fast kernels and
//! everything else burn runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A timed piece of work of the fast kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// 1x1 convolution forward.
    PointwiseForward,
    /// 1x1 convolution input gradient.
    PointwiseInputGrad,
    /// 1x1 convolution weight gradient.
    PointwiseWeightGrad,
    /// Depthwise 3x3 forward.
    DepthwiseForward,
    /// Depthwise 3x3 backward (input and weight gradients together).
    DepthwiseBackward,
    /// Dense convolution forward.
    DenseForward,
    /// Dense convolution input gradient.
    DenseInputGrad,
    /// Dense convolution weight gradient.
    DenseWeightGrad,
    /// Training batch norm + activation forward.
    BatchNormForward,
    /// Training batch norm + activation backward.
    BatchNormBackward,
    /// Inference batch norm + activation.
    BatchNormInference,
    /// Pooling window forward (training and the module path).
    PoolForward,
    /// Pooling window backward.
    PoolBackward,
    /// Channel split, interleaving merge and shuffle, forward and backward.
    ChannelMoves,
    /// Residual add + ReLU, forward and backward.
    AddRelu,
}

impl Phase {
    /// Every phase, in report order.
    pub const ALL: [Phase; 15] = [
        Phase::PointwiseForward,
        Phase::PointwiseInputGrad,
        Phase::PointwiseWeightGrad,
        Phase::DepthwiseForward,
        Phase::DepthwiseBackward,
        Phase::DenseForward,
        Phase::DenseInputGrad,
        Phase::DenseWeightGrad,
        Phase::BatchNormForward,
        Phase::BatchNormBackward,
        Phase::BatchNormInference,
        Phase::PoolForward,
        Phase::PoolBackward,
        Phase::ChannelMoves,
        Phase::AddRelu,
    ];

    /// Short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Phase::PointwiseForward => "1x1 conv forward",
            Phase::PointwiseInputGrad => "1x1 conv input grad",
            Phase::PointwiseWeightGrad => "1x1 conv weight grad",
            Phase::DepthwiseForward => "depthwise 3x3 forward",
            Phase::DepthwiseBackward => "depthwise 3x3 backward",
            Phase::DenseForward => "dense conv forward",
            Phase::DenseInputGrad => "dense conv input grad",
            Phase::DenseWeightGrad => "dense conv weight grad",
            Phase::BatchNormForward => "batch norm + act forward",
            Phase::BatchNormBackward => "batch norm + act backward",
            Phase::BatchNormInference => "batch norm + act inference",
            Phase::PoolForward => "pool forward",
            Phase::PoolBackward => "pool backward",
            Phase::ChannelMoves => "channel split/merge/shuffle",
            Phase::AddRelu => "residual add + relu",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; Phase::ALL.len()] = [const { AtomicU64::new(0) }; Phase::ALL.len()];
static CALLS: [AtomicU64; Phase::ALL.len()] = [const { AtomicU64::new(0) }; Phase::ALL.len()];

/// Starts (or stops) recording; recording is off by default and costs nothing then.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Clears the recorded times.
pub fn reset() {
    for i in 0..Phase::ALL.len() {
        NANOS[i].store(0, Ordering::Relaxed);
        CALLS[i].store(0, Ordering::Relaxed);
    }
}

/// Recorded (phase, calls, total time) since the last [`reset`].
pub fn snapshot() -> Vec<(Phase, u64, Duration)> {
    Phase::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                *p,
                CALLS[i].load(Ordering::Relaxed),
                Duration::from_nanos(NANOS[i].load(Ordering::Relaxed)),
            )
        })
        .collect()
}

/// Runs `work`, adding its wall time to `phase` when recording.
pub(crate) fn time<T>(phase: Phase, work: impl FnOnce() -> T) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return work();
    }
    let started = Instant::now();
    let out = work();
    let i = phase as usize;
    NANOS[i].fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    CALLS[i].fetch_add(1, Ordering::Relaxed);
    out
}
