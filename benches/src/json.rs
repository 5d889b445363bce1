//! A small JSON writer for the suite's `--json` output: objects, arrays,
//! strings (escaped per RFC 8259), numbers (non-finite ones written as
//! `null`, which JSON cannot otherwise express), booleans and null. It
//! writes into a `String` and tracks commas itself; nesting is the caller's
//! (every `begin_*` needs its `end_*`).

use core::fmt::Write;

/// Writes one JSON document into a string.
#[derive(Default)]
pub struct Json {
    out: String,
    /// Per open container: has it received an element yet?
    first: Vec<bool>,
    /// A key was just written; the next value follows it without a comma.
    after_key: bool,
}

/// `s` as a JSON string literal, quotes included.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Json {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    fn separate(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if let Some(first) = self.first.last_mut() {
            if !*first {
                self.out.push(',');
            }
            *first = false;
        }
    }

    /// Opens an object (as a value).
    pub fn begin_object(&mut self) -> &mut Self {
        self.separate();
        self.out.push('{');
        self.first.push(true);
        self
    }

    /// Closes the innermost object.
    pub fn end_object(&mut self) -> &mut Self {
        self.first.pop();
        self.out.push('}');
        self
    }

    /// Opens an array (as a value).
    pub fn begin_array(&mut self) -> &mut Self {
        self.separate();
        self.out.push('[');
        self.first.push(true);
        self
    }

    /// Closes the innermost array.
    pub fn end_array(&mut self) -> &mut Self {
        self.first.pop();
        self.out.push(']');
        self
    }

    /// Writes a key inside an object; the next call writes its value.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.separate();
        self.out.push_str(&quote(k));
        self.out.push(':');
        self.after_key = true;
        self
    }

    /// A string value.
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.separate();
        self.out.push_str(&quote(s));
        self
    }

    /// A number value (`null` when not finite).
    pub fn number(&mut self, x: f64) -> &mut Self {
        self.separate();
        if x.is_finite() {
            let _ = write!(self.out, "{x}");
        } else {
            self.out.push_str("null");
        }
        self
    }

    /// An integer value.
    pub fn int(&mut self, x: u64) -> &mut Self {
        self.separate();
        let _ = write!(self.out, "{x}");
        self
    }

    /// A boolean value.
    pub fn boolean(&mut self, b: bool) -> &mut Self {
        self.separate();
        self.out.push_str(if b { "true" } else { "false" });
        self
    }

    /// `null`.
    pub fn null(&mut self) -> &mut Self {
        self.separate();
        self.out.push_str("null");
        self
    }

    /// A number, or `null` for `None`.
    pub fn opt_number(&mut self, x: Option<f64>) -> &mut Self {
        match x {
            Some(x) => self.number(x),
            None => self.null(),
        }
    }

    /// `key: string` in one call.
    pub fn field_str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k).string(v)
    }

    /// The document written so far.
    pub fn finish(self) -> String {
        debug_assert!(self.first.is_empty(), "unclosed JSON container");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::{quote, Json};

    #[test]
    fn escapes() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("l1\nl2\t\r"), "\"l1\\nl2\\t\\r\"");
        assert_eq!(quote("\u{1}\u{1f}"), "\"\\u0001\\u001f\"");
        assert_eq!(quote("µs ≤ 1.3"), "\"µs ≤ 1.3\"");
    }

    #[test]
    fn nesting_and_commas() {
        let mut j = Json::new();
        j.begin_object();
        j.field_str("a", "x");
        j.key("n").number(1.5);
        j.key("bad").number(f64::NAN);
        j.key("list").begin_array();
        j.int(1).boolean(true).null();
        j.begin_object().end_object();
        j.end_array();
        j.key("o")
            .begin_object()
            .key("k")
            .opt_number(None)
            .end_object();
        j.end_object();
        assert_eq!(
            j.finish(),
            r#"{"a":"x","n":1.5,"bad":null,"list":[1,true,null,{}],"o":{"k":null}}"#
        );
    }
}
