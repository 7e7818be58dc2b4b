//! Complexity limits for JSON request bodies, checked on the bytes as they arrive.
//!
//! Size and depth alone do not bound what a body costs: 30 MB of `{"k1":1,"k2":1,...}`
//! is a few million map entries, hundreds of MB once parsed. The [`Scanner`] counts,
//! without allocating, what parsing would build, and stops the read at the first
//! limit passed, long before the body is buffered whole or handed to serde.
//!
//! The limits are the listener settings of Vault (`max_json_depth`,
//! `max_json_string_value_length`, `max_json_object_entry_count`,
//! `max_json_array_element_count`) and of OpenBao (`max_request_json_memory`, with
//! OpenBao's cost model, and `max_request_json_strings`), with their defaults.

/// Vault's default `max_json_depth`.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 500;
/// Vault's default `max_json_string_value_length`: 1 MiB.
pub const DEFAULT_MAX_JSON_STRING_VALUE_LENGTH: usize = 1024 * 1024;
/// Vault's default `max_json_object_entry_count`.
pub const DEFAULT_MAX_JSON_OBJECT_ENTRY_COUNT: usize = 10_000;
/// Vault's default `max_json_array_element_count`.
pub const DEFAULT_MAX_JSON_ARRAY_ELEMENT_COUNT: usize = 10_000;
/// OpenBao's default `max_request_json_memory`: 32.5 MiB of estimated parsed size.
pub const DEFAULT_MAX_REQUEST_JSON_MEMORY: usize = 32 * 1024 * 1024 + 512 * 1024;
/// OpenBao's default `max_request_json_strings`: strings, keys included.
pub const DEFAULT_MAX_REQUEST_JSON_STRINGS: usize = 1000;

/// How complex a JSON body may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Deepest `[`/`{` nesting (`max_json_depth`).
    pub max_depth: usize,
    /// Longest string, key or value, in characters (`max_json_string_value_length`).
    pub max_string_length: usize,
    /// Most entries in one object (`max_json_object_entry_count`).
    pub max_object_entries: usize,
    /// Most elements in one array (`max_json_array_element_count`).
    pub max_array_elements: usize,
    /// Most estimated bytes of the parsed body, by OpenBao's cost model
    /// (`max_request_json_memory`).
    pub max_memory: usize,
    /// Most strings, keys included (`max_request_json_strings`).
    pub max_strings: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_depth: DEFAULT_MAX_JSON_DEPTH,
            max_string_length: DEFAULT_MAX_JSON_STRING_VALUE_LENGTH,
            max_object_entries: DEFAULT_MAX_JSON_OBJECT_ENTRY_COUNT,
            max_array_elements: DEFAULT_MAX_JSON_ARRAY_ELEMENT_COUNT,
            max_memory: DEFAULT_MAX_REQUEST_JSON_MEMORY,
            max_strings: DEFAULT_MAX_REQUEST_JSON_STRINGS,
        }
    }
}

/// Which limit a body passed; the message follows OpenBao's
/// `refused JSON input due to high complexity: <reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TooComplex {
    Depth,
    StringLength,
    ObjectEntries,
    ArrayElements,
    Memory,
    Strings,
}

impl TooComplex {
    /// The client-facing message (OpenBao's words for its two limits).
    pub(crate) fn message(self) -> &'static str {
        match self {
            TooComplex::Depth => {
                "refused JSON input due to high complexity: exceeded maximum nesting depth"
            }
            TooComplex::StringLength => {
                "refused JSON input due to high complexity: exceeded maximum string value length"
            }
            TooComplex::ObjectEntries => {
                "refused JSON input due to high complexity: exceeded maximum number of object entries"
            }
            TooComplex::ArrayElements => {
                "refused JSON input due to high complexity: exceeded maximum number of array elements"
            }
            TooComplex::Memory => {
                "refused JSON input due to high complexity: exceeded maximum estimated memory limits"
            }
            TooComplex::Strings => {
                "refused JSON input due to high complexity: exceeded maximum number of strings"
            }
        }
    }
}

// OpenBao's estimate of what each token costs once decoded (a pointer and a type
// word, plus the value's own header); closing brackets are free.
const COST_BASE: usize = 16;
const COST_SCALAR: usize = COST_BASE + 1;
const COST_NUMBER: usize = COST_BASE + 8;
const COST_STRING: usize = COST_BASE + 16;
const COST_ARRAY: usize = COST_BASE + 24;
const COST_OBJECT: usize = COST_BASE + 72;

/// An open `[` or `{` and how many elements or entries it has so far.
#[derive(Debug, Clone, Copy)]
struct Frame {
    object: bool,
    count: usize,
}

/// Counts a JSON text's depth, strings, entries, elements and estimated parsed size
/// as its bytes are fed, in any chunking, in one pass and without allocating beyond
/// one word per open bracket (itself bounded by the depth limit).
///
/// It checks complexity, not syntax: malformed input it lets through is left for
/// serde to refuse, and whatever it lets through is within the limits.
#[derive(Debug)]
pub(crate) struct Scanner {
    limits: JsonLimits,
    stack: Vec<Frame>,
    /// The last byte outside strings and whitespace; `0` before the first.
    prev: u8,
    in_string: bool,
    escaped: bool,
    /// Hex digits of a `\u` escape still to skip (they count as one character).
    hex_left: u8,
    string_len: usize,
    strings: usize,
    memory: usize,
}

impl Scanner {
    pub(crate) fn new(limits: JsonLimits) -> Scanner {
        Scanner {
            limits,
            stack: Vec::new(),
            prev: 0,
            in_string: false,
            escaped: false,
            hex_left: 0,
            string_len: 0,
            strings: 0,
            memory: 0,
        }
    }

    /// Feeds the next bytes of the body.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), TooComplex> {
        let mut i = 0;
        while i < bytes.len() {
            if self.in_string && !self.escaped && self.hex_left == 0 {
                // Plain string bytes up to the next quote or backslash count one each.
                let rest = &bytes[i..];
                let plain = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                self.string_len += plain;
                if self.string_len > self.limits.max_string_length {
                    return Err(TooComplex::StringLength);
                }
                i += plain;
                if i == bytes.len() {
                    break;
                }
            }
            let b = bytes[i];
            i += 1;
            if self.in_string {
                self.string_byte(b)?;
                continue;
            }
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => continue,
                b']' | b'}' => {
                    self.stack.pop();
                }
                b',' | b':' => {}
                _ if matches!(self.prev, 0 | b'[' | b'{' | b',' | b':') => self.token_start(b)?,
                // Inside a number or literal.
                _ => {}
            }
            self.prev = b;
        }
        Ok(())
    }

    fn token_start(&mut self, b: u8) -> Result<(), TooComplex> {
        if let Some(top) = self.stack.last_mut() {
            // After `{` or `,` in an object comes a key, after `:` its value.
            let counts = matches!(self.prev, b'[' | b'{' | b',');
            if counts {
                top.count += 1;
                let (count, limit, err) = if top.object {
                    (
                        top.count,
                        self.limits.max_object_entries,
                        TooComplex::ObjectEntries,
                    )
                } else {
                    (
                        top.count,
                        self.limits.max_array_elements,
                        TooComplex::ArrayElements,
                    )
                };
                if count > limit {
                    return Err(err);
                }
            }
        }
        let cost = match b {
            b'"' => {
                self.strings += 1;
                if self.strings > self.limits.max_strings {
                    return Err(TooComplex::Strings);
                }
                self.in_string = true;
                self.string_len = 0;
                COST_STRING
            }
            b'[' | b'{' => {
                if self.stack.len() >= self.limits.max_depth {
                    return Err(TooComplex::Depth);
                }
                self.stack.push(Frame {
                    object: b == b'{',
                    count: 0,
                });
                if b == b'[' { COST_ARRAY } else { COST_OBJECT }
            }
            b't' | b'f' | b'n' => COST_SCALAR,
            _ => COST_NUMBER,
        };
        self.add_memory(cost)
    }

    fn string_byte(&mut self, b: u8) -> Result<(), TooComplex> {
        if self.hex_left > 0 {
            self.hex_left -= 1;
            return Ok(());
        }
        if self.escaped {
            self.escaped = false;
            if b == b'u' {
                self.hex_left = 4;
            }
        } else if b == b'\\' {
            self.escaped = true;
            return Ok(());
        } else if b == b'"' {
            self.in_string = false;
            self.prev = b'"';
            return self.add_memory(self.string_len);
        }
        self.string_len += 1;
        if self.string_len > self.limits.max_string_length {
            return Err(TooComplex::StringLength);
        }
        Ok(())
    }

    fn add_memory(&mut self, cost: usize) -> Result<(), TooComplex> {
        self.memory = self.memory.saturating_add(cost);
        if self.memory > self.limits.max_memory {
            return Err(TooComplex::Memory);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(limits: JsonLimits, body: &[u8]) -> Result<(), TooComplex> {
        Scanner::new(limits).feed(body)
    }

    fn loose() -> JsonLimits {
        JsonLimits {
            max_depth: 1000,
            max_string_length: usize::MAX,
            max_object_entries: usize::MAX,
            max_array_elements: usize::MAX,
            max_memory: usize::MAX,
            max_strings: usize::MAX,
        }
    }

    #[test]
    fn each_limit_is_exact() {
        let obj = |n: usize| {
            let entries: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            format!("{{{}}}", entries.join(","))
        };
        let arr = |n: usize| format!("[{}]", vec!["true"; n].join(" , "));
        let entries = JsonLimits {
            max_object_entries: 3,
            ..loose()
        };
        assert_eq!(scan(entries, obj(3).as_bytes()), Ok(()));
        assert_eq!(
            scan(entries, obj(4).as_bytes()),
            Err(TooComplex::ObjectEntries)
        );
        let elements = JsonLimits {
            max_array_elements: 3,
            ..loose()
        };
        assert_eq!(scan(elements, arr(3).as_bytes()), Ok(()));
        assert_eq!(
            scan(elements, arr(4).as_bytes()),
            Err(TooComplex::ArrayElements)
        );
        // Entries of nested objects count per object, not together.
        let nested = format!("{{\"a\":{},\"b\":{}}}", obj(3), obj(3));
        assert_eq!(scan(entries, nested.as_bytes()), Ok(()));
        let strings = JsonLimits {
            max_strings: 4,
            ..loose()
        };
        assert_eq!(scan(strings, br#"{"a":"b","c":"d"}"#), Ok(()));
        assert_eq!(
            scan(strings, br#"{"a":"b","c":["d","e"]}"#),
            Err(TooComplex::Strings)
        );
        let depth = JsonLimits {
            max_depth: 3,
            ..loose()
        };
        assert_eq!(scan(depth, br#"{"a":[{}]}"#), Ok(()));
        assert_eq!(scan(depth, br#"{"a":[{"b":[]}]}"#), Err(TooComplex::Depth));
    }

    #[test]
    fn string_length_counts_escapes_as_one_and_ignores_brackets_inside() {
        let limits = JsonLimits {
            max_string_length: 4,
            max_depth: 1,
            ..loose()
        };
        assert_eq!(scan(limits, br#"{"k":"a\"\u00e9["}"#), Ok(()));
        assert_eq!(
            scan(limits, br#"{"k":"abcde"}"#),
            Err(TooComplex::StringLength)
        );
        assert_eq!(
            scan(limits, br#"{"abcde":1}"#),
            Err(TooComplex::StringLength)
        );
    }

    #[test]
    fn memory_follows_openbao_cost_model() {
        // {"ab":12,"c":[true,null]}: object 88, "ab" 32+2, 12 24, "c" 32+1, array 40,
        // true 17, null 17.
        let body = br#"{"ab":12,"c":[true,null]}"#;
        let exact = 88 + 34 + 24 + 33 + 40 + 17 + 17;
        let at = |max_memory| {
            scan(
                JsonLimits {
                    max_memory,
                    ..loose()
                },
                body,
            )
        };
        assert_eq!(at(exact), Ok(()));
        assert_eq!(at(exact - 1), Err(TooComplex::Memory));
    }

    #[test]
    fn chunking_does_not_change_the_verdict() {
        let body = br#"{"a\"b":"c\u0041d","e":[1,2.5e3,-7,{"f":[]}],"g":false}"#;
        let limits = JsonLimits {
            max_strings: 5,
            ..loose()
        };
        for split in 0..body.len() {
            let mut s = Scanner::new(limits);
            let whole = s.feed(&body[..split]).and_then(|()| s.feed(&body[split..]));
            assert_eq!(whole, Ok(()), "split at {split}");
        }
        let tight = JsonLimits {
            max_strings: 4,
            ..loose()
        };
        for split in 0..body.len() {
            let mut s = Scanner::new(tight);
            let whole = s.feed(&body[..split]).and_then(|()| s.feed(&body[split..]));
            assert_eq!(whole, Err(TooComplex::Strings), "split at {split}");
        }
    }

    /// Long plain runs are skipped in one step; the count stays exact at every split.
    #[test]
    fn string_length_is_exact_however_a_long_string_is_split() {
        let limits = JsonLimits {
            max_string_length: 40,
            ..loose()
        };
        let fits = format!(r#"{{"k":"{}\n{}"}}"#, "x".repeat(20), "y".repeat(19));
        let over = format!(r#"{{"k":"{}\n{}"}}"#, "x".repeat(20), "y".repeat(20));
        for split in 0..fits.len() {
            let mut s = Scanner::new(limits);
            let b = fits.as_bytes();
            let r = s.feed(&b[..split]).and_then(|()| s.feed(&b[split..]));
            assert_eq!(r, Ok(()), "split at {split}");
            let mut s = Scanner::new(limits);
            let b = over.as_bytes();
            let r = s.feed(&b[..split]).and_then(|()| s.feed(&b[split..]));
            assert_eq!(r, Err(TooComplex::StringLength), "split at {split}");
        }
    }

    #[test]
    fn defaults_are_vault_and_openbao_defaults() {
        let d = JsonLimits::default();
        assert_eq!(
            (
                d.max_depth,
                d.max_string_length,
                d.max_object_entries,
                d.max_array_elements
            ),
            (500, 1_048_576, 10_000, 10_000)
        );
        assert_eq!((d.max_memory, d.max_strings), (34_078_720, 1000));
    }
}
