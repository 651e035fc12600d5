//! Snapshot learners as Parquet tables (what pandas' `read_parquet` opens): one row per item
//! or arm, plain columns, no nesting.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use streamrec_learner::online::{OnlineModels, arm_key};

/// One column's values.
enum Column {
    Text(Vec<ByteArray>),
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
}

fn write_table(path: &Path, schema: &str, columns: Vec<Column>) -> Result<(), ParquetError> {
    let schema = Arc::new(parse_message_type(schema)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .build(),
    );
    let file = File::create(path)
        .map_err(|e| ParquetError::General(format!("{}: {e}", path.display())))?;
    let mut writer = SerializedFileWriter::new(file, schema, props)?;
    let mut group = writer.next_row_group()?;
    let mut columns = columns.into_iter();
    while let Some(mut column) = group.next_column()? {
        let values = columns
            .next()
            .ok_or_else(|| ParquetError::General("fewer columns than the schema".to_owned()))?;
        match (column.untyped(), values) {
            (ColumnWriter::ByteArrayColumnWriter(w), Column::Text(v)) => {
                w.write_batch(&v, None, None).map(drop)?
            }
            (ColumnWriter::DoubleColumnWriter(w), Column::F64(v)) => {
                w.write_batch(&v, None, None).map(drop)?
            }
            (ColumnWriter::FloatColumnWriter(w), Column::F32(v)) => {
                w.write_batch(&v, None, None).map(drop)?
            }
            (ColumnWriter::Int64ColumnWriter(w), Column::I64(v)) => {
                w.write_batch(&v, None, None).map(drop)?
            }
            _ => {
                return Err(ParquetError::General(
                    "column type does not match the schema".to_owned(),
                ));
            }
        }
        column.close()?;
    }
    group.close()?;
    writer.close().map(drop)
}

fn text<'a>(values: impl Iterator<Item = &'a str>) -> Column {
    Column::Text(values.map(ByteArray::from).collect())
}

/// Writes `popularity.parquet`, `embeddings.parquet` (item_id, e0 … e{dim-1}) and
/// `bandit.parquet` (arm_key, item_id, pulls, reward_sum, theta_0 …).
pub fn export(models: &OnlineModels, out: &Path) -> Result<(), ParquetError> {
    let view = models.popularity.view(usize::MAX);
    write_table(
        &out.join("popularity.parquet"),
        "message popularity { REQUIRED BYTE_ARRAY item_id (UTF8); REQUIRED DOUBLE score; }",
        vec![
            text(view.ranked.iter().map(|(id, _)| &**id)),
            Column::F64(view.ranked.iter().map(|(_, s)| *s).collect()),
        ],
    )?;

    let e = &models.embeddings;
    let dim = e.dim();
    let fields: String = (0..dim).map(|j| format!(" REQUIRED FLOAT e{j};")).collect();
    let mut columns = vec![text(e.ids().iter().map(String::as_str))];
    columns.extend((0..dim).map(|j| {
        Column::F32(
            e.matrix()
                .iter()
                .skip(j)
                .step_by(dim.max(1))
                .copied()
                .collect(),
        )
    }));
    write_table(
        &out.join("embeddings.parquet"),
        &format!("message embeddings {{ REQUIRED BYTE_ARRAY item_id (UTF8);{fields} }}"),
        columns,
    )?;

    let names: std::collections::HashMap<u64, &str> = e
        .ids()
        .iter()
        .map(|id| (arm_key(id), id.as_str()))
        .collect();
    let arms: Vec<_> = models.bandit.model().arms().collect();
    let d = models.bandit.dim();
    let thetas: Vec<Vec<f64>> = arms
        .iter()
        .map(|(_, a)| a.theta().iter().copied().collect())
        .collect();
    let theta_fields: String = (0..d)
        .map(|j| format!(" REQUIRED DOUBLE theta_{j};"))
        .collect();
    let mut columns = vec![
        // The u64 key's bits, read back as unsigned through the UINT_64 annotation.
        Column::I64(
            arms.iter()
                .map(|(k, _)| i64::from_ne_bytes(k.to_ne_bytes()))
                .collect(),
        ),
        text(
            arms.iter()
                .map(|(k, _)| names.get(*k).copied().unwrap_or("")),
        ),
        Column::I64(
            arms.iter()
                .map(|(_, a)| i64::try_from(a.pulls).unwrap_or(i64::MAX))
                .collect(),
        ),
        Column::F64(arms.iter().map(|(_, a)| a.reward_sum).collect()),
    ];
    columns.extend((0..d).map(|j| Column::F64(thetas.iter().map(|t| t[j]).collect())));
    write_table(
        &out.join("bandit.parquet"),
        &format!(
            "message bandit {{ REQUIRED INT64 arm_key (INTEGER(64,false)); REQUIRED BYTE_ARRAY item_id (UTF8); REQUIRED INT64 pulls; REQUIRED DOUBLE reward_sum;{theta_fields} }}"
        ),
        columns,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    use streamrec_learner::online::OnlineConfig;
    use streamrec_proto::{Event, EventKind};

    #[test]
    fn tables_read_back_with_their_rows_and_values() {
        let mut models = OnlineModels::new(OnlineConfig::default());
        for i in 0..50u64 {
            let event = Event {
                event_id: format!("e{i}"),
                session_id: format!("s{}", i % 4),
                user_id: None,
                kind: EventKind::View,
                item_id: format!("item{}", i % 7),
                ts: 1_700_000_000_000,
                rec_id: None,
                position: None,
                value: None,
                context: None,
                details: Default::default(),
            };
            models.apply_event(i + 1, &event);
        }
        let dir = tempfile::tempdir().expect("dir");
        export(&models, dir.path()).expect("written");
        let rows = |name: &str| {
            let file = File::open(dir.path().join(name)).expect("exists");
            let reader = SerializedFileReader::new(file).expect("a parquet file");
            (
                reader.metadata().file_metadata().num_rows(),
                reader
                    .metadata()
                    .file_metadata()
                    .schema_descr()
                    .num_columns(),
            )
        };
        assert_eq!(rows("popularity.parquet"), (7, 2));
        assert_eq!(rows("embeddings.parquet"), (7, 1 + 64));
        assert_eq!(rows("bandit.parquet").0, 0);
        let reader = SerializedFileReader::new(
            File::open(dir.path().join("popularity.parquet")).expect("exists"),
        )
        .expect("parquet");
        let first = reader
            .get_row_iter(None)
            .expect("rows")
            .next()
            .expect("a row")
            .expect("readable");
        assert_eq!(
            first.get_string(0).expect("item_id"),
            &*models.popularity.view(1).ranked[0].0
        );
    }
}
