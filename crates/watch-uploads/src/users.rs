//! Who uploaded a file: the users file (JSON or CSV, as the old static user list) looked up by
//! the file owner's login, by a path component under the watched root, or by the SFTP
//! session user from the server log.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Component, Path};
use std::str::FromStr;

use opsline::{Code, WithCode};
use serde_json::{Map, Value};

/// How the uploader is found when the SFTP log does not name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerFrom {
    /// The file owner's login from the passwd database.
    Uid,
    /// The N-th component (from 1) of the path under the watched root.
    Path(usize),
}

impl FromStr for OwnerFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "uid" {
            return Ok(OwnerFrom::Uid);
        }
        s.strip_prefix("path:")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .map(OwnerFrom::Path)
            .ok_or_else(|| format!("\"{s}\" is neither \"uid\" nor \"path:N\" (N from 1)"))
    }
}

/// The users file: login → the user's fields, as given.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_login: HashMap<String, Map<String, Value>>,
}

impl Users {
    /// Reads a users file: a JSON array of objects, a JSON object keyed by login, or CSV with
    /// a header line. Every entry needs `login`.
    pub fn load(path: &Path) -> anyhow::Result<Users> {
        let text = fs::read_to_string(path)
            .with_code(Code::NoInput, || format!("cannot read users file {}", path.display()))?;
        let entries = if text.trim_start().starts_with(['[', '{']) {
            parse_json(&text)
        } else {
            parse_csv(&text)
        }
        .map_err(|e| {
            opsline::exit::err(Code::Config, format!("users file {}: {e}", path.display()))
        })?;
        let mut by_login = HashMap::new();
        for entry in entries {
            let login = match entry.get("login") {
                Some(Value::String(login)) if !login.is_empty() => login.clone(),
                _ => {
                    return Err(opsline::exit::err(
                        Code::Config,
                        format!(
                            "users file {}: an entry has no \"login\": {}",
                            path.display(),
                            Value::Object(entry)
                        ),
                    ));
                }
            };
            by_login.insert(login, entry);
        }
        Ok(Users { by_login })
    }

    /// Every login and its entry.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Map<String, Value>)> {
        self.by_login.iter()
    }

    /// The entry for `login`.
    pub fn get(&self, login: &str) -> Option<&Map<String, Value>> {
        self.by_login.get(login)
    }
}

fn parse_json(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    match serde_json::from_str::<Value>(text).map_err(|e| e.to_string())? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => Ok(map),
                other => Err(format!("expected objects, found {other}")),
            })
            .collect(),
        Value::Object(map) => map
            .into_iter()
            .map(|(login, item)| match item {
                Value::Object(mut fields) => {
                    fields.entry("login").or_insert(Value::String(login));
                    Ok(fields)
                }
                other => Err(format!("expected an object for {login}, found {other}")),
            })
            .collect(),
        other => Err(format!("expected an array or an object, found {other}")),
    }
}

fn parse_csv(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let header = csv_fields(lines.next().ok_or("the file is empty")?);
    lines
        .enumerate()
        .map(|(n, line)| {
            let fields = csv_fields(line);
            if fields.len() > header.len() {
                return Err(format!("line {} has more fields than the header", n + 2));
            }
            Ok(header
                .iter()
                .zip(fields)
                .filter(|(_, value)| !value.is_empty())
                .map(|(key, value)| (key.trim().to_owned(), Value::String(value)))
                .collect())
        })
        .collect()
}

/// One CSV line: comma-separated, fields optionally in double quotes with `""` for a quote.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields.into_iter().map(|f| f.trim().to_owned()).collect()
}

/// Maps uploads to users and warns once per unknown owner.
#[derive(Debug)]
pub struct Owners {
    users: Option<Users>,
    from: OwnerFrom,
    logins: HashMap<u32, Option<String>>,
    rendered: HashMap<String, String>,
    last_owner: Option<(u32, String)>,
    warned: HashSet<String>,
}

impl Owners {
    /// Looks users up in `users` (if given) by `from`.
    pub fn new(users: Option<Users>, from: OwnerFrom) -> Self {
        Owners {
            users,
            from,
            logins: HashMap::new(),
            rendered: HashMap::new(),
            last_owner: None,
            warned: HashSet::new(),
        }
    }

    /// [`Owners::user`] as JSON text, rendered once per login: a report copies no entry, and
    /// an upload by the same owner as the last one (by uid) costs one comparison.
    pub fn user_json(
        &mut self,
        root: &Path,
        path: &Path,
        uid: u32,
        sftp_login: Option<&str>,
    ) -> &str {
        if sftp_login.is_none() && self.from == OwnerFrom::Uid {
            if self.last_owner.as_ref().is_none_or(|(last, _)| *last != uid) {
                let json = self.rendered_user(root, path, uid, None).to_owned();
                self.last_owner = Some((uid, json));
            }
            return self.last_owner.as_ref().map_or("null", |(_, json)| json);
        }
        self.rendered_user(root, path, uid, sftp_login)
    }

    fn rendered_user(
        &mut self,
        root: &Path,
        path: &Path,
        uid: u32,
        sftp_login: Option<&str>,
    ) -> &str {
        let login = self.login(root, path, uid, sftp_login);
        if let Some(login) = &login
            && self.rendered.contains_key(login)
        {
            return &self.rendered[login];
        }
        let user = self.entry(login.clone(), path, uid);
        match login {
            Some(login) if !user.is_null() => {
                self.rendered.entry(login).or_insert(user.to_string())
            }
            _ => "null",
        }
    }

    /// The `user` field for a file under `root` owned by `uid`; `sftp_login` (from the server
    /// log) wins. `null` (with a warning) when the owner is unknown.
    pub fn user(&mut self, root: &Path, path: &Path, uid: u32, sftp_login: Option<&str>) -> Value {
        let login = self.login(root, path, uid, sftp_login);
        self.entry(login, path, uid)
    }

    /// The uploader's login: the SFTP log's, else by owner uid or path component.
    fn login(
        &mut self,
        root: &Path,
        path: &Path,
        uid: u32,
        sftp_login: Option<&str>,
    ) -> Option<String> {
        match sftp_login {
            Some(login) => Some(login.to_owned()),
            None => match self.from {
                OwnerFrom::Uid => self.login_of(uid),
                OwnerFrom::Path(n) => component(root, path, n),
            },
        }
    }

    /// The users file's entry for `login` (or just the login without a users file); `null`
    /// with a warning once per unknown owner.
    fn entry(&mut self, login: Option<String>, path: &Path, uid: u32) -> Value {
        let Some(login) = login else {
            self.warn_once(format!("uid {uid}"), || {
                format!("no user for {}: uid {uid} has no passwd entry", path.display())
            });
            return Value::Null;
        };
        match &self.users {
            None => Value::Object(Map::from_iter([("login".to_owned(), Value::String(login))])),
            Some(users) => match users.get(&login) {
                Some(entry) => Value::Object(entry.clone()),
                None => {
                    self.warn_once(login.clone(), || {
                        format!(
                            "no user for {}: \"{login}\" is not in the users file",
                            path.display()
                        )
                    });
                    Value::Null
                }
            },
        }
    }

    fn login_of(&mut self, uid: u32) -> Option<String> {
        self.logins
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid).and_then(|u| u.name().to_str().map(str::to_owned))
            })
            .clone()
    }

    fn warn_once(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.warned.insert(key) {
            tracing::warn!(
                "{} (further uploads of this owner get \"user\": null silently)",
                message()
            );
        }
    }
}

/// The `n`-th component (from 1) of `path` under `root`, if it is UTF-8 text.
fn component(root: &Path, path: &Path, n: usize) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts = rel.components().filter_map(|c| match c {
        Component::Normal(part) => Some(part),
        _ => None,
    });
    let part = parts.nth(n - 1)?;
    // The last component is the file itself, not a folder that names a user.
    parts.next()?;
    part.to_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn users_from(name: &str, text: &str) -> Users {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        Users::load(&path).unwrap()
    }

    #[test]
    fn json_array_object_and_csv_forms() {
        let a = users_from("u.json", r#"[{"login":"ann","name":"Ann","email":"ann@x"}]"#);
        assert_eq!(a.get("ann").unwrap()["email"], json!("ann@x"));
        let b = users_from("u.json", r#"{"bob":{"email":"bob@x"}}"#);
        assert_eq!(b.get("bob").unwrap()["login"], json!("bob"));
        let c = users_from(
            "u.csv",
            "login,name,email,home,chroot\ncyd,\"Doe, Cyd \"\"C\"\"\",cyd@x,/home/cyd,\n",
        );
        let cyd = c.get("cyd").unwrap();
        assert_eq!(cyd["name"], json!("Doe, Cyd \"C\""));
        assert_eq!(cyd.get("chroot"), None);
    }

    #[test]
    fn entries_without_login_are_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.json");
        fs::write(&path, r#"[{"name":"x"}]"#).unwrap();
        let e = Users::load(&path).unwrap_err();
        assert_eq!(opsline::exit::code_of(&e), Code::Config);
    }

    #[test]
    fn owner_by_path_component_and_unknown_owner() {
        let users = users_from("u.json", r#"[{"login":"ann","email":"ann@x"}]"#);
        let mut owners = Owners::new(Some(users), OwnerFrom::Path(1));
        let root = Path::new("/srv/up");
        let user = owners.user(root, Path::new("/srv/up/ann/in/a.mp4"), 0, None);
        assert_eq!(user["email"], json!("ann@x"));
        assert_eq!(owners.user(root, Path::new("/srv/up/zed/a.mp4"), 0, None), Value::Null);
        assert_eq!(owners.user(root, Path::new("/srv/up/a.mp4"), 0, None), Value::Null);
        assert_eq!(
            owners.user(root, Path::new("/srv/up/zed/a.mp4"), 0, Some("ann"))["login"],
            json!("ann")
        );
        for (path, login) in [("/srv/up/ann/b.mp4", None), ("/srv/up/zed/b.mp4", Some("ann"))] {
            let rendered = owners.user(root, Path::new(path), 0, login).to_string();
            assert_eq!(owners.user_json(root, Path::new(path), 0, login), rendered);
            assert_eq!(owners.user_json(root, Path::new(path), 0, login), rendered, "cached");
        }
        assert_eq!(owners.user_json(root, Path::new("/srv/up/zed/b.mp4"), 0, None), "null");
    }

    #[test]
    fn owner_by_uid_uses_passwd() {
        let mut owners = Owners::new(None, OwnerFrom::Uid);
        let root = Path::new("/x");
        assert_eq!(owners.user(root, Path::new("/x/a.mp4"), 0, None), json!({"login": "root"}));
        assert_eq!(owners.user(root, Path::new("/x/a.mp4"), 4_000_000_000, None), Value::Null);
        for uid in [0, 0, 4_000_000_000, 0] {
            let rendered = owners.user(root, Path::new("/x/b.mp4"), uid, None).to_string();
            assert_eq!(owners.user_json(root, Path::new("/x/b.mp4"), uid, None), rendered);
        }
        assert_eq!("path:2".parse(), Ok(OwnerFrom::Path(2)));
        assert!("path:0".parse::<OwnerFrom>().is_err());
    }
}
