//! The integration tests, in one binary (one link instead of one per file). Two suites
//! stay apart in their own processes because they use process-wide state: burn's CPU
//! random generator (`train_resume.rs`) and the fast-kernel switch (`fast_kernels_model.rs`).

#[path = "../helpers/mod.rs"]
mod helpers;

mod cli_model;
mod compare_synthetic;
mod data_augment;
mod data_cli;
mod data_fetch;
mod data_isic;
mod data_loader;
mod data_sources;
mod data_split;
mod data_synth;
mod explain;
mod export_onnx;
mod export_web;
mod fast_kernels;
mod init_torchvision;
mod reliability_cli;
mod robustness_props;
mod serve;
mod serve_browser;
mod train_synthetic;
mod walkthrough;
