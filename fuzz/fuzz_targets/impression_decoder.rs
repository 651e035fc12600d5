//! Any bytes on `streamrec.impressions`: an impression or a clear rejection; an accepted one
//! survives its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamrec_proto::Impression;

fuzz_target!(|data: &[u8]| {
    if let Ok(impression) = Impression::from_json(data) {
        let again = Impression::from_json(&impression.to_json())
            .expect("an accepted impression re-encodes validly");
        assert_eq!(again, impression);
    }
});
