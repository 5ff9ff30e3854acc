//! Fast CPU kernels for training mobile CNNs, on plain `f32` slices in NCHW layout
//! (row-major, `((n*C + c)*H + h)*W + w`), with no dependency on any tensor framework.
//!
//! dermclass plugs them into burn's `flex` backend through a backend extension
//! (`dermclass::fast_ops`); this crate only holds the arithmetic, so every kernel is unit
//! tested here against a naive reference implementation.
//!
//! Conventions shared by every module:
//! - inputs are contiguous slices whose length matches the shape arguments (checked with
//!   `assert!`, the caller guarantees it);
//! - outputs are freshly allocated `Vec<f32>`s of the documented shape;
//! - work is split over rayon's global pool (sized by `RAYON_NUM_THREADS`);
//! - hot loops are compiled for AVX-512 / AVX2+FMA with `#[target_feature]` and picked at
//!   run time, with a portable fallback, so the crate stays buildable for baseline x86-64
//!   and other targets.

pub mod adam;
pub mod block;
pub mod bn;
pub mod channels;
mod cpu;
pub mod dense;
pub mod dw;
pub mod fused;
mod gemm;
pub mod micro;
pub mod pool;
pub mod pw;
pub mod residual;
pub mod winograd;
