//! The raw libconfuse tree of one file: sections, options and function calls
//! (`include (...)`), exactly as written, with the location of everything.
//! Includes are left unexpanded; `loader` expands them and `build` types the result.
//!
//! The parser recovers from a syntax error by skipping to the next line (or the
//! end of the enclosing section), so that one pass reports every error in a file.

use std::sync::Arc;

use super::error::{ConfigError, ErrorKind, Location};
use super::lexer::{Token, TokenKind, tokenize};

/// One parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTree {
    pub origin: Arc<str>,
    pub items: Vec<Item>,
}

/// A string as written: its text after escapes, whether it was quoted, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub quoted: bool,
    pub at: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    /// `("a", "b")` or libconfuse's `{"a", "b"}`.
    List {
        items: Vec<Scalar>,
        at: Location,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `key = value` (or `key += value`, which appends to a list).
    Option {
        key: Scalar,
        value: Value,
        append: bool,
    },
    /// `name { ... }` or `name title { ... }`.
    Section {
        name: Scalar,
        title: Option<Scalar>,
        body: Vec<Item>,
    },
    /// `name (arg, ...)`; gmond defines only `include`.
    Call { name: Scalar, args: Vec<Scalar> },
}

/// Parses one file's text. `origin` names the file in every location. Every
/// syntax error of the file is returned, in order.
pub fn parse_str(src: &str, origin: &str) -> Result<RawTree, Vec<ConfigError>> {
    let (tree, errors) = parse_partial(src, origin);
    if errors.is_empty() {
        Ok(tree)
    } else {
        Err(errors)
    }
}

/// Parses as much as can be parsed: the tree keeps every statement that was
/// well-formed (the loader still follows its includes), the errors the rest.
pub(crate) fn parse_partial(src: &str, origin: &str) -> (RawTree, Vec<ConfigError>) {
    let origin: Arc<str> = Arc::from(origin);
    let (tokens, mut errors) = tokenize(src, &origin);
    let mut parser = Parser {
        tokens,
        pos: 0,
        origin: Arc::clone(&origin),
        errors: Vec::new(),
        error_line: 0,
    };
    let items = parser.items(None, 0);
    errors.append(&mut parser.errors);
    // Stable: at one position the lexer's error (first) explains the parser's.
    errors.sort_by_key(|e| (e.at.line, e.at.col));
    errors.dedup_by_key(|e| (e.at.line, e.at.col));
    (RawTree { origin, items }, errors)
}

/// Deepest section nesting accepted; gmond's deepest is 3 (`tcp_accept_channel`
/// > `acl` > `access`). The cap keeps hostile input from exhausting the stack.
const MAX_NESTING: usize = 32;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    origin: Arc<str>,
    errors: Vec<ConfigError>,
    /// Line of the token that caused the last error: recovery skips past it.
    error_line: u32,
}

/// A syntax error that aborts the current statement; the parser then recovers.
struct Abort;

impl Parser {
    fn peek(&self) -> &Token {
        // `tokenize` always ends with `Eof`, and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.kind != TokenKind::Eof {
            self.pos += 1;
        }
        token
    }

    fn at(&self, token: &Token) -> Location {
        Location::new(&self.origin, token.line, token.col)
    }

    fn scalar(&self, token: &Token) -> Option<Scalar> {
        match &token.kind {
            TokenKind::Str { text, quoted } => Some(Scalar {
                text: text.clone(),
                quoted: *quoted,
                at: self.at(token),
            }),
            _ => None,
        }
    }

    /// Records "expected X, found <token>". A `}` that was just consumed is given
    /// back, so that it still closes its section.
    fn expected(&mut self, expected: impl Into<String>, found: &Token) -> Abort {
        if found.kind == TokenKind::RBrace && self.pos > 0 && self.tokens[self.pos - 1] == *found {
            self.pos -= 1;
        }
        let kind = ErrorKind::Syntax {
            expected: expected.into(),
            found: found.kind.describe(),
        };
        self.errors.push(ConfigError::new(self.at(found), kind));
        self.error_line = found.line;
        Abort
    }

    /// Statements until EOF (top level, `open` is None) or the `}` closing the
    /// section whose name token is `open`.
    fn items(&mut self, open: Option<&Token>, depth: usize) -> Vec<Item> {
        let mut items = Vec::new();
        loop {
            let token = self.peek().clone();
            match (&token.kind, open) {
                (TokenKind::Eof, None) => return items,
                (TokenKind::Eof, Some(open)) => {
                    let expected = format!(
                        "`}}` closing `{}` opened at {}",
                        token_text(open),
                        self.at(open).line_col()
                    );
                    self.expected(expected, &token);
                    return items;
                }
                (TokenKind::RBrace, Some(_)) => {
                    self.advance();
                    return items;
                }
                (TokenKind::Semicolon, _) => {
                    self.advance();
                }
                _ => match self.statement(depth) {
                    Ok(item) => items.push(item),
                    Err(Abort) => self.recover(),
                },
            }
        }
    }

    fn statement(&mut self, depth: usize) -> Result<Item, Abort> {
        let name_token = self.advance();
        let Some(name) = self.scalar(&name_token) else {
            let expected = match name_token.kind {
                TokenKind::RBrace => "an option or section name (this `}` closes no section)",
                _ => "an option or section name",
            };
            // Consume a stray `}` at the top level, or recovery would stop on it forever.
            let abort = self.expected(expected, &name_token);
            if name_token.kind == TokenKind::RBrace {
                self.advance();
            }
            return Err(abort);
        };
        let next = self.advance();
        match &next.kind {
            TokenKind::Equals | TokenKind::PlusEquals => {
                let value = self.value(&name, &next)?;
                Ok(Item::Option {
                    key: name,
                    value,
                    append: next.kind == TokenKind::PlusEquals,
                })
            }
            TokenKind::LParen => Ok(Item::Call {
                args: self.list_items(&next, TokenKind::RParen)?,
                name,
            }),
            TokenKind::LBrace => self.section(name, None, &name_token, depth),
            TokenKind::Str { .. } => {
                if self.peek().kind != TokenKind::LBrace {
                    return Err(
                        self.expected(format!("`=` between `{}` and its value", name.text), &next)
                    );
                }
                self.advance();
                self.section(name, self.scalar(&next), &name_token, depth)
            }
            _ => Err(self.expected(format!("`=`, `{{` or `(` after `{}`", name.text), &next)),
        }
    }

    fn section(
        &mut self,
        name: Scalar,
        title: Option<Scalar>,
        open: &Token,
        depth: usize,
    ) -> Result<Item, Abort> {
        if depth >= MAX_NESTING {
            return Err(self.expected(format!("at most {MAX_NESTING} nested sections"), open));
        }
        let body = self.items(Some(open), depth + 1);
        Ok(Item::Section { name, title, body })
    }

    fn value(&mut self, key: &Scalar, equals: &Token) -> Result<Value, Abort> {
        let token = self.advance();
        let operator = if equals.kind == TokenKind::PlusEquals {
            "+="
        } else {
            "="
        };
        let missing = || format!("a value after `{} {operator}`", key.text);
        // `key =` at the end of a line followed by `other = ...`: libconfuse would take
        // `other` as the value; saying the value is missing is the helpful reading.
        let next_starts_statement = matches!(
            self.peek().kind,
            TokenKind::Equals | TokenKind::PlusEquals | TokenKind::LBrace | TokenKind::LParen
        );
        if token.line > equals.line && next_starts_statement {
            self.pos -= 1;
            let kind = ErrorKind::Syntax {
                expected: missing(),
                found: "end of line".into(),
            };
            self.errors.push(ConfigError::new(self.at(equals), kind));
            self.error_line = equals.line;
            return Err(Abort);
        }
        match &token.kind {
            TokenKind::Str { .. } => {
                Ok(Value::Scalar(self.scalar(&token).expect("a string token")))
            }
            TokenKind::LParen => Ok(Value::List {
                items: self.list_items(&token, TokenKind::RParen)?,
                at: self.at(&token),
            }),
            TokenKind::LBrace => Ok(Value::List {
                items: self.list_items(&token, TokenKind::RBrace)?,
                at: self.at(&token),
            }),
            _ => Err(self.expected(missing(), &token)),
        }
    }

    /// `a, b, c` up to `close`; the opening token is already consumed.
    fn list_items(&mut self, open: &Token, close: TokenKind) -> Result<Vec<Scalar>, Abort> {
        let close_text = close.describe();
        let mut items = Vec::new();
        if self.peek().kind == close {
            self.advance();
            return Ok(items);
        }
        loop {
            let token = self.advance();
            let Some(item) = self.scalar(&token) else {
                return Err(self.expected(format!("a list item or {close_text}"), &token));
            };
            items.push(item);
            let separator = self.advance();
            match &separator.kind {
                TokenKind::Comma => {}
                kind if *kind == close => return Ok(items),
                _ => {
                    let expected = format!(
                        "`,` or {close_text} closing the list opened at {}",
                        self.at(open).line_col()
                    );
                    return Err(self.expected(expected, &separator));
                }
            }
        }
    }

    /// Skips the rest of the broken statement: the tokens on the line of the error
    /// (with any `{...}` block opened there), stopping before a `}` that closes the
    /// enclosing section.
    fn recover(&mut self) {
        let mut depth = 0usize;
        loop {
            let token = self.peek();
            match token.kind {
                TokenKind::Eof => return,
                TokenKind::RBrace if depth == 0 => return,
                _ if depth == 0 && token.line > self.error_line => return,
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => depth -= 1,
                _ => {}
            }
            self.advance();
        }
    }
}

fn token_text(token: &Token) -> String {
    match &token.kind {
        TokenKind::Str { text, .. } => text.clone(),
        other => other.describe(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[Scalar]) -> Vec<&str> {
        items.iter().map(|s| s.text.as_str()).collect()
    }

    #[test]
    fn titled_sections_calls_lists_and_semicolons() {
        let src =
            "module { param \"My Name\" { value = 1; } }\ninclude ('a', \"b\")\nx = {\"p\", q}\n";
        let tree = parse_str(src, "t.conf").unwrap();
        let [
            Item::Section {
                name,
                title: None,
                body,
            },
            Item::Call { args, .. },
            Item::Option { value, .. },
        ] = &tree.items[..]
        else {
            panic!("{tree:#?}")
        };
        assert_eq!(name.text, "module");
        let [
            Item::Section {
                title: Some(title),
                body: param,
                ..
            },
        ] = &body[..]
        else {
            panic!("{body:#?}")
        };
        assert_eq!((title.text.as_str(), title.quoted), ("My Name", true));
        assert!(matches!(&param[..], [Item::Option { key, .. }] if key.text == "value"));
        assert_eq!(texts(args), vec!["a", "b"]);
        assert!(matches!(value, Value::List { items, .. } if texts(items) == vec!["p", "q"]));
    }

    #[test]
    fn partial_trees_keep_the_well_formed_statements() {
        let (tree, errors) = parse_partial("a = 1\nb c d\ninclude ('x')\n", "t.conf");
        assert_eq!(errors.len(), 1);
        assert_eq!(tree.items.len(), 2);
        assert!(matches!(&tree.items[1], Item::Call { name, .. } if name.text == "include"));
    }

    #[test]
    fn nesting_is_capped() {
        let src = "a {".repeat(MAX_NESTING + 5) + &"}".repeat(MAX_NESTING + 5);
        let errors = parse_str(&src, "t.conf").unwrap_err();
        assert!(
            errors[0].to_string().contains("at most 32 nested sections"),
            "{errors:?}"
        );
    }
}
