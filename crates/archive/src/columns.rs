//! Columns to Parquet and back, for every kind of file: a column is a name,
//! a Parquet type and its values (`None` for a missing one in an optional
//! column). The kinds ([`crate::trades`], [`crate::quotes`],
//! [`crate::candles`]) say which columns they have; this writes them in
//! row groups with the encoding each asks for, and reads them back.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ck_model::Decimal;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{CompressedPage, PageWriteSpec, PageWriter};
use parquet::column::reader::{ColumnReader, get_typed_column_reader};
use parquet::column::writer::{ColumnWriter, get_column_writer, get_typed_column_writer_mut};
use parquet::data_type::{
    ByteArray, ByteArrayType, DataType, FixedLenByteArray, FixedLenByteArrayType, Int32Type,
    Int64Type,
};
use parquet::file::metadata::{KeyValue, RowGroupMetaData};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder, WriterPropertiesPtr};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::{SchemaDescPtr, SchemaDescriptor};

use crate::Error;

/// Rows per row group: a range scan reads whole row groups, and a busy
/// day holds a few million trades.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows turned into columns at a time by a writer's `write`: what a write
/// holds beside its rows.
pub const PIECE_ROWS: usize = 16 * 1024;

/// The largest mantissa a `DECIMAL(18, s)` in an `INT64` holds.
const MAX_MANTISSA_18: i128 = 999_999_999_999_999_999;
/// The largest a `DECIMAL(38, s)` in 16 bytes holds.
const MAX_MANTISSA_38: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

/// How a column is encoded before zstd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enc {
    /// `DELTA_BINARY_PACKED`: times, ids, prices (neighbours are close).
    Delta,
    /// Dictionary with RLE: few distinct values (sizes, sides, intervals).
    Dictionary,
}

/// A column's values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    /// `INT64` (times, ids, counts, decimals up to 18 digits).
    I64(Vec<Option<i64>>),
    /// `INT32`.
    I32(Vec<Option<i32>>),
    /// `BYTE_ARRAY` (strings).
    Bytes(Vec<Option<ByteArray>>),
    /// `FIXED_LEN_BYTE_ARRAY(16)`: decimals of up to 38 digits.
    Wide(Vec<Option<i128>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::I64(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::Bytes(v) => v.len(),
            Values::Wide(v) => v.len(),
        }
    }
}

/// The column type a run of decimals needs: their largest scale, and
/// whether any needs more than 18 digits at it (then the column is 16-byte
/// `DECIMAL(38, s)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecimalShape {
    /// The largest scale seen.
    pub scale: u8,
    /// The most digits before the point seen (digits minus scale).
    magnitude: Option<i32>,
}

impl DecimalShape {
    /// Takes `d` into account.
    pub fn observe(&mut self, d: Decimal) {
        self.scale = self.scale.max(d.scale());
        let digits = i32::try_from(
            d.mantissa()
                .unsigned_abs()
                .checked_ilog10()
                .map_or(0, |l| l + 1),
        )
        .unwrap_or(i32::MAX);
        let magnitude = digits - i32::from(d.scale());
        self.magnitude = Some(self.magnitude.map_or(magnitude, |m| m.max(magnitude)));
    }

    /// Whether the column must be 16-byte `DECIMAL(38, s)`.
    #[must_use]
    pub fn wide(&self) -> bool {
        self.scale > 18 || self.magnitude.unwrap_or(0) + i32::from(self.scale) > 18
    }

    /// Whether a column of this shape and one of `other` are the same
    /// column (one scale, one width): a file begun with one holds the
    /// values of the other.
    #[must_use]
    pub fn same_column(&self, other: &DecimalShape) -> bool {
        self.scale == other.scale && self.wide() == other.wide()
    }
}

/// One column to write.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    /// The logical type, as the schema text says it: `TIMESTAMP(NANOS,true)`,
    /// `DECIMAL(18,2)`, `STRING`, or empty.
    pub(crate) logical: String,
    pub(crate) optional: bool,
    pub(crate) enc: Enc,
    pub(crate) values: Values,
}

impl Column {
    /// Required nanosecond UTC times.
    pub(crate) fn times(name: &'static str, values: impl Iterator<Item = i64>) -> Column {
        Column {
            name,
            logical: "TIMESTAMP(NANOS,true)".into(),
            optional: false,
            enc: Enc::Delta,
            values: Values::I64(values.map(Some).collect()),
        }
    }

    /// Required strings.
    pub(crate) fn strings<'a>(
        name: &'static str,
        enc: Enc,
        values: impl Iterator<Item = &'a str>,
    ) -> Column {
        Column {
            name,
            logical: "STRING".into(),
            optional: false,
            enc,
            values: Values::Bytes(values.map(|s| Some(ByteArray::from(s))).collect()),
        }
    }

    /// Required strings from a few fixed words (sides, intervals): no
    /// copy of each.
    pub(crate) fn words(name: &'static str, values: impl Iterator<Item = &'static str>) -> Column {
        Column {
            name,
            logical: "STRING".into(),
            optional: false,
            enc: Enc::Dictionary,
            values: Values::Bytes(
                values
                    .map(|s| Some(ByteArray::from(bytes::Bytes::from_static(s.as_bytes()))))
                    .collect(),
            ),
        }
    }

    /// Decimals in a column of `shape` (every value must fit it: see
    /// [`DecimalShape::observe`]).
    ///
    /// # Errors
    /// The first value that does not fit (named in the message).
    pub(crate) fn decimals_as(
        name: &'static str,
        optional: bool,
        enc: Enc,
        shape: DecimalShape,
        values: impl ExactSizeIterator<Item = Option<Decimal>>,
    ) -> Result<Column, String> {
        let (scale, wide) = (shape.scale, shape.wide());
        if scale > 38 {
            return Err(format!("{name} with a scale of {scale}"));
        }
        let limit = if wide {
            MAX_MANTISSA_38
        } else {
            MAX_MANTISSA_18
        };
        let mantissa = |d: Decimal| {
            d.rescale(scale)
                .map(Decimal::mantissa)
                .filter(|m| m.abs() <= limit)
                .ok_or_else(|| format!("{name} {d} (scale {scale})"))
        };
        Ok(if wide {
            let mut mantissas = Vec::with_capacity(values.len());
            for v in values {
                mantissas.push(v.map(mantissa).transpose()?);
            }
            Column {
                name,
                logical: format!("DECIMAL(38,{scale})"),
                optional,
                // Delta encoding is for integers; wide decimals use a dictionary.
                enc: Enc::Dictionary,
                values: Values::Wide(mantissas),
            }
        } else {
            let mut mantissas = Vec::with_capacity(values.len());
            for v in values {
                // Within 18 digits, so an `i64`.
                mantissas.push(
                    v.map(mantissa)
                        .transpose()?
                        .and_then(|m| i64::try_from(m).ok()),
                );
            }
            Column {
                name,
                logical: format!("DECIMAL(18,{scale})"),
                optional,
                enc,
                values: Values::I64(mantissas),
            }
        })
    }

    /// A column like this one, with no values.
    fn empty_like(&self) -> Column {
        let values = match &self.values {
            Values::I64(_) => Values::I64(Vec::new()),
            Values::I32(_) => Values::I32(Vec::new()),
            Values::Bytes(_) => Values::Bytes(Vec::new()),
            Values::Wide(_) => Values::Wide(Vec::new()),
        };
        Column {
            name: self.name,
            logical: self.logical.clone(),
            optional: self.optional,
            enc: self.enc,
            values,
        }
    }

    fn schema_line(&self) -> String {
        let repetition = if self.optional {
            "OPTIONAL"
        } else {
            "REQUIRED"
        };
        let physical = match self.values {
            Values::I64(_) => "INT64",
            Values::I32(_) => "INT32",
            Values::Bytes(_) => "BYTE_ARRAY",
            Values::Wide(_) => "FIXED_LEN_BYTE_ARRAY(16)",
        };
        if self.logical.is_empty() {
            format!("{repetition} {physical} {};", self.name)
        } else {
            format!("{repetition} {physical} {} ({});", self.name, self.logical)
        }
    }
}

/// What writing a file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// The file's size.
    pub bytes: u64,
}

/// A file written a batch of rows at a time, in row groups of
/// [`ROW_GROUP_ROWS`].
///
/// Rows are not held until their row group is whole: each column of the
/// group being written has its own encoder, which takes every batch as it
/// comes and keeps only its compressed pages ([`GroupPages`]). When the
/// group ends, the pages are copied into the file. So a writer holds about
/// a row group's compressed bytes (a megabyte or two for a busy day's
/// trades), not its rows.
pub(crate) struct FileWriter {
    path: std::path::PathBuf,
    writer: SerializedFileWriter<File>,
    schema: SchemaDescPtr,
    props: WriterPropertiesPtr,
    /// The types of the columns, from the template.
    template: Vec<Column>,
    /// The row group being written, when one is begun.
    group: Option<Vec<GroupColumn>>,
    /// Rows in it.
    group_rows: usize,
    /// Rows in the row groups written before.
    rows: u64,
}

/// One column's encoder for the row group being written.
struct GroupColumn {
    encoder: ColumnWriter<'static>,
    pages: GroupPages,
}

/// The compressed pages of one column of one row group, until the group
/// ends and they are copied into the file. Shared between the encoder
/// (which owns its page writer) and the [`FileWriter`] (which takes the
/// bytes when the encoder is closed).
#[derive(Clone, Default)]
struct GroupPages(Arc<Mutex<Vec<u8>>>);

impl GroupPages {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut bytes| std::mem::take(&mut *bytes))
            .unwrap_or_default()
    }
}

impl std::io::Write for GroupPages {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("a column's page buffer was poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes pages, as a file's page writer would, into a [`GroupPages`].
struct GroupPageWriter(TrackedWrite<GroupPages>);

impl PageWriter for GroupPageWriter {
    fn write_page(&mut self, page: CompressedPage) -> parquet::errors::Result<PageWriteSpec> {
        SerializedPageWriter::new(&mut self.0).write_page(page)
    }

    fn close(&mut self) -> parquet::errors::Result<()> {
        self.0.flush()?;
        Ok(())
    }
}

impl FileWriter {
    /// Creates `path` for columns like `template` (their names, types and
    /// encodings; their values are not written), with `metadata` as the
    /// file's key-value metadata.
    pub(crate) fn create(
        path: &Path,
        message: &str,
        metadata: &[(&str, &str)],
        template: &[Column],
    ) -> Result<FileWriter, Error> {
        let parquet = |source| Error::Parquet {
            path: path.to_owned(),
            source,
        };
        let lines: Vec<String> = template.iter().map(Column::schema_line).collect();
        let schema = format!("message {message} {{ {} }}", lines.join(" "));
        let schema = Arc::new(parse_message_type(&schema).map_err(parquet)?);
        let mut props: WriterPropertiesBuilder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(parquet)?))
            .set_max_row_group_size(ROW_GROUP_ROWS)
            .set_key_value_metadata(Some(
                metadata
                    .iter()
                    .map(|(k, v)| KeyValue::new((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ));
        for c in template {
            if c.enc == Enc::Delta {
                props = props
                    .set_column_dictionary_enabled(c.name.into(), false)
                    .set_column_encoding(c.name.into(), Encoding::DELTA_BINARY_PACKED);
            }
        }
        let props = Arc::new(props.build());
        let file = File::create(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let writer =
            SerializedFileWriter::new(file, schema.clone(), props.clone()).map_err(parquet)?;
        Ok(FileWriter {
            path: path.to_owned(),
            writer,
            schema: Arc::new(SchemaDescriptor::new(schema)),
            props,
            template: template.iter().map(Column::empty_like).collect(),
            group: None,
            group_rows: 0,
            rows: 0,
        })
    }

    /// Adds rows (`columns` in the template's order, of equal length).
    ///
    /// # Errors
    /// When the file cannot be written, or the columns are not the
    /// template's.
    pub(crate) fn write(&mut self, columns: &[Column]) -> Result<(), Error> {
        let rows = columns.first().map_or(0, |c| c.values.len());
        if columns.len() != self.template.len() {
            return Err(self.general(format!(
                "{} columns, not {}",
                columns.len(),
                self.template.len()
            )));
        }
        for (column, like) in columns.iter().zip(&self.template) {
            if column.values.len() != rows {
                return Err(self.general(format!(
                    "column {} has {} values, not {rows}",
                    column.name,
                    column.values.len()
                )));
            }
            if std::mem::discriminant(&column.values) != std::mem::discriminant(&like.values) {
                return Err(self.general(format!("column {} changed its type", column.name)));
            }
        }
        let mut start = 0;
        while start < rows {
            let take = (rows - start).min(ROW_GROUP_ROWS - self.group_rows);
            self.encode(columns, start..start + take)?;
            start += take;
            if self.group_rows == ROW_GROUP_ROWS {
                self.end_group()?;
            }
        }
        Ok(())
    }

    /// Ends the row group being written (nothing when none is).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(crate) fn end_group(&mut self) -> Result<(), Error> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let parquet = |source| Error::Parquet {
            path: self.path.clone(),
            source,
        };
        let mut out = self.writer.next_row_group().map_err(parquet)?;
        for column in group {
            let closed = column.encoder.close().map_err(parquet)?;
            let pages = bytes::Bytes::from(column.pages.take());
            out.append_column(&pages, closed).map_err(parquet)?;
        }
        out.close().map_err(parquet)?;
        self.rows += self.group_rows as u64;
        self.group_rows = 0;
        Ok(())
    }

    /// Feeds `rows` of `columns` to the encoders of the row group being
    /// written (begun when none is).
    fn encode(&mut self, columns: &[Column], rows: std::ops::Range<usize>) -> Result<(), Error> {
        let parquet = |source| Error::Parquet {
            path: self.path.clone(),
            source,
        };
        let group = match &mut self.group {
            Some(group) => group,
            None => {
                let mut group = Vec::with_capacity(self.template.len());
                for i in 0..self.template.len() {
                    let pages = GroupPages::default();
                    let encoder = get_column_writer(
                        self.schema.column(i),
                        self.props.clone(),
                        Box::new(GroupPageWriter(TrackedWrite::new(pages.clone()))),
                    );
                    group.push(GroupColumn { encoder, pages });
                }
                self.group.insert(group)
            }
        };
        for (column, out) in columns.iter().zip(group.iter_mut()) {
            put_values(&mut out.encoder, column, rows.clone()).map_err(parquet)?;
        }
        self.group_rows += rows.len();
        Ok(())
    }

    fn general(&self, why: String) -> Error {
        Error::Parquet {
            path: self.path.clone(),
            source: parquet::errors::ParquetError::General(why),
        }
    }

    /// Writes what is left as a row group and the footer, and fsyncs the
    /// file.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub(crate) fn finish(mut self) -> Result<Written, Error> {
        if self.group.is_none() && self.rows == 0 {
            // An empty file still has one (empty) row group.
            let empty: Vec<Column> = self.template.clone();
            self.encode(&empty, 0..0)?;
        }
        self.end_group()?;
        let path = self.path.clone();
        let file = self.writer.into_inner().map_err(|source| Error::Parquet {
            path: path.clone(),
            source,
        })?;
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        file.sync_all().map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        Ok(Written {
            rows: self.rows,
            bytes,
        })
    }
}

/// Feeds `rows` of `column` to its encoder.
fn put_values(
    encoder: &mut ColumnWriter<'static>,
    column: &Column,
    rows: std::ops::Range<usize>,
) -> parquet::errors::Result<()> {
    fn put<T: DataType>(
        encoder: &mut ColumnWriter<'static>,
        optional: bool,
        values: &[Option<T::T>],
    ) -> parquet::errors::Result<()>
    where
        T::T: Clone,
    {
        let present: Vec<T::T> = values.iter().flatten().cloned().collect();
        let levels: Vec<i16> = if optional {
            values.iter().map(|v| i16::from(v.is_some())).collect()
        } else {
            Vec::new()
        };
        get_typed_column_writer_mut::<T>(encoder).write_batch(
            &present,
            optional.then_some(&levels[..]),
            None,
        )?;
        Ok(())
    }
    match &column.values {
        Values::I64(v) => put::<Int64Type>(encoder, column.optional, &v[rows]),
        Values::I32(v) => put::<Int32Type>(encoder, column.optional, &v[rows]),
        Values::Bytes(v) => put::<ByteArrayType>(encoder, column.optional, &v[rows]),
        Values::Wide(v) => {
            let wide: Vec<Option<FixedLenByteArray>> = v[rows]
                .iter()
                .map(|m| m.map(|m| FixedLenByteArray::from(m.to_be_bytes().to_vec())))
                .collect();
            put::<FixedLenByteArrayType>(encoder, column.optional, &wide)
        }
    }
}

/// A file read back: its metadata, and each column's values with its
/// decimal scale.
#[derive(Debug)]
pub(crate) struct FileData {
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) columns: Vec<(String, u8, Values)>,
    pub(crate) rows: usize,
}

impl FileData {
    /// The exchange and instrument the file's metadata names.
    pub(crate) fn owner(&self) -> Result<(ck_model::Exchange, ck_model::Instrument), String> {
        let exchange: ck_model::Exchange = self
            .metadata
            .get("candlekeep.exchange")
            .ok_or("no candlekeep.exchange")?
            .parse()
            .map_err(|e| format!("candlekeep.exchange: {e}"))?;
        let instrument = ck_model::Instrument::parse(
            self.metadata
                .get("candlekeep.instrument")
                .ok_or("no candlekeep.instrument")?,
        )
        .map_err(|e| format!("candlekeep.instrument: {e}"))?;
        Ok((exchange, instrument))
    }

    /// The column `name`, or why the file is not what it should be.
    pub(crate) fn column(&self, name: &str) -> Result<(&Values, u8), String> {
        self.columns
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, scale, values)| (values, *scale))
            .ok_or_else(|| format!("no column {name}"))
    }

    /// The column `name` as decimals.
    pub(crate) fn decimals(&self, name: &str) -> Result<Vec<Option<Decimal>>, String> {
        let (values, scale) = self.column(name)?;
        Ok(match values {
            Values::I64(v) => v
                .iter()
                .map(|m| m.map(|m| Decimal::new(i128::from(m), scale)))
                .collect(),
            Values::Wide(v) => v
                .iter()
                .map(|m| m.map(|m| Decimal::new(m, scale)))
                .collect(),
            _ => return Err(format!("{name} is not a decimal column")),
        })
    }

    /// The column `name` as integers.
    pub(crate) fn ints(&self, name: &str) -> Result<Vec<Option<i64>>, String> {
        match self.column(name)?.0 {
            Values::I64(v) => Ok(v.clone()),
            Values::I32(v) => Ok(v.iter().map(|x| x.map(i64::from)).collect()),
            _ => Err(format!("{name} is not an integer column")),
        }
    }

    /// The column `name` as text.
    pub(crate) fn strings(&self, name: &str) -> Result<Vec<Option<String>>, String> {
        match self.column(name)?.0 {
            Values::Bytes(v) => Ok(v
                .iter()
                .map(|b| {
                    b.as_ref()
                        .map(|b| String::from_utf8_lossy(b.data()).into_owned())
                })
                .collect()),
            _ => Err(format!("{name} is not a text column")),
        }
    }
}

/// Which row groups of a file to read: those whose `column` (a time,
/// by which rows are sorted) may hold a value in `[from, to)`, judged by
/// the row group's statistics. A row group without them is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span<'a> {
    pub(crate) column: &'a str,
    pub(crate) from: i64,
    pub(crate) to: i64,
}

impl Span<'_> {
    fn keeps(&self, group: &RowGroupMetaData) -> bool {
        match int_bounds(group, self.column) {
            Some((min, max)) => max >= self.from && min < self.to,
            None => true,
        }
    }
}

/// Which row groups of a file to read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Select<'a> {
    /// Those that may hold a time in the span.
    pub(crate) span: Option<Span<'a>>,
    /// Those whose text `column` may equal `value` (by statistics).
    pub(crate) equal: Option<(&'a str, &'a str)>,
}

impl Select<'_> {
    fn keeps(&self, group: &RowGroupMetaData) -> bool {
        self.span.is_none_or(|s| s.keeps(group))
            && self
                .equal
                .is_none_or(|(column, value)| match text_bounds(group, column) {
                    Some((min, max)) => {
                        min.as_slice() <= value.as_bytes() && value.as_bytes() <= max.as_slice()
                    }
                    None => true,
                })
    }
}

/// The least and greatest value of a text column in a row group.
fn text_bounds(group: &RowGroupMetaData, column: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let chunk = group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == column)?;
    match chunk.statistics()? {
        Statistics::ByteArray(s) => {
            Some((s.min_opt()?.data().to_vec(), s.max_opt()?.data().to_vec()))
        }
        _ => None,
    }
}

/// The least and greatest value of an INT64 column in a row group, from
/// its statistics.
fn int_bounds(group: &RowGroupMetaData, column: &str) -> Option<(i64, i64)> {
    let chunk = group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == column)?;
    match chunk.statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

/// What a file's footer says, without reading its data: how many rows,
/// and the least and greatest value of `column` (an INT64 column with
/// statistics; `None` when the file has no rows).
///
/// # Errors
/// When the file cannot be read or is not Parquet.
pub fn footer(path: &Path, column: &str) -> Result<(u64, Option<(i64, i64)>), Error> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let reader = SerializedFileReader::new(file).map_err(|source| Error::Parquet {
        path: path.to_owned(),
        source,
    })?;
    let meta = reader.metadata();
    let rows = u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
    let mut bounds: Option<(i64, i64)> = None;
    for group in meta.row_groups() {
        if let Some((min, max)) = int_bounds(group, column) {
            bounds = Some(bounds.map_or((min, max), |(a, b)| (a.min(min), b.max(max))));
        }
    }
    Ok((rows, bounds))
}

/// Reads every column of the row groups of a file that `span` keeps (all
/// of them without one).
pub(crate) fn read_file_span(
    path: &Path,
    kind: &'static str,
    span: Option<Span<'_>>,
) -> Result<FileData, Error> {
    read_file_select(path, kind, Select { span, equal: None })
}

/// Reads every column of the row groups of a file that `select` keeps.
pub(crate) fn read_file_select(
    path: &Path,
    kind: &'static str,
    select: Select<'_>,
) -> Result<FileData, Error> {
    let parquet = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let not = |why: String| Error::NotArchive {
        path: path.to_owned(),
        kind,
        why,
    };
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let reader = SerializedFileReader::new(file).map_err(parquet)?;
    let meta = reader.metadata();
    let metadata: BTreeMap<String, String> = meta
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter_map(|e| e.value.clone().map(|v| (e.key.clone(), v)))
                .collect()
        })
        .unwrap_or_default();
    // A file says what it holds; book deltas and snapshots share a schema.
    if let Some(found) = metadata.get("candlekeep.kind")
        && found != kind
    {
        return Err(not(format!("a file of {found}")));
    }
    let schema = meta.file_metadata().schema_descr();
    let mut columns: Vec<(String, u8, Values)> = Vec::new();
    for c in schema.columns() {
        let scale = u8::try_from(c.type_scale().max(0))
            .ok()
            .filter(|s| *s <= 38)
            .ok_or_else(|| not(format!("{} has the scale {}", c.name(), c.type_scale())))?;
        let empty = match c.physical_type() {
            parquet::basic::Type::INT64 => Values::I64(Vec::new()),
            parquet::basic::Type::INT32 => Values::I32(Vec::new()),
            parquet::basic::Type::BYTE_ARRAY => Values::Bytes(Vec::new()),
            parquet::basic::Type::FIXED_LEN_BYTE_ARRAY if c.type_length() == 16 => {
                Values::Wide(Vec::new())
            }
            other => return Err(not(format!("{} is {other}", c.name()))),
        };
        columns.push((c.name().to_owned(), scale, empty));
    }
    let mut rows = 0;
    for g in 0..reader.num_row_groups() {
        if !select.keeps(meta.row_group(g)) {
            continue;
        }
        let group = reader.get_row_group(g).map_err(parquet)?;
        let n = usize::try_from(group.metadata().num_rows()).unwrap_or(0);
        rows += n;
        for (i, (_, _, values)) in columns.iter_mut().enumerate() {
            let optional = schema.column(i).max_def_level() > 0;
            let reader = group.get_column_reader(i).map_err(parquet)?;
            match values {
                Values::I64(v) => {
                    v.extend(read::<Int64Type>(reader, n, optional).map_err(parquet)?)
                }
                Values::I32(v) => {
                    v.extend(read::<Int32Type>(reader, n, optional).map_err(parquet)?)
                }
                Values::Bytes(v) => {
                    v.extend(read::<ByteArrayType>(reader, n, optional).map_err(parquet)?);
                }
                Values::Wide(v) => {
                    for b in read::<FixedLenByteArrayType>(reader, n, optional).map_err(parquet)? {
                        v.push(match b {
                            None => None,
                            Some(b) => {
                                Some(i128::from_be_bytes(b.data().try_into().map_err(|_| {
                                    not("a wide decimal of the wrong size".into())
                                })?))
                            }
                        });
                    }
                }
            }
            if values.len() != rows {
                return Err(not(format!(
                    "row group {g} has columns of different lengths"
                )));
            }
        }
    }
    Ok(FileData {
        metadata,
        columns,
        rows,
    })
}

/// The `n` rows of a column chunk, `None` where an optional value is
/// missing.
fn read<T: DataType>(
    column: ColumnReader,
    n: usize,
    optional: bool,
) -> parquet::errors::Result<Vec<Option<T::T>>> {
    let mut reader = get_typed_column_reader::<T>(column);
    let mut present: Vec<T::T> = Vec::with_capacity(n);
    let mut levels: Vec<i16> = Vec::with_capacity(n);
    let mut read_rows = 0;
    while read_rows < n {
        let (records, _, _) = reader.read_records(
            n - read_rows,
            optional.then_some(&mut levels),
            None,
            &mut present,
        )?;
        if records == 0 {
            break;
        }
        read_rows += records;
    }
    if !optional {
        return Ok(present.into_iter().map(Some).collect());
    }
    let mut values = present.into_iter();
    Ok(levels
        .into_iter()
        .map(|l| if l > 0 { values.next() } else { None })
        .collect())
}

/// A kind's writer of a file a batch at a time: `$writer` over rows of
/// `$row`, with the columns `$shape::columns` makes (a shape has
/// `exchange` and `instrument` fields).
macro_rules! batch_writer {
    ($(#[$doc:meta])* $writer:ident, $shape:ident, $row:ty, $kind:literal) => {
        $(#[$doc])*
        pub struct $writer {
            file: crate::columns::FileWriter,
            shape: $shape,
            path: std::path::PathBuf,
        }

        impl $writer {
            /// Creates `path` for rows of `shape`.
            ///
            /// # Errors
            /// When the file cannot be created.
            pub fn create(path: &std::path::Path, shape: $shape) -> Result<$writer, crate::Error> {
                let template = shape.columns(&[]).map_err(|what| crate::Error::Unrepresentable {
                    path: path.to_owned(),
                    what,
                })?;
                let file = crate::columns::FileWriter::create(
                    path,
                    concat!("candlekeep_", $kind),
                    &[
                        ("candlekeep.kind", $kind),
                        ("candlekeep.exchange", shape.exchange.as_str()),
                        ("candlekeep.instrument", shape.instrument.as_str()),
                    ],
                    &template,
                )?;
                Ok($writer {
                    file,
                    shape,
                    path: path.to_owned(),
                })
            }

            /// Adds `rows`, after those written before.
            ///
            /// # Errors
            /// When the file cannot be written, or a row does not fit the shape.
            pub fn write(&mut self, rows: &[$row]) -> Result<(), crate::Error> {
                let rows: Vec<&$row> = rows.iter().collect();
                self.write_refs(&rows)
            }

            /// Adds `rows` (borrowed, as a sort leaves them), after those
            /// written before. They are turned into columns
            /// [`crate::PIECE_ROWS`] at a time, so a large call holds no
            /// copy of all its rows.
            ///
            /// # Errors
            /// When the file cannot be written, or a row does not fit the
            /// shape. A call of at most [`crate::PIECE_ROWS`] rows that fails
            /// has written none of them; a longer one may have written its
            /// first pieces, so its file is to be discarded.
            pub fn write_refs(&mut self, rows: &[&$row]) -> Result<(), crate::Error> {
                for piece in rows.chunks(crate::PIECE_ROWS) {
                    let columns = self.shape.columns(piece).map_err(|what| {
                        crate::Error::Unrepresentable {
                            path: self.path.clone(),
                            what,
                        }
                    })?;
                    self.file.write(&columns)?;
                }
                Ok(())
            }

            /// Ends the row group: the rows written so far are written
            /// as row groups now, and the next rows start a new one.
            ///
            /// # Errors
            /// When the file cannot be written.
            pub fn end_row_group(&mut self) -> Result<(), crate::Error> {
                self.file.end_group()
            }

            /// Finishes the file and fsyncs it.
            ///
            /// # Errors
            /// When the file cannot be written.
            pub fn finish(self) -> Result<crate::Written, crate::Error> {
                self.file.finish()
            }
        }
    };
}
pub(crate) use batch_writer;
