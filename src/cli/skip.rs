//! `--skip-bad` for `predict` and `evaluate`: screen every image before the job, then
//! either stop naming the first bad file and how many more there are, or go on without them.

use anyhow::{Result, bail};

use dermclass::data::Sample;
use dermclass::data::screen::{BadInput, print_bad, require_all_readable, screen_images};

/// Decodes every sample's image. `earlier` are inputs already found bad (e.g. rows skipped
/// while opening the data set). Strict (`skip_bad` false): any bad input is an error that
/// names the first and counts the rest, after every one is listed on stderr. With
/// `skip_bad`: returns the good samples and every bad input (also listed on stderr); it is
/// still an error when nothing is left.
pub fn screen_or_skip(
    samples: Vec<Sample>,
    earlier: Vec<BadInput>,
    skip_bad: bool,
) -> Result<(Vec<Sample>, Vec<BadInput>)> {
    let total = samples.len() + earlier.len();
    let screened = screen_images(samples);
    let mut bad = earlier;
    bad.extend(screened.bad);
    if !skip_bad {
        print_bad("cannot be used", &bad);
        require_all_readable(&bad, total)?;
    }
    print_bad("skipped", &bad);
    if screened.good.is_empty() {
        bail!("none of the {total} inputs can be used (every one is listed above)");
    }
    Ok((screened.good, bad))
}
