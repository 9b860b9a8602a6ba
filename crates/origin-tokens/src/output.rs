//! Output: JSON lines (the default), an aligned table, CSV, and optional spreadsheet files
//! (.xlsx, .ods) alongside.

use std::fs::File;
use std::io::IsTerminal;
use std::path::PathBuf;

use opsline::{Code, Flush, Record, RecordWriter, WithCode};
use rust_xlsxwriter::{Format as CellFormat, Workbook, Worksheet};
use serde::Serialize;
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

    /// Writes one record given as anything that serialises to a JSON object. JSON lines
    /// alone are written straight from it: building a [`Record`] (a map of owned keys and
    /// values) took most of the time of writing a report of tens of thousands of rows.
    pub fn emit_serialize(&mut self, item: &impl Serialize) -> anyhow::Result<()> {
        if self.format == Format::Json && self.sheet.is_none() && self.ods.is_none() {
            // As an I/O error, so that a closed pipe is still seen as one.
            serde_json::to_writer(self.writer.sink(), item).map_err(std::io::Error::from)?;
            return Ok(self.writer.end_record(false)?);
        }
        match serde_json::to_value(item)? {
            Value::Object(map) => self.emit(&Record::from_map(map)),
            other => anyhow::bail!("not a record: {other}"),
        }
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
