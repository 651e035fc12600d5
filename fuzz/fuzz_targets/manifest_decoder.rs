//! Any bytes as a snapshot's manifest: a manifest or a clear error, and an accepted one names
//! only the fixed learner files (no path can come from it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamrec_snapshot::{learner_file, parse_manifest};

fuzz_target!(|data: &[u8]| {
    // The folder name is a valid version; the manifest must name the same one.
    if let Ok(manifest) = parse_manifest(data, "000000000001-0123456789ab") {
        for (name, entry) in &manifest.learners {
            assert_eq!(learner_file(name), Some(entry.file.as_str()));
        }
    }
});
