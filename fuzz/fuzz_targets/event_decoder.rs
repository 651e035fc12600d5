//! Any bytes: an event or a clear rejection, never a panic; what is accepted survives its own
//! encoding unchanged (the bus and snapshots store events as `to_json` writes them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamrec_proto::Event;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = Event::from_json(data) {
        let again =
            Event::from_json(&event.to_json()).expect("an accepted event re-encodes validly");
        assert_eq!(again, event);
    }
});
