//! Hand-written JSON for the records of the hot path: most log lines need no escaping, and a
//! line that needs none has no part that needs any.

/// Writes the values of one record into its buffer.
#[derive(Debug)]
pub struct Json<'a> {
    out: &'a mut Vec<u8>,
    /// The line holds no byte to escape, so no text taken from it does.
    clean: bool,
}

impl<'a> Json<'a> {
    /// A writer for a record about `line`, appending to `out`.
    pub fn new(out: &'a mut Vec<u8>, line: &str) -> Self {
        Json { clean: !needs_escape(line.as_bytes()), out }
    }

    /// Bytes as they are (keys, punctuation, values encoded beforehand).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// A string taken from the line, or one that never needs escaping.
    pub fn str(&mut self, text: &str) {
        if self.clean || !needs_escape(text.as_bytes()) {
            self.out.push(b'"');
            self.out.extend_from_slice(text.as_bytes());
            self.out.push(b'"');
        } else {
            serde_json::to_writer(&mut *self.out, text).expect("writing to memory cannot fail");
        }
    }

    /// A string or `null`.
    pub fn opt_str(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.str(text),
            None => self.raw(b"null"),
        }
    }

    /// A number.
    pub fn u64(&mut self, n: u64) {
        write_u64(self.out, n);
    }

    /// A number or `null`.
    pub fn opt_u64(&mut self, n: Option<u64>) {
        match n {
            Some(n) => self.u64(n),
            None => self.raw(b"null"),
        }
    }
}

/// True when some byte is a control character, `"` or `\\`, checked eight bytes at a time.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte below 0x20 (a high byte never is), or equal to '"' or '\\'.
        let below = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
        if below
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// `text` as a JSON string.
pub fn string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

/// `n` in decimal, two digits at a time.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 100, 101, 1234567890, 12345678901, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_does() {
        for text in [
            "plain text of some length",
            "q\"uote",
            "back\\slash",
            "tab\tx",
            "\u{1}",
            "é ünï",
            "1234567\"",
            "",
        ] {
            let mut out = Vec::new();
            Json::new(&mut out, text).str(text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
        for at in 0..16 {
            let mut bytes = vec![b'a'; 16];
            bytes[at] = b'\\';
            assert!(needs_escape(&bytes));
            bytes[at] = 0x1f;
            assert!(needs_escape(&bytes));
            bytes[at] = 0x20;
            assert!(!needs_escape(&bytes));
        }
    }

    #[test]
    fn parts_of_a_line_that_needs_escaping_are_escaped_when_they_need_it() {
        let mut out = Vec::new();
        let mut json = Json::new(&mut out, "a \"b\" c");
        json.str("a");
        json.str("\"b\"");
        assert_eq!(out, br#""a""\"b\"""#);
    }
}
