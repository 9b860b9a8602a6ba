//! The pages, rendered on the server as plain HTML (no scripts), every value escaped.

use std::fmt::Write as _;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::archive::{DirItem, Entry, Found, Query};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A value percent-encoded for a URL query.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}\
         td,th{{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}}\
         td.n{{text-align:right}}pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}\
         form label{{margin-right:1em}}</style></head>\
         <body><nav><a href=\"/\">Search</a> · <a href=\"/browse\">Browse</a></nav>\
         <h1>{title}</h1>\n{body}</body></html>\n",
        title = escape(title)
    )
}

/// The search form and its results.
pub fn search_page(agents: &[String], query: &Query, found: &Found) -> String {
    let mut body = String::new();
    body.push_str("<form method=\"get\" action=\"/\">");
    let _ = write!(
        body,
        "<label>Name <input name=\"name\" value=\"{}\" placeholder=\"app.log or *.gz\"></label>",
        escape(query.name.as_deref().unwrap_or(""))
    );
    body.push_str("<label>Agent <select name=\"agent\"><option value=\"\">all</option>");
    for agent in agents {
        let selected = if query.agent.as_deref() == Some(agent) { " selected" } else { "" };
        let _ = write!(body, "<option{selected}>{}</option>", escape(agent));
    }
    body.push_str("</select></label>");
    let day = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let _ = writeln!(
        body,
        "<label>From <input type=\"date\" name=\"from\" value=\"{}\"></label>\
         <label>To <input type=\"date\" name=\"to\" value=\"{}\"></label>\
         <button type=\"submit\">Search</button></form>",
        day(query.from),
        day(query.to)
    );
    let shown = found.entries.len();
    let _ = writeln!(
        body,
        "<p id=\"count\">{} file{} found{}</p>",
        found.total,
        if found.total == 1 { "" } else { "s" },
        if shown < found.total { format!(", the newest {shown} shown") } else { String::new() }
    );
    body.push_str(&entries_table(&found.entries));
    layout("Log archive", &body)
}

fn entries_table(entries: &[Entry]) -> String {
    let mut table = String::from(
        "<table id=\"results\"><tr><th>Agent</th><th>File</th><th>Size</th><th>Modified</th><th></th></tr>\n",
    );
    for entry in entries {
        let path = encode(&entry.archive_path());
        let _ = writeln!(
            table,
            "<tr><td>{agent}</td><td><a href=\"/view?path={path}\">{file}</a></td><td class=\"n\">{size}</td>\
             <td>{modified}</td><td><a href=\"/download?path={path}\">download</a></td></tr>",
            agent = escape(&entry.agent),
            file = escape(&entry.file),
            size = entry.size,
            modified = entry.modified.format("%Y-%m-%d %H:%M"),
        );
    }
    table.push_str("</table>\n");
    table
}

/// A folder's listing; `rel` is `""` for the root (the agents).
pub fn dir_page(rel: &str, items: &[DirItem]) -> String {
    let title = if rel.is_empty() { "Agents".to_owned() } else { rel.to_owned() };
    let mut body = String::from(
        "<table id=\"listing\"><tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n",
    );
    for item in items {
        let child = if rel.is_empty() { item.name.clone() } else { format!("{rel}/{}", item.name) };
        let (href, label) = if item.is_dir {
            (format!("/browse?path={}", encode(&child)), format!("{}/", item.name))
        } else {
            (format!("/view?path={}", encode(&child)), item.name.clone())
        };
        let _ = writeln!(
            body,
            "<tr><td><a href=\"{href}\">{}</a></td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&label),
            if item.is_dir { String::new() } else { item.size.to_string() },
            item.modified.format("%Y-%m-%d %H:%M")
        );
    }
    body.push_str("</table>\n");
    layout(&title, &body)
}

/// A file's text; `truncated` says only the start is shown.
pub fn view_page(rel: &str, text: &str, truncated: bool) -> String {
    let mut body =
        format!("<p><a id=\"download\" href=\"/download?path={}\">Download</a></p>", encode(rel));
    if truncated {
        body.push_str("<p><strong>Only the start of the file is shown; download it for the rest.</strong></p>");
    }
    let _ = write!(body, "<pre id=\"content\">{}</pre>", escape(text));
    layout(rel, &body)
}

/// An error page.
pub fn error_page(status: u16, message: &str) -> String {
    layout(&format!("Error {status}"), &format!("<p id=\"error\">{}</p>", escape(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_inject_markup() {
        let page = view_page("n/<script>x</script>\".log", "a<b & \"c\"", false);
        assert!(!page.contains("<script>"));
        assert!(page.contains("a&lt;b &amp; &quot;c&quot;"));
        assert!(page.contains("path=n%2F%3Cscript%3Ex%3C%2Fscript%3E%22%2Elog"));
    }
}
