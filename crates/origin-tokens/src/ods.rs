//! A one-sheet OpenDocument spreadsheet (`--ods`): a zip holding the `mimetype` entry first and
//! uncompressed, a manifest, and `content.xml` with one table row per record.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// Nothing.
    Empty,
}

const MIMETYPE: &str = "application/vnd.oasis.opendocument.spreadsheet";

const MANIFEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">
 <manifest:file-entry manifest:full-path="/" manifest:version="1.2" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>
 <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>
"#;

/// Writes `rows` (the first one the header) as a sheet named `name`.
pub fn write(path: &Path, name: &str, rows: &[Vec<Cell>]) -> anyhow::Result<()> {
    let mut zip = ZipWriter::new(File::create(path)?);
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    zip.start_file("mimetype", stored)?;
    zip.write_all(MIMETYPE.as_bytes())?;
    zip.start_file("META-INF/manifest.xml", stored)?;
    zip.write_all(MANIFEST.as_bytes())?;
    zip.start_file("content.xml", stored)?;
    zip.write_all(content(name, rows).as_bytes())?;
    zip.finish()?.sync_all()?;
    Ok(())
}

fn content(name: &str, rows: &[Vec<Cell>]) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>"#,
    );
    let _ = write!(xml, r#"<table:table table:name="{}">"#, escape(name));
    for row in rows {
        xml.push_str("<table:table-row>");
        for cell in row {
            match cell {
                Cell::Text(text) => {
                    let text = escape(text);
                    let _ = write!(
                        xml,
                        r#"<table:table-cell office:value-type="string"><text:p>{text}</text:p></table:table-cell>"#
                    );
                }
                Cell::Number(n) => {
                    let _ = write!(
                        xml,
                        r#"<table:table-cell office:value-type="float" office:value="{n}"><text:p>{n}</text:p></table:table-cell>"#
                    );
                }
                Cell::Empty => xml.push_str("<table:table-cell/>"),
            }
        }
        xml.push_str("</table:table-row>");
    }
    xml.push_str("</table:table></office:spreadsheet></office:body></office:document-content>\n");
    xml
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_typed() {
        let xml =
            content("s<1>", &[vec![Cell::Text("a & b".into()), Cell::Number(1.5), Cell::Empty]]);
        assert!(xml.contains(r#"table:name="s&lt;1&gt;""#));
        assert!(xml.contains("<text:p>a &amp; b</text:p>"));
        assert!(xml.contains(r#"office:value="1.5""#));
    }
}
