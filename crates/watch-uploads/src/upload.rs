//! The upload record, written straight into the output buffer: the same bytes an
//! `opsline::Record` gives, without building a JSON object for every upload on the path from
//! the writer's close to the line on standard output.

use std::io::{self, Write};

use opsline::RecordWriter;

/// One finished upload, as reported.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// The file (UTF-8).
    pub path: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, RFC 3339 (empty when unknown).
    pub mtime: &'a str,
    /// The `user` field, already JSON (`null` for an unknown owner).
    pub user: &'a str,
    /// How it was found: `close_write`, `moved_to`, `scan` or `poll`.
    pub via: &'static str,
}

impl Upload<'_> {
    /// Writes `{"kind":"upload","ts":…,"path":…,"size":…,"mtime":…,"user":…,"via":…}` as one
    /// record (flushed as the writer is told).
    pub fn write<W: Write>(&self, out: &mut RecordWriter<W>) -> io::Result<()> {
        let sink = out.sink();
        sink.write_all(br#"{"kind":"upload","ts":"#)?;
        string(sink, &opsline::time::now_rfc3339())?;
        sink.write_all(br#","path":"#)?;
        string(sink, self.path)?;
        write!(sink, r#","size":{},"mtime":"#, self.size)?;
        string(sink, self.mtime)?;
        sink.write_all(br#","user":"#)?;
        sink.write_all(self.user.as_bytes())?;
        sink.write_all(br#","via":"#)?;
        string(sink, self.via)?;
        sink.write_all(b"}")?;
        out.end_record(false)
    }
}

/// A JSON string, escaped as serde_json does everywhere else.
fn string(sink: &mut impl Write, text: &str) -> io::Result<()> {
    serde_json::to_writer(sink, text).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsline::{Flush, Record};
    use serde_json::json;

    /// The line with its `ts` value blanked (the two records are stamped apart).
    fn without_ts(line: &str) -> String {
        let start = line.find(r#""ts":""#).expect("a ts field") + r#""ts":""#.len();
        let end = start + line[start..].find('"').expect("a closing quote");
        format!("{}{}", &line[..start], &line[end..])
    }

    #[test]
    fn the_same_bytes_as_an_opsline_record() {
        let path = "/srv/up/a \"b\"\n\u{e9}\\ \u{1}.mp4";
        let user = json!({"login": "ann", "name": "Ann \"A\"", "email": "ann@x"});
        let mut expected = Record::new("upload");
        expected.set_path(std::path::Path::new(path)).unwrap();
        expected.insert("size", 42);
        expected.insert("mtime", "2026-11-23T10:00:00.000+00:00");
        expected.insert("user", user.clone());
        expected.insert("via", "moved_to");
        let user = user.to_string();
        let upload = Upload {
            path,
            size: 42,
            mtime: "2026-11-23T10:00:00.000+00:00",
            user: &user,
            via: "moved_to",
        };

        let mut bytes = Vec::new();
        let mut out = RecordWriter::new(&mut bytes, "watch-uploads", Flush::EachRecord);
        upload.write(&mut out).unwrap();
        out.write(&expected).unwrap();
        drop(out);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(without_ts(lines[0]), without_ts(lines[1]));
    }
}
