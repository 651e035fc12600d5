//! What a snapshot keeps of a learner, declared by the learner itself: named tensors (the
//! bulk, stored as typed arrays) plus a JSON document (everything else). The snapshot code
//! is generic over [`Persistent`]: it writes a learner with tensors as a safetensors file
//! (the JSON as its metadata) and one without as a plain JSON file, and never needs to know
//! what a learner holds.

mod learners;

/// A tensor's values, by element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::U64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl StateTensor {
    /// A one-dimensional tensor.
    pub fn vector(name: &str, data: TensorData) -> Self {
        Self {
            name: name.to_owned(),
            shape: vec![data.len()],
            data,
        }
    }
}

/// How a learner's state is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFormat {
    /// The JSON document is the file.
    Json,
    /// A safetensors file with the JSON document as its `state` metadata.
    Tensors,
}

/// A learner taken apart for a snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearnerState {
    pub tensors: Vec<StateTensor>,
    pub json: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("no tensor {0}")]
    Missing(String),
    #[error("tensor {name}: expected {expected}")]
    Type {
        name: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

impl LearnerState {
    pub fn from_json<T: serde::Serialize>(value: &T) -> Result<Self, PersistError> {
        Ok(Self {
            tensors: Vec::new(),
            json: serde_json::to_string(value)?,
        })
    }

    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, PersistError> {
        Ok(serde_json::from_str(&self.json)?)
    }

    pub fn push(&mut self, tensor: StateTensor) {
        self.tensors.push(tensor);
    }

    /// Takes the tensor `name` out of the state.
    pub fn take(&mut self, name: &str) -> Result<StateTensor, PersistError> {
        let at = self
            .tensors
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| PersistError::Missing(name.to_owned()))?;
        Ok(self.tensors.swap_remove(at))
    }

    pub fn take_f32(&mut self, name: &str) -> Result<Vec<f32>, PersistError> {
        match self.take(name)?.data {
            TensorData::F32(v) => Ok(v),
            _ => Err(type_error(name, "f32")),
        }
    }

    pub fn take_f64(&mut self, name: &str) -> Result<Vec<f64>, PersistError> {
        match self.take(name)?.data {
            TensorData::F64(v) => Ok(v),
            _ => Err(type_error(name, "f64")),
        }
    }

    pub fn take_u32(&mut self, name: &str) -> Result<Vec<u32>, PersistError> {
        match self.take(name)?.data {
            TensorData::U32(v) => Ok(v),
            _ => Err(type_error(name, "u32")),
        }
    }

    pub fn take_u64(&mut self, name: &str) -> Result<Vec<u64>, PersistError> {
        match self.take(name)?.data {
            TensorData::U64(v) => Ok(v),
            _ => Err(type_error(name, "u64")),
        }
    }
}

fn type_error(name: &str, expected: &'static str) -> PersistError {
    PersistError::Type {
        name: name.to_owned(),
        expected,
    }
}

/// A learner a snapshot stores. `load(save(x))` equals `x` (the re-ranker's weights come
/// back in name order, the order a restored one has always held), and equal learners save
/// equal states, so a snapshot is byte-identical for identical histories.
pub trait Persistent: Sized {
    /// The learner's name in a snapshot's manifest.
    const NAME: &'static str;
    /// The one file it is stored in.
    const FILE: &'static str;
    const FORMAT: StateFormat;

    fn save(self) -> Result<LearnerState, PersistError>;
    fn load(state: LearnerState) -> Result<Self, PersistError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_taken_by_name_and_type() {
        let mut state = LearnerState::from_json(&serde_json::json!({"a": 1})).expect("json");
        state.push(StateTensor::vector("x", TensorData::U32(vec![1, 2])));
        state.push(StateTensor::vector("y", TensorData::F32(vec![0.5])));
        assert!(matches!(
            state.take_f32("x"),
            Err(PersistError::Type { .. })
        ));
        assert_eq!(state.take_f32("y").expect("y"), [0.5]);
        assert!(matches!(state.take_u32("y"), Err(PersistError::Missing(_))));
        let value: serde_json::Value = state.parse().expect("parses");
        assert_eq!(value["a"], 1);
    }
}
