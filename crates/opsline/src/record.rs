//! The record: one JSON object per line, the unit every tool reads and writes.
//!
//! A tool keeps every field it does not own, adds its results under its own key, and updates
//! `kind`, `ts` and `path`. A record that carries an `error` is passed on untouched.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Map, Value};

/// The field names every record may carry.
pub mod field {
    /// What the last tool made of the record.
    pub const KIND: &str = "kind";
    /// When the last tool made it, RFC 3339 with offset.
    pub const TS: &str = "ts";
    /// The file the next tool should act on.
    pub const PATH: &str = "path";
    /// Set by the tool that failed on the record: `{"tool": …, "message": …}`.
    pub const ERROR: &str = "error";
}

/// One record: a JSON object whose field order is kept.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record(Map<String, Value>);

impl Record {
    /// A new record of `kind`, stamped with the current time.
    pub fn new(kind: &str) -> Self {
        let mut record = Record(Map::new());
        record.set_kind(kind);
        record
    }

    /// Wraps a parsed JSON object as is.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Record(map)
    }

    /// The fields, in order.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The fields, for changes the helpers below do not cover.
    pub fn as_map_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.0
    }

    /// Consumes the record into its JSON object.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// A top-level field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The value at a dotted field path such as `user.email`.
    pub fn get_field(&self, path: &FieldPath) -> Option<&Value> {
        let (first, rest) = path.parts.split_first()?;
        rest.iter().try_fold(self.0.get(first)?, |value, part| value.get(part))
    }

    /// Sets a top-level field, keeping its place if it already exists.
    pub fn insert(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_owned(), value.into());
    }

    /// Sets the value at a dotted field path, creating intermediate objects (and replacing
    /// non-objects in the way).
    pub fn set_field(&mut self, path: &FieldPath, value: impl Into<Value>) {
        let (last, parents) = path.parts.split_last().expect("a field path has a part");
        let mut map = &mut self.0;
        for part in parents {
            let slot = map.entry(part.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            map = slot.as_object_mut().expect("made an object above");
        }
        map.insert(last.clone(), value.into());
    }

    /// The record's kind, if it has one.
    pub fn kind(&self) -> Option<&str> {
        self.0.get(field::KIND).and_then(Value::as_str)
    }

    /// Sets `kind` and stamps `ts` with the current time: the record now says what this tool
    /// made of it, and when.
    pub fn set_kind(&mut self, kind: &str) {
        self.insert(field::KIND, kind);
        self.insert(field::TS, crate::time::now_rfc3339());
    }

    /// The path the next tool should act on, read from `field` (usually `path`).
    ///
    /// `None` when the record has no such field; an error when the field is not a string.
    pub fn input_path(&self, field: &FieldPath) -> Option<Result<PathBuf, String>> {
        self.get_field(field).map(|value| match value {
            Value::String(s) if !s.is_empty() => Ok(PathBuf::from(s)),
            other => Err(format!("field \"{field}\" is not a path: {other}")),
        })
    }

    /// Sets `path`. A path that is not valid UTF-8 cannot travel in JSON: the error names it
    /// lossily and the caller should turn the record into an error record.
    pub fn set_path(&mut self, path: &Path) -> Result<(), NonUtf8Path> {
        let text = path_to_str(path)?;
        self.insert(field::PATH, text);
        Ok(())
    }

    /// True when some tool failed on this record.
    pub fn has_error(&self) -> bool {
        self.0.get(field::ERROR).is_some_and(|e| !e.is_null())
    }

    /// The tool named in the record's error, if any.
    pub fn error_tool(&self) -> Option<&str> {
        self.0.get(field::ERROR)?.get("tool")?.as_str()
    }

    /// Marks the record as failed by `tool`. Any earlier error is kept under `error.previous`.
    pub fn set_error(&mut self, tool: &str, message: impl fmt::Display) {
        let mut error = Map::new();
        error.insert("tool".into(), tool.into());
        error.insert("message".into(), message.to_string().into());
        if let Some(previous) = self.0.remove(field::ERROR).filter(|v| !v.is_null()) {
            error.insert("previous".into(), previous);
        }
        self.0.insert(field::ERROR.into(), Value::Object(error));
        if !self.0.contains_key(field::TS) {
            self.insert(field::TS, crate::time::now_rfc3339());
        }
    }

    /// A new error record of `kind` for a failure that has no input record to ride on.
    pub fn error(kind: &str, tool: &str, message: impl fmt::Display) -> Self {
        let mut record = Record::new(kind);
        record.set_error(tool, message);
        record
    }

    /// True when a tool that acts on files should pass this record on untouched: it carries an
    /// error, or it has no path in `field`.
    pub fn passes_through(&self, field: &FieldPath) -> bool {
        self.has_error() || self.get_field(field).is_none()
    }
}

impl From<Map<String, Value>> for Record {
    fn from(map: Map<String, Value>) -> Self {
        Record(map)
    }
}

impl serde::Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A path that is not valid UTF-8, named lossily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonUtf8Path(pub String);

impl fmt::Display for NonUtf8Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path is not valid UTF-8 and cannot be passed on in JSON: {}", self.0)
    }
}

impl std::error::Error for NonUtf8Path {}

/// The path as UTF-8 text, or an error naming it lossily.
pub fn path_to_str(path: &Path) -> Result<&str, NonUtf8Path> {
    path.to_str().ok_or_else(|| NonUtf8Path(path.to_string_lossy().into_owned()))
}

/// A dotted field name such as `path` or `user.email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    parts: Vec<String>,
    text: String,
}

impl FieldPath {
    /// The parts between the dots.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }
}

impl Default for FieldPath {
    fn default() -> Self {
        FieldPath { parts: vec![field::PATH.to_owned()], text: field::PATH.to_owned() }
    }
}

impl FromStr for FieldPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<String> = s.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!(
                "\"{s}\" is not a field name (use names joined by dots: user.email)"
            ));
        }
        Ok(FieldPath { parts, text: s.to_owned() })
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Record {
        Record::from_map(value.as_object().expect("an object").clone())
    }

    #[test]
    fn dotted_fields_are_read_and_written() {
        let mut r = record(json!({"user": {"email": "a@b"}, "n": 1}));
        let email: FieldPath = "user.email".parse().unwrap();
        assert_eq!(r.get_field(&email), Some(&json!("a@b")));
        r.set_field(&"video.metadata.width".parse().unwrap(), 320);
        assert_eq!(r.get("video"), Some(&json!({"metadata": {"width": 320}})));
        r.set_field(&"n.x".parse().unwrap(), true);
        assert_eq!(r.get("n"), Some(&json!({"x": true})));
    }

    #[test]
    fn empty_field_parts_are_refused() {
        assert!("a..b".parse::<FieldPath>().is_err());
        assert!("".parse::<FieldPath>().is_err());
    }

    #[test]
    fn set_kind_keeps_field_order_and_stamps_time() {
        let mut r = record(json!({"kind": "upload", "ts": "old", "path": "/x", "extra": 1}));
        r.set_kind("video");
        let keys: Vec<&String> = r.as_map().keys().collect();
        assert_eq!(keys, ["kind", "ts", "path", "extra"]);
        assert_eq!(r.kind(), Some("video"));
        let ts = r.get("ts").and_then(Value::as_str).unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    }

    #[test]
    fn errors_keep_the_earlier_error() {
        let mut r = Record::error("upload", "watch-uploads", "first");
        r.set_error("notify", "second");
        assert_eq!(r.error_tool(), Some("notify"));
        assert_eq!(r.get("error").unwrap()["previous"]["message"], json!("first"));
        assert!(r.passes_through(&FieldPath::default()));
    }

    #[test]
    fn input_path_rejects_non_strings() {
        let r = record(json!({"path": 3}));
        assert!(r.input_path(&FieldPath::default()).unwrap().is_err());
        let r = record(json!({"other": "/x"}));
        assert!(r.input_path(&FieldPath::default()).is_none());
        assert!(r.passes_through(&FieldPath::default()));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_paths_are_named_lossily() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(OsStr::from_bytes(b"/up/caf\xe9.mp4"));
        let err = Record::new("upload").set_path(path).unwrap_err();
        assert_eq!(err.0, "/up/caf\u{fffd}.mp4");
    }
}
