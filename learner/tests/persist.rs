//! Every learner through the one persistence trait: what `save` takes apart, `load` puts
//! back equal, and a tampered state is an error, never a panic.

use streamrec_learner::candidates::FEATURES;
use streamrec_learner::covisit::Covisitation;
use streamrec_learner::online::{
    NamedTensor, OnlineConfig, OnlineModels, OnlineParts, RerankerState, choose_slate,
};
use streamrec_learner::persist::{LearnerState, PersistError, Persistent, TensorData};
use streamrec_proto::{Event, EventKind, Impression, ShownItem};

const T0: i64 = 1_700_000_000_000;

/// A stream with every kind of state in it: sessions over 40 items, impressions and clicks
/// on them (bandit arms, rewards), enough events for re-ranker groups.
fn learned() -> OnlineParts {
    let mut models = OnlineModels::new(OnlineConfig::default());
    let mut seq = 0;
    let mut served: Option<(String, String)> = None;
    for n in 0..600u64 {
        let session = format!("s{}", n % 23);
        let ts = T0 + n as i64 * 1_000;
        if n % 10 == 0 {
            let candidates = models.popular(10);
            let rec_id = format!("r{n}");
            let items: Vec<ShownItem> = choose_slate(Some(&models.bandit), &candidates, 5, &rec_id)
                .into_iter()
                .map(|slot| slot.shown)
                .collect();
            served = items
                .first()
                .map(|shown| (shown.item_id.clone(), rec_id.clone()));
            seq += 1;
            models.apply_impression(
                seq,
                &Impression {
                    user_id: None,
                    traceparent: None,
                    logged: None,
                    rec_id: rec_id.clone(),
                    session_id: session.clone(),
                    ts,
                    model_version: "test".into(),
                    items,
                },
            );
        }
        let mut item = format!("item-{}", (n * 7 + n / 13) % 40);
        let mut rec_id = None;
        if let Some((shown, id)) = &served {
            // A click on what was just served: a reward for the bandit.
            item = shown.clone();
            rec_id = Some(id.clone());
        }
        served = None;
        seq += 1;
        models.apply_event(
            seq,
            &Event {
                event_id: format!("e{n}"),
                session_id: session,
                user_id: (n % 3 == 0).then(|| format!("u{}", n % 5)),
                kind: EventKind::Click,
                item_id: item,
                ts,
                rec_id,
                position: None,
                value: None,
                context: None,
                details: Default::default(),
            },
        );
    }
    models.into_parts()
}

fn round_trip<P: Persistent + Clone + PartialEq + std::fmt::Debug>(learner: &P) {
    let state = learner.clone().save().expect("saves");
    let again = learner.clone().save().expect("saves");
    assert_eq!(
        state,
        again,
        "{}: equal learners save equal states",
        P::NAME
    );
    let back = P::load(state).expect("loads");
    assert_eq!(&back, learner, "{}", P::NAME);
}

#[test]
fn every_learner_round_trips() {
    let parts = learned();
    assert!(parts.covisit.len() >= 40);
    round_trip(&parts.popularity);
    round_trip(&parts.embeddings);
    round_trip(&parts.bandit);
    round_trip(&parts.covisit);
    round_trip(&parts.reranker);
    // Trained weights too, held in name order as a restored re-ranker holds them.
    let mut trained = parts.reranker.clone();
    trained.weights = vec![
        NamedTensor {
            name: "first.bias".into(),
            shape: vec![2],
            values: vec![0.5, -1.0],
        },
        NamedTensor {
            name: "first.weight".into(),
            shape: vec![FEATURES, 2],
            values: (0..FEATURES * 2).map(|v| v as f32).collect(),
        },
    ];
    trained.steps = 7;
    round_trip(&trained);
    // Weights learned on another number of inputs (an older snapshot) are not read as these.
    let mut older = trained.clone();
    older.weights[1].shape = vec![FEATURES - 3, 2];
    let back = RerankerState::load(older.save().expect("saves")).expect("loads");
    assert!(
        back.weights.is_empty() && back.steps == 0,
        "a fresh re-ranker"
    );
    round_trip(&parts.stream);
    round_trip(&parts.catalog);
}

/// Each tensor of `state` in turn: dropped, and given another element type.
fn tampered(state: &LearnerState) -> Vec<LearnerState> {
    let mut out = Vec::new();
    for i in 0..state.tensors.len() {
        let mut dropped = state.clone();
        dropped.tensors.remove(i);
        out.push(dropped);
        let mut retyped = state.clone();
        let t = &mut retyped.tensors[i];
        t.data = match &t.data {
            TensorData::F32(v) => TensorData::U32(vec![0; v.len()]),
            _ => TensorData::F32(vec![0.0; t.data.len()]),
        };
        out.push(retyped);
    }
    let mut shorter = state.clone();
    if let Some(t) = shorter.tensors.iter_mut().find(|t| !t.data.is_empty()) {
        t.data = match &t.data {
            TensorData::F32(v) => TensorData::F32(v[..v.len() / 2].to_vec()),
            TensorData::F64(v) => TensorData::F64(v[..v.len() / 2].to_vec()),
            TensorData::U32(v) => TensorData::U32(v[..v.len() / 2].to_vec()),
            TensorData::U64(v) => TensorData::U64(v[..v.len() / 2].to_vec()),
        };
        out.push(shorter);
    }
    let mut bad_json = state.clone();
    bad_json.json.push('}');
    out.push(bad_json);
    out
}

fn refuses_tampering<P: Persistent + Clone>(learner: &P) {
    let state = learner.clone().save().expect("saves");
    assert!(!state.tensors.is_empty(), "{} has tensors", P::NAME);
    for bad in tampered(&state) {
        assert!(
            P::load(bad).is_err(),
            "{}: a tampered state was taken",
            P::NAME
        );
    }
}

#[test]
fn a_tampered_state_is_refused() {
    let parts = learned();
    let bandit = parts.bandit.clone().save().expect("saves");
    assert!(!bandit.tensors[0].data.is_empty(), "the bandit has arms");
    refuses_tampering(&parts.embeddings);
    refuses_tampering(&parts.bandit);
    refuses_tampering(&parts.covisit);
    let mut popularity = parts.popularity.save().expect("saves");
    popularity.json.push('}');
    assert!(matches!(
        streamrec_learner::Popularity::load(popularity),
        Err(PersistError::Json(_))
    ));
}

/// 130 events over 7 sessions and 40 items, learned with `config`: mid-epoch for epochs
/// of 50.
fn learned_by_epoch(config: OnlineConfig) -> OnlineParts {
    let mut models = OnlineModels::new(config);
    for n in 0..130u64 {
        models.apply_event(
            n + 1,
            &Event {
                event_id: format!("e{n}"),
                session_id: format!("s{}", n % 7),
                user_id: None,
                kind: EventKind::View,
                item_id: format!("item-{}", (n * 7 + n / 13) % 40),
                ts: T0 + n as i64 * 1_000,
                rec_id: None,
                position: None,
                value: None,
                context: None,
                details: Default::default(),
            },
        );
    }
    models.into_parts()
}

/// `saved` with the JSON value at `path` replaced.
fn with_json_at(saved: &LearnerState, path: &[&str], value: serde_json::Value) -> LearnerState {
    let mut state = saved.clone();
    let mut json: serde_json::Value = serde_json::from_str(&state.json).expect("json");
    let mut at = &mut json;
    for key in path {
        at = match key.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*key],
        };
    }
    *at = value;
    state.json = json.to_string();
    state
}

/// Lists by epoch: what waits to be read or counted is saved and loaded with the rest, and
/// a state whose waiting meetings name items it does not hold is refused.
#[test]
fn lists_by_epoch_round_trip_with_what_waits() {
    let mut config = OnlineConfig::default();
    config.covisit.epoch = 50;
    let covisit = learned_by_epoch(config).covisit;
    assert!(!covisit.open_meetings().is_empty());
    assert!(covisit.staged().0 > 0);
    round_trip(&covisit);
    let saved = covisit.clone().save().expect("saves");
    let tampered = |path: &[&str], value| with_json_at(&saved, path, value);
    // A meeting of an item the learner does not hold; a staged list of a row it does not.
    let unknown_meeting = tampered(&["deferred", "open", "items", "0"], 10_000.into());
    assert!(matches!(
        Covisitation::load(unknown_meeting),
        Err(PersistError::Invalid(_))
    ));
    let staged = serde_json::json!({"9999": [[1, 0.5]]});
    let unknown_row = tampered(&["deferred", "staged_neighbours"], staged);
    assert!(matches!(
        Covisitation::load(unknown_row),
        Err(PersistError::Invalid(_))
    ));
    // An untampered copy still loads.
    assert!(Covisitation::load(saved).is_ok());
}

/// Vectors by epoch: the observations that wait are saved and loaded with the rest, and a
/// state that keeps them under a config without epochs is refused.
#[test]
fn vectors_by_epoch_round_trip_with_what_waits() {
    use streamrec_learner::embeddings::ItemEmbeddings;
    let mut config = OnlineConfig::default();
    config.embeddings.epoch = 50;
    let embeddings = learned_by_epoch(config).embeddings;
    assert_eq!(embeddings.waiting(), (50, 30));
    round_trip(&embeddings);
    let saved = embeddings.clone().save().expect("saves");
    let without_epochs = with_json_at(&saved, &["config", "epoch"], 0.into());
    assert!(matches!(
        ItemEmbeddings::load(without_epochs),
        Err(PersistError::Invalid(_))
    ));
    assert!(ItemEmbeddings::load(saved).is_ok());
}
