//! Any bytes: an item or a clear rejection; an accepted item survives its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamrec_proto::Item;

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = Item::from_json(data) {
        let again = Item::from_json(&item.to_json()).expect("an accepted item re-encodes validly");
        assert_eq!(again, item);
    }
});
