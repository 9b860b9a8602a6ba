//! Typed views of what arrived at the servers, shared by the workflows' summaries.

use std::fmt;
use std::fs;
use std::path::Path;

use opsline_testkit::smtp::Mail;
use sha2::{Digest as _, Sha256};

/// One received e-mail.
#[derive(Clone, Debug)]
pub struct MailSummary {
    /// The `Subject` header.
    pub subject: String,
    /// The `From` header.
    pub from: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// The text part.
    pub text: String,
    /// The attached files.
    pub attachments: Vec<AttachmentSummary>,
}

/// One attached file.
#[derive(Clone, Debug)]
pub struct AttachmentSummary {
    /// Its file name.
    pub filename: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its decoded size.
    pub bytes: usize,
    /// Its decoded content's SHA-256, hex.
    pub sha256: String,
}

impl From<&Mail> for MailSummary {
    fn from(mail: &Mail) -> Self {
        Self {
            subject: mail.header("Subject").unwrap_or_default().to_owned(),
            from: mail.header("From").unwrap_or_default().to_owned(),
            recipients: mail.recipients.clone(),
            text: mail.text.clone().unwrap_or_default(),
            attachments: mail
                .attachments
                .iter()
                .map(|a| AttachmentSummary {
                    filename: a.filename.clone().unwrap_or_default(),
                    content_type: a.content_type.clone(),
                    bytes: a.bytes.len(),
                    sha256: sha256_hex(&a.bytes),
                })
                .collect(),
        }
    }
}

impl fmt::Display for MailSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mail to {}: \"{}\"", self.recipients.join(", "), self.subject)?;
        for a in &self.attachments {
            writeln!(f, "    attached {} ({}, {} bytes)", a.filename, a.content_type, a.bytes)?;
        }
        Ok(())
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file, lower-case hex.
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    Ok(sha256_hex(&fs::read(path).with_context(|| format!("reading {}", path.display()))?))
}

/// The names in a folder, sorted.
pub fn names_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
