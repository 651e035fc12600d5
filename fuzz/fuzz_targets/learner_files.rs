//! A real snapshot with one learner file replaced by arbitrary bytes (its manifest hash
//! updated, so decoding gets past the checksum): restoring answers a clear error or a
//! model, never a panic or an absurd allocation.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use streamrec_snapshot::{
    LEARNERS, Manifest, decode_learners, read_snapshot, write_snapshot,
};
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_proto::{Event, EventKind};

struct Template {
    manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let mut models = OnlineModels::new(OnlineConfig::default());
        for i in 0..50_u64 {
            let event = Event {
                event_id: format!("e{i}"),
                session_id: format!("s{}", i % 7),
                user_id: None,
                kind: EventKind::Click,
                item_id: format!("i{}", i % 11),
                ts: 1_700_000_000_000 + i as i64,
                rec_id: None,
                position: None,
                value: None,
                context: None,
                details: Default::default(),
            };
            models.apply_event(i + 1, &event);
        }
        let dir = std::env::temp_dir().join(format!("streamrec-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let written = write_snapshot(&dir, &models, None).expect("template snapshot");
        let folder = dir.join(written.version.as_str());
        let (manifest, _) = read_snapshot(&folder).expect("the template restores");
        let files = manifest
            .learners
            .iter()
            .map(|(name, entry)| {
                let bytes = std::fs::read(folder.join(&entry.file)).expect("learner file");
                (name.clone(), bytes)
            })
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        Template { manifest, files }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let template = template();
    let learner = LEARNERS[usize::from(which) % LEARNERS.len()];
    let mut manifest = template.manifest.clone();
    let mut files = template.files.clone();
    files.insert(learner.to_owned(), bytes.to_vec());
    if let Some(entry) = manifest.learners.get_mut(learner) {
        entry.sha256 = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    }
    let _ = decode_learners(&manifest, &files);
});
