//! Any bytes as a segment of the embedded bus's log: the reader decodes a prefix of whole,
//! checksummed records and says where it stopped, never panics; what it decoded encodes back
//! to exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamrec_actors::bus::segment_log::{ScanStop, encode, scan};

fuzz_target!(|data: &[u8]| {
    let (records, stop) = scan(data);
    let mut again = Vec::new();
    for record in &records {
        encode(record, &mut again);
    }
    let good = match stop {
        ScanStop::Clean => data.len(),
        ScanStop::Bad { offset, .. } => offset,
    };
    assert_eq!(&again[..], &data[..good]);
});
