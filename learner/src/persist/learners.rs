//! How each learner is taken apart for a snapshot and put back: which of its parts are
//! tensors, and what stays JSON. Tensor names and types are the snapshot format (readers
//! outside Rust use them: `docs/examples`).

use nalgebra::{DMatrix, DVector};

use super::{LearnerState, PersistError, Persistent, StateFormat, StateTensor, TensorData};
use crate::bandit::RidgeArm;
use crate::catalog::Catalog;
use crate::covisit::{CovisitState, Covisitation, SparseCounts, SparseLists};
use crate::embeddings::ItemEmbeddings;
use crate::online::{Bandit, NamedTensor, RerankerState, StreamState};
use crate::popularity::Popularity;

/// Learners stored as their own JSON.
macro_rules! json_learner {
    ($($learner:ty => $name:literal, $file:literal;)*) => {$(
        impl Persistent for $learner {
            const NAME: &'static str = $name;
            const FILE: &'static str = $file;
            const FORMAT: StateFormat = StateFormat::Json;

            fn save(self) -> Result<LearnerState, PersistError> {
                LearnerState::from_json(&self)
            }

            fn load(state: LearnerState) -> Result<Self, PersistError> {
                state.parse()
            }
        }
    )*};
}

json_learner! {
    Popularity => "popularity", "popularity.json";
    StreamState => "stream", "stream.json";
}

impl Persistent for Catalog {
    const NAME: &'static str = "catalog";
    const FILE: &'static str = "catalog.json";
    const FORMAT: StateFormat = StateFormat::Json;

    fn save(self) -> Result<LearnerState, PersistError> {
        LearnerState::from_json(&self.to_record())
    }

    fn load(state: LearnerState) -> Result<Self, PersistError> {
        Catalog::from_record(state.parse()?).map_err(PersistError::Invalid)
    }
}

impl Persistent for ItemEmbeddings {
    const NAME: &'static str = "embeddings";
    const FILE: &'static str = "embeddings.safetensors";
    const FORMAT: StateFormat = StateFormat::Tensors;

    fn save(mut self) -> Result<LearnerState, PersistError> {
        let (input, output) = self.take_matrices();
        let shape = vec![self.len(), self.dim()];
        let mut state = LearnerState::from_json(&self)?;
        for (name, values) in [("input", input), ("output", output)] {
            state.push(StateTensor {
                name: name.to_owned(),
                shape: shape.clone(),
                data: TensorData::F32(values),
            });
        }
        Ok(state)
    }

    fn load(mut state: LearnerState) -> Result<Self, PersistError> {
        let mut embeddings: ItemEmbeddings = state.parse()?;
        let (input, output) = (state.take_f32("input")?, state.take_f32("output")?);
        embeddings
            .set_matrices(input, output)
            .map_err(PersistError::Invalid)?;
        if !embeddings.deferred_fits_config() {
            return Err(PersistError::Invalid(
                "item2vec observations waiting for an epoch, in a config without epochs".into(),
            ));
        }
        Ok(embeddings)
    }
}

impl Persistent for Bandit {
    const NAME: &'static str = "bandit";
    const FILE: &'static str = "bandit.safetensors";
    const FORMAT: StateFormat = StateFormat::Tensors;

    fn save(mut self) -> Result<LearnerState, PersistError> {
        let arms = self.model_mut().take_arms();
        let (n, d) = (arms.len(), self.dim());
        let mut state = LearnerState::from_json(&self)?;
        let keys = arms.keys().copied().collect();
        let a_inv = arms
            .values()
            .flat_map(|a| a.a_inv.iter().copied())
            .collect();
        let b = arms.values().flat_map(|a| a.b.iter().copied()).collect();
        let pulls = arms.values().map(|a| a.pulls).collect();
        let reward_sum = arms.values().map(|a| a.reward_sum).collect();
        state.push(StateTensor::vector("keys", TensorData::U64(keys)));
        state.push(StateTensor {
            name: "a_inv".to_owned(),
            shape: vec![n, d, d],
            data: TensorData::F64(a_inv),
        });
        state.push(StateTensor {
            name: "b".to_owned(),
            shape: vec![n, d],
            data: TensorData::F64(b),
        });
        state.push(StateTensor::vector("pulls", TensorData::U64(pulls)));
        state.push(StateTensor::vector(
            "reward_sum",
            TensorData::F64(reward_sum),
        ));
        Ok(state)
    }

    fn load(mut state: LearnerState) -> Result<Self, PersistError> {
        let mut bandit: Bandit = state.parse()?;
        let d = bandit.dim();
        let keys = state.take_u64("keys")?;
        let a_inv = state.take_f64("a_inv")?;
        let b = state.take_f64("b")?;
        let pulls = state.take_u64("pulls")?;
        let reward_sum = state.take_f64("reward_sum")?;
        let n = keys.len();
        if a_inv.len() != n * d * d || b.len() != n * d || pulls.len() != n || reward_sum.len() != n
        {
            return Err(PersistError::Invalid(
                "bandit tensors disagree on the number of arms".to_owned(),
            ));
        }
        let arms = (0..n)
            .map(|i| {
                let arm = RidgeArm {
                    a_inv: DMatrix::from_column_slice(d, d, &a_inv[i * d * d..(i + 1) * d * d]),
                    b: DVector::from_column_slice(&b[i * d..(i + 1) * d]),
                    pulls: pulls[i],
                    reward_sum: reward_sum[i],
                };
                (keys[i], arm)
            })
            .collect();
        bandit.model_mut().set_arms(arms);
        Ok(bandit)
    }
}

/// Per-item counters, then the two count matrices and the two ranked lists, each as CSR.
const COVISIT_COUNTERS: [&str; 3] = ["users_of", "co_stale", "next_stale"];
const COVISIT_COUNTS: [&str; 2] = ["co", "next"];
const COVISIT_LISTS: [&str; 2] = ["neighbours", "transitions"];

impl Persistent for Covisitation {
    const NAME: &'static str = "covisitation";
    const FILE: &'static str = "covisitation.safetensors";
    const FORMAT: StateFormat = StateFormat::Tensors;

    fn save(self) -> Result<LearnerState, PersistError> {
        let mut parts = self.into_state();
        let counters = [
            std::mem::take(&mut parts.users_of),
            std::mem::take(&mut parts.co_stale),
            std::mem::take(&mut parts.next_stale),
        ];
        let counts = [
            std::mem::take(&mut parts.co),
            std::mem::take(&mut parts.next),
        ];
        let lists = [
            std::mem::take(&mut parts.neighbours),
            std::mem::take(&mut parts.transitions),
        ];
        let mut state = LearnerState::from_json(&parts)?;
        for (name, values) in COVISIT_COUNTERS.into_iter().zip(counters) {
            state.push(StateTensor::vector(name, TensorData::U32(values)));
        }
        for (prefix, c) in COVISIT_COUNTS.into_iter().zip(counts) {
            let at = |part: &str| format!("{prefix}_{part}");
            state.push(StateTensor::vector(
                &at("offsets"),
                TensorData::U64(c.offsets),
            ));
            state.push(StateTensor::vector(
                &at("columns"),
                TensorData::U32(c.columns),
            ));
            state.push(StateTensor::vector(
                &at("counts"),
                TensorData::U32(c.counts),
            ));
        }
        for (prefix, l) in COVISIT_LISTS.into_iter().zip(lists) {
            let at = |part: &str| format!("{prefix}_{part}");
            state.push(StateTensor::vector(
                &at("offsets"),
                TensorData::U64(l.offsets),
            ));
            state.push(StateTensor::vector(&at("items"), TensorData::U32(l.items)));
            state.push(StateTensor::vector(
                &at("scores"),
                TensorData::F32(l.scores),
            ));
        }
        Ok(state)
    }

    fn load(mut state: LearnerState) -> Result<Self, PersistError> {
        let mut parts: CovisitState = state.parse()?;
        let n = parts.ids.len();
        let deferred = &parts.deferred;
        let known = |lists: &std::collections::BTreeMap<u32, Vec<(u32, f32)>>| {
            lists.iter().all(|(&row, list)| {
                (row as usize) < n && list.iter().all(|&(i, _)| (i as usize) < n)
            })
        };
        if !(deferred.open.fits(n)
            && known(&deferred.staged_neighbours)
            && known(&deferred.staged_transitions))
        {
            return Err(PersistError::Invalid(
                "covisitation: the lists or meetings of the epoch do not fit the items".to_owned(),
            ));
        }
        parts.users_of = state.take_u32("users_of")?;
        parts.co_stale = state.take_u32("co_stale")?;
        parts.next_stale = state.take_u32("next_stale")?;
        if [&parts.users_of, &parts.co_stale, &parts.next_stale]
            .iter()
            .any(|v| v.len() != n)
        {
            return Err(PersistError::Invalid(
                "covisitation: per-item counters do not fit the items".to_owned(),
            ));
        }
        for prefix in COVISIT_COUNTS {
            let counts = SparseCounts {
                offsets: state.take_u64(&format!("{prefix}_offsets"))?,
                columns: state.take_u32(&format!("{prefix}_columns"))?,
                counts: state.take_u32(&format!("{prefix}_counts"))?,
            };
            if !counts.fits(n) {
                return Err(PersistError::Invalid(format!(
                    "covisitation: {prefix} counts do not fit {n} items"
                )));
            }
            if prefix == "next" && !counts.row_sums_fit() {
                return Err(PersistError::Invalid(
                    "covisitation: a successor row's counts overflow its total".to_owned(),
                ));
            }
            match prefix {
                "co" => parts.co = counts,
                _ => parts.next = counts,
            }
        }
        for prefix in COVISIT_LISTS {
            let lists = SparseLists {
                offsets: state.take_u64(&format!("{prefix}_offsets"))?,
                items: state.take_u32(&format!("{prefix}_items"))?,
                scores: state.take_f32(&format!("{prefix}_scores"))?,
            };
            if !lists.fits(n) {
                return Err(PersistError::Invalid(format!(
                    "covisitation: {prefix} lists do not fit {n} items"
                )));
            }
            match prefix {
                "neighbours" => parts.neighbours = lists,
                _ => parts.transitions = lists,
            }
        }
        Ok(Covisitation::from_state(parts))
    }
}

impl Persistent for RerankerState {
    const NAME: &'static str = "reranker";
    const FILE: &'static str = "reranker.safetensors";
    const FORMAT: StateFormat = StateFormat::Tensors;

    fn save(mut self) -> Result<LearnerState, PersistError> {
        let weights = std::mem::take(&mut self.weights);
        let mut state = LearnerState::from_json(&self)?;
        for w in weights {
            state.push(StateTensor {
                name: w.name,
                shape: w.shape,
                data: TensorData::F32(w.values),
            });
        }
        Ok(state)
    }

    fn load(mut state: LearnerState) -> Result<Self, PersistError> {
        let mut reranker: RerankerState = state.parse()?;
        let mut tensors = std::mem::take(&mut state.tensors);
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        for t in tensors {
            let TensorData::F32(values) = t.data else {
                return Err(PersistError::Type {
                    name: t.name,
                    expected: "f32",
                });
            };
            reranker.weights.push(NamedTensor {
                name: t.name,
                shape: t.shape,
                values,
            });
        }
        reranker.forget_if_other_inputs();
        Ok(reranker)
    }
}
