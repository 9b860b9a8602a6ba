//! Output: JSON lines (the default), an aligned table, CSV, and optional spreadsheet files
//! (.xlsx, .ods) alongside.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use opsline::{Code, Flush, Record, RecordWriter, WithCode};
use rust_xlsxwriter::{Format as CellFormat, Workbook, Worksheet};
use serde_json::Value;

use crate::ods::Cell;

/// How records are written to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line
    Json,
    /// Aligned columns, for a terminal
    Table,
    /// Comma-separated values with a header line
    Csv,
}

impl Format {
    /// `--format`, or table on a terminal and JSON otherwise.
    pub fn choose(given: Option<Format>) -> Format {
        given.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() { Format::Table } else { Format::Json }
        })
    }
}

/// Writes one subcommand's records.
#[derive(Debug)]
pub struct Output {
    format: Format,
    columns: &'static [&'static str],
    writer: RecordWriter<File>,
    header_done: bool,
    table: Vec<Vec<String>>,
    sheet: Option<Sheet>,
    ods: Option<(PathBuf, Vec<Vec<Cell>>)>,
}

/// The spreadsheet being filled: its path, the worksheet and the next row.
struct Sheet(PathBuf, Worksheet, u32);

impl std::fmt::Debug for Sheet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sheet").field("path", &self.0).field("rows", &self.2).finish()
    }
}

impl Output {
    /// An output in `format`; `columns` are the fields shown in table, CSV and spreadsheet
    /// form (JSON carries every field).
    pub fn new(
        format: Format,
        columns: &'static [&'static str],
        flush: Flush,
        sheets: Spreadsheets,
        tool: &'static str,
    ) -> anyhow::Result<Self> {
        let writer = RecordWriter::stdout(tool, flush)
            .code(Code::IoErr, "cannot write to standard output")?;
        let sheet = match sheets.xlsx {
            Some(path) => Some(Sheet(path, header_sheet(columns)?, 1)),
            None => None,
        };
        let header = columns.iter().map(|c| Cell::Text((*c).to_owned())).collect();
        let ods = sheets.ods.map(|path| (path, vec![header]));
        Ok(Output { format, columns, writer, header_done: false, table: Vec::new(), sheet, ods })
    }

    /// Writes one record.
    pub fn emit(&mut self, record: &Record) -> anyhow::Result<()> {
        if let Some(Sheet(_, sheet, row)) = self.sheet.as_mut() {
            write_sheet_row(sheet, *row, self.columns, record)?;
            *row += 1;
        }
        if let Some((_, rows)) = self.ods.as_mut() {
            rows.push(self.columns.iter().map(|c| ods_cell(lookup(record, c))).collect());
        }
        match self.format {
            Format::Json => self.writer.write(record)?,
            Format::Csv => {
                if !self.header_done {
                    self.header_done = true;
                    let header: Vec<String> = self.columns.iter().map(|c| csv_field(c)).collect();
                    self.writer.write_line(header.join(",").as_bytes())?;
                }
                let fields: Vec<String> =
                    cells(self.columns, record).iter().map(|c| csv_field(c)).collect();
                self.writer.write_line(fields.join(",").as_bytes())?;
            }
            Format::Table => self.table.push(cells(self.columns, record)),
        }
        Ok(())
    }

    /// Writes one flat record given as its fields in order. JSON lines alone are written
    /// straight from them: building a [`Record`] (a map of owned keys and values) and having
    /// serde_json escape every key took most of the time of writing a report of tens of
    /// thousands of rows.
    pub fn emit_fields(&mut self, fields: &[(&'static str, Field<'_>)]) -> anyhow::Result<()> {
        if self.format == Format::Json && self.sheet.is_none() && self.ods.is_none() {
            write_fields(self.writer.sink(), fields)?;
            return Ok(self.writer.end_record(false)?);
        }
        let map = fields.iter().map(|(key, value)| ((*key).to_owned(), value.to_value()));
        self.emit(&Record::from_map(map.collect()))
    }

    /// Writes the table and the spreadsheet, flushes, and gives the exit status.
    pub fn finish(mut self) -> anyhow::Result<Code> {
        if self.format == Format::Table {
            let header: Vec<String> = self.columns.iter().map(|c| (*c).to_owned()).collect();
            let rows = std::iter::once(&header).chain(self.table.iter());
            let widths: Vec<usize> = (0..self.columns.len())
                .map(|i| rows.clone().map(|r| r[i].chars().count()).max().unwrap_or(0))
                .collect();
            for row in rows {
                let line: Vec<String> =
                    row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
                self.writer.write_line(line.join("  ").trim_end().as_bytes())?;
            }
        }
        if let Some(Sheet(path, sheet, _)) = self.sheet.take() {
            let mut workbook = Workbook::new();
            workbook.push_worksheet(sheet);
            workbook
                .save(&path)
                .with_code(Code::IoErr, || format!("cannot write {}", path.display()))?;
        }
        if let Some((path, rows)) = self.ods.take() {
            crate::ods::write(&path, crate::TOOL, &rows)
                .with_code(Code::IoErr, || format!("cannot write {}", path.display()))?;
        }
        Ok(self.writer.finish()?)
    }
}

/// A field of a flat record.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    /// A string.
    Text(&'a str),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Real(f64),
    /// A string or null.
    Maybe(Option<&'a str>),
}

impl Field<'_> {
    fn to_value(self) -> Value {
        match self {
            Field::Text(text) | Field::Maybe(Some(text)) => Value::from(text),
            Field::Int(n) => Value::from(n),
            Field::Real(x) => Value::from(x),
            Field::Maybe(None) => Value::Null,
        }
    }
}

/// A JSON object of `fields`, as serde_json writes it. Keys are written as they are: they are
/// plain names chosen in this crate, never anything read.
fn write_fields(out: &mut impl Write, fields: &[(&'static str, Field<'_>)]) -> io::Result<()> {
    let mut separator = b'{';
    for (key, value) in fields {
        out.write_all(&[separator, b'"'])?;
        out.write_all(key.as_bytes())?;
        out.write_all(b"\":")?;
        match *value {
            Field::Text(text) | Field::Maybe(Some(text)) => write_str(out, text)?,
            // As I/O errors, so that a closed pipe is still seen as one.
            Field::Int(n) => serde_json::to_writer(&mut *out, &n).map_err(io::Error::from)?,
            Field::Real(x) => serde_json::to_writer(&mut *out, &x).map_err(io::Error::from)?,
            Field::Maybe(None) => out.write_all(b"null")?,
        }
        separator = b',';
    }
    out.write_all(if fields.is_empty() { b"{}" } else { b"}" })
}

/// A JSON string: as it is between quotes when nothing in it needs escaping (the times and
/// names of nearly every row), else escaped by serde_json.
fn write_str(out: &mut impl Write, text: &str) -> io::Result<()> {
    if text.bytes().all(|b| b >= b' ' && b != b'"' && b != b'\\') {
        out.write_all(b"\"")?;
        out.write_all(text.as_bytes())?;
        return out.write_all(b"\"");
    }
    serde_json::to_writer(out, text).map_err(io::Error::from)
}

/// The spreadsheet files to write besides standard output.
#[derive(Debug, Clone, Default)]
pub struct Spreadsheets {
    /// `--xlsx`.
    pub xlsx: Option<PathBuf>,
    /// `--ods`.
    pub ods: Option<PathBuf>,
}

fn ods_cell(value: Option<&Value>) -> Cell {
    match value {
        Some(Value::Number(n)) => Cell::Number(n.as_f64().unwrap_or_default()),
        Some(Value::Null) | None => Cell::Empty,
        Some(value) => Cell::Text(text(value)),
    }
}

fn header_sheet(columns: &[&str]) -> anyhow::Result<Worksheet> {
    let mut sheet = Worksheet::new();
    let bold = CellFormat::new().set_bold();
    for (i, column) in columns.iter().enumerate() {
        sheet.write_string_with_format(0, col(i), *column, &bold)?;
    }
    Ok(sheet)
}

fn col(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

fn write_sheet_row(
    sheet: &mut Worksheet,
    row: u32,
    columns: &[&str],
    record: &Record,
) -> anyhow::Result<()> {
    for (i, column) in columns.iter().enumerate() {
        match lookup(record, column) {
            Some(Value::Number(n)) => {
                sheet.write_number(row, col(i), n.as_f64().unwrap_or_default())?;
            }
            Some(Value::Null) | None => {}
            Some(value) => {
                sheet.write_string(row, col(i), text(value))?;
            }
        }
    }
    Ok(())
}

/// A field by dotted name (`pc.name`).
fn lookup<'a>(record: &'a Record, column: &str) -> Option<&'a Value> {
    let mut parts = column.split('.');
    let mut value = record.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

fn cells(columns: &[&str], record: &Record) -> Vec<String> {
    columns.iter().map(|c| lookup(record, c).map(text).unwrap_or_default()).collect()
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_written_as_serde_json_writes_their_record() {
        let fields = [
            ("kind", Field::Text("report")),
            ("user", Field::Text("a\"b\\c\u{1}é \u{7f}")),
            ("zero", Field::Int(0)),
            ("big", Field::Int(i64::MAX)),
            ("small", Field::Int(i64::MIN)),
            ("negative", Field::Int(-42)),
            ("hours", Field::Real(8.05)),
            ("whole", Field::Real(3.0)),
            ("at", Field::Maybe(Some("2026-01-05T09:38:01+00:00"))),
            ("never", Field::Maybe(None)),
        ];
        let mut written = Vec::new();
        write_fields(&mut written, &fields).unwrap();
        let map = fields.iter().map(|(key, value)| ((*key).to_owned(), value.to_value()));
        let record = Record::from_map(map.collect());
        assert_eq!(
            String::from_utf8(written).unwrap(),
            serde_json::to_string(record.as_map()).unwrap()
        );
    }
}
