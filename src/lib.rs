//! dermclass: train, evaluate and ship small, fast convolutional networks that classify
//! dermoscopic skin-lesion images (ISIC 2018 Task 3 / HAM10000).
//!
//! Modules by concern: [`data`] (sources, splits, augmentation, loading), [`model`] (the
//! mobile model zoo and its cost accounting), [`metrics`] (the ISIC metric and friends),
//! [`train`], [`report`], [`device`], and [`fast_ops`] (the kernels crate plugged into burn: fast CPU paths for mobile layers).

pub mod calibration;
pub mod data;
pub mod device;
pub mod explain;
pub mod export;
pub mod fast_ops;
pub mod infer;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod report;
pub mod serve;
pub mod train;
