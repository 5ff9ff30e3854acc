//! Downloading the official ISIC 2018 Task 3 files.
