//! The one extraction mechanism behind every non-native format: RFC 6901 JSON Pointers with a
//! wildcard.
//!
//! serde_json's `Value::pointer` resolves a plain pointer, but CMS bodies keep IDs inside arrays
//! (`/entry/videos/*/id`) and inside locale-keyed objects (`/fields/videoId/*`), so the wildcard
//! needs a small walker of its own. `*` matches every element of an array and every value of an
//! object; any other token is an object key or, on an array, an index. `~0` and `~1` unescape as
//! in RFC 6901. A pointer that leads nowhere selects nothing; that is not an error, because
//! bodies legitimately omit optional fields.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Key(String),
    Any,
}

/// A parsed pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<Token>,
}

impl Pointer {
    /// `""` is the whole document; anything else must start with `/`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must start with '/'"
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                tokens.push(Token::Any);
                continue;
            }
            tokens.push(Token::Key(unescape(raw).ok_or_else(|| {
                format!("{text:?} is not a JSON pointer: '~' must be followed by 0 or 1")
            })?));
        }
        Ok(Pointer {
            text: text.to_owned(),
            tokens,
        })
    }

    /// Builds a pointer from plain keys (no escaping needed, no wildcard).
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Pointer {
        let tokens: Vec<Token> = keys.into_iter().map(|k| Token::Key(k.to_owned())).collect();
        let text = tokens
            .iter()
            .map(|t| match t {
                Token::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
                Token::Any => "/*".to_owned(),
            })
            .collect();
        Pointer { text, tokens }
    }

    /// This pointer followed by `other`.
    pub fn join(&self, other: &Pointer) -> Pointer {
        Pointer {
            text: format!("{}{}", self.text, other.text),
            tokens: self.tokens.iter().chain(&other.tokens).cloned().collect(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value the pointer reaches, in document order.
    pub fn select<'v>(&self, root: &'v Value) -> Vec<&'v Value> {
        let mut current = vec![root];
        for token in &self.tokens {
            let mut next = Vec::new();
            for value in current {
                match (token, value) {
                    (Token::Any, Value::Array(items)) => next.extend(items),
                    (Token::Any, Value::Object(map)) => next.extend(map.values()),
                    (Token::Key(key), Value::Object(map)) => next.extend(map.get(key)),
                    (Token::Key(key), Value::Array(items)) => {
                        next.extend(index(key).and_then(|i| items.get(i)))
                    }
                    _ => {}
                }
            }
            if next.is_empty() {
                return next;
            }
            current = next;
        }
        current
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// RFC 6901 array index: `0` or digits without a leading zero.
fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(pointer: &str, doc: &Value) -> Vec<Value> {
        Pointer::parse(pointer)
            .unwrap()
            .select(doc)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn rfc6901_examples() {
        // The examples of RFC 6901 section 5.
        let doc = json!({
            "foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4,
            "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8
        });
        assert_eq!(sel("", &doc), vec![doc.clone()]);
        assert_eq!(sel("/foo", &doc), vec![json!(["bar", "baz"])]);
        assert_eq!(sel("/foo/0", &doc), vec![json!("bar")]);
        assert_eq!(sel("/", &doc), vec![json!(0)]);
        assert_eq!(sel("/a~1b", &doc), vec![json!(1)]);
        assert_eq!(sel("/c%d", &doc), vec![json!(2)]);
        assert_eq!(sel("/ ", &doc), vec![json!(7)]);
        assert_eq!(sel("/m~0n", &doc), vec![json!(8)]);
        // Agrees with serde_json on every example without a wildcard.
        for p in [
            "", "/foo", "/foo/0", "/", "/a~1b", "/c%d", "/e^f", "/g|h", "/i\\j", "/k\"l", "/ ",
            "/m~0n",
        ] {
            assert_eq!(
                sel(p, &doc),
                doc.pointer(p).into_iter().cloned().collect::<Vec<_>>(),
                "{p}"
            );
        }
    }

    #[test]
    fn wildcards() {
        let doc = json!({"entry": {"videos": [{"id": "a"}, {"id": "b"}, {"x": 1}]},
                         "fields": {"videoId": {"en-US": "c", "de-DE": "d"}}});
        assert_eq!(
            sel("/entry/videos/*/id", &doc),
            vec![json!("a"), json!("b")]
        );
        let mut locales = sel("/fields/videoId/*", &doc);
        locales.sort_by_key(|v| v.to_string());
        assert_eq!(locales, vec![json!("c"), json!("d")]);
        assert!(sel("/entry/nothing/*", &doc).is_empty());
        assert!(sel("/entry/videos/01", &doc).is_empty());
    }

    #[test]
    fn invalid_pointers() {
        assert!(Pointer::parse("entry/id").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
    }

    #[test]
    fn from_keys_escapes() {
        let p = Pointer::from_keys(["a/b", "m~n"]);
        assert_eq!(p.as_str(), "/a~1b/m~0n");
        assert_eq!(Pointer::parse(p.as_str()).unwrap(), p);
    }
}
