//! The libconfuse lexer: turns gmond.conf text into tokens with line and column.
//!
//! libconfuse does not type its tokens: `port = 8649`, `port = "8649"` and
//! `user = nobody` are all strings, converted later by the option's declared type.
//! So a value token is a `Str` that remembers whether it was quoted.
//! Comments are `#` and `//` to the end of the line, and `/* ... */`; like
//! libconfuse, they start only between tokens (`url = http://x` is one string).

use std::sync::Arc;

use super::error::{ConfigError, ErrorKind, Location};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Equals,
    PlusEquals,
    Comma,
    Semicolon,
    /// A quoted or unquoted string, escapes already resolved.
    Str {
        text: String,
        quoted: bool,
    },
    Eof,
}

impl TokenKind {
    /// How the token reads in "found ..." messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            TokenKind::LBrace => "`{`".into(),
            TokenKind::RBrace => "`}`".into(),
            TokenKind::LParen => "`(`".into(),
            TokenKind::RParen => "`)`".into(),
            TokenKind::Equals => "`=`".into(),
            TokenKind::PlusEquals => "`+=`".into(),
            TokenKind::Comma => "`,`".into(),
            TokenKind::Semicolon => "`;`".into(),
            TokenKind::Str { text, quoted: true } => {
                format!("string {}", super::error::describe_text(text))
            }
            TokenKind::Str {
                text,
                quoted: false,
            } => super::error::describe_text(text),
            TokenKind::Eof => "end of file".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub line: u32,
    pub col: u32,
}

/// Splits `src` into tokens, ending with `Eof`. Lexical errors (an unterminated
/// string or comment) are returned alongside the tokens so that the parser can
/// still report the errors that follow.
pub(crate) fn tokenize(src: &str, origin: &Arc<str>) -> (Vec<Token>, Vec<ConfigError>) {
    let mut lexer = Lexer {
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
        col: 1,
        origin,
        errors: Vec::new(),
    };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token();
        let done = token.kind == TokenKind::Eof;
        tokens.push(token);
        if done {
            return (tokens, lexer.errors);
        }
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    line: u32,
    col: u32,
    origin: &'a Arc<str>,
    errors: Vec<ConfigError>,
}

/// Characters that end an unquoted string (libconfuse's delimiter set).
fn ends_unquoted(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '{' | '}' | '(' | ')' | '=' | ',' | ';' | '"' | '\'' | '#'
        )
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn error(&mut self, line: u32, col: u32, kind: ErrorKind) {
        self.errors.push(ConfigError::new(
            Location::new(self.origin, line, col),
            kind,
        ));
    }

    fn next_token(&mut self) -> Token {
        self.skip_blanks_and_comments();
        let (line, col) = (self.line, self.col);
        let token = |kind| Token { kind, line, col };
        let Some(c) = self.peek() else {
            return token(TokenKind::Eof);
        };
        let single = match c {
            '{' => Some(TokenKind::LBrace),
            '}' => Some(TokenKind::RBrace),
            '(' => Some(TokenKind::LParen),
            ')' => Some(TokenKind::RParen),
            '=' => Some(TokenKind::Equals),
            ',' => Some(TokenKind::Comma),
            ';' => Some(TokenKind::Semicolon),
            _ => None,
        };
        if let Some(kind) = single {
            self.bump();
            return token(kind);
        }
        if c == '+' && self.peek_at(1) == Some('=') {
            self.bump();
            self.bump();
            return token(TokenKind::PlusEquals);
        }
        let kind = match c {
            '"' => self.double_quoted(line, col),
            '\'' => self.single_quoted(line, col),
            _ => self.unquoted(),
        };
        token(kind)
    }

    fn skip_blanks_and_comments(&mut self) {
        while let Some(c) = self.peek() {
            match (c, self.peek_at(1)) {
                (c, _) if c.is_whitespace() => {
                    self.bump();
                }
                ('#', _) | ('/', Some('/')) => self.skip_line(),
                ('/', Some('*')) => self.skip_block_comment(),
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                return;
            }
            self.bump();
        }
    }

    fn skip_block_comment(&mut self) {
        let (line, col) = (self.line, self.col);
        self.bump();
        self.bump();
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some('*'), Some('/')) => {
                    self.bump();
                    self.bump();
                    return;
                }
                (Some(_), _) => {
                    self.bump();
                }
                (None, _) => {
                    self.error(line, col, ErrorKind::UnterminatedComment);
                    return;
                }
            }
        }
    }

    fn unquoted(&mut self) -> TokenKind {
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if ends_unquoted(c) || (c == '+' && self.peek_at(1) == Some('=')) {
                break;
            }
            text.push(c);
            self.bump();
        }
        TokenKind::Str {
            text,
            quoted: false,
        }
    }

    /// A `"..."` string with C escapes (`\n`, `\t`, `\\`, `\"`, `\xHH`, `\NNN` octal);
    /// an unknown escape keeps the escaped character, as libconfuse does.
    fn double_quoted(&mut self, line: u32, col: u32) -> TokenKind {
        self.bump();
        let mut text = String::new();
        loop {
            match self.peek() {
                Some('"') => {
                    self.bump();
                    return TokenKind::Str { text, quoted: true };
                }
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some(escaped) => text.push(self.escape(escaped)),
                        None => return self.unterminated(text, line, col, '"'),
                    }
                }
                Some('\n') | None => return self.unterminated(text, line, col, '"'),
                Some(c) => {
                    text.push(c);
                    self.bump();
                }
            }
        }
    }

    fn escape(&mut self, escaped: char) -> char {
        match escaped {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'e' => '\u{1b}',
            'a' => '\u{7}',
            'x' => self.radix_digits(16, 2, 0).unwrap_or('x'),
            '0'..='7' => self
                .radix_digits(8, 2, escaped.to_digit(8).unwrap_or(0))
                .unwrap_or('\0'),
            other => other,
        }
    }

    /// Reads up to `max` more digits in `radix` onto `code`, as one character code.
    fn radix_digits(&mut self, radix: u32, max: usize, mut code: u32) -> Option<char> {
        let mut count = 0;
        while count < max {
            let Some(digit) = self.peek().and_then(|c| c.to_digit(radix)) else {
                break;
            };
            code = code * radix + digit;
            count += 1;
            self.bump();
        }
        if radix == 16 && count == 0 {
            None
        } else {
            char::from_u32(code)
        }
    }

    /// A `'...'` string: only `\'` and `\\` are escapes, as in libconfuse.
    fn single_quoted(&mut self, line: u32, col: u32) -> TokenKind {
        self.bump();
        let mut text = String::new();
        loop {
            match self.peek() {
                Some('\'') => {
                    self.bump();
                    return TokenKind::Str { text, quoted: true };
                }
                Some('\\') if matches!(self.peek_at(1), Some('\'' | '\\')) => {
                    self.bump();
                    text.extend(self.bump());
                }
                Some('\n') | None => return self.unterminated(text, line, col, '\''),
                Some(c) => {
                    text.push(c);
                    self.bump();
                }
            }
        }
    }

    /// A string still open at the end of its line. libconfuse would let it run on
    /// across lines, but no gmond config does that, and stopping here keeps one
    /// missing quote from turning the rest of the file into errors.
    fn unterminated(&mut self, text: String, line: u32, col: u32, quote: char) -> TokenKind {
        self.error(line, col, ErrorKind::UnterminatedString { quote });
        TokenKind::Str { text, quoted: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        let (tokens, errors) = tokenize(src, &Arc::from("t.conf"));
        assert!(errors.is_empty(), "{errors:?}");
        tokens.into_iter().map(|t| t.kind).collect()
    }

    fn s(text: &str, quoted: bool) -> TokenKind {
        TokenKind::Str {
            text: text.into(),
            quoted,
        }
    }

    #[test]
    fn unquoted_values_keep_dots_slashes_and_colons() {
        assert_eq!(
            kinds("mcast_join = 239.2.11.71 url = http://x/y"),
            vec![
                s("mcast_join", false),
                TokenKind::Equals,
                s("239.2.11.71", false),
                s("url", false),
                TokenKind::Equals,
                s("http://x/y", false),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn comments_of_three_kinds_are_skipped_and_hash_wins_over_block_start() {
        let src = "a = 1 # x /* not a block\n// y\n/* z\n */ b = 2 #/* c */";
        assert_eq!(
            kinds(src),
            vec![
                s("a", false),
                TokenKind::Equals,
                s("1", false),
                s("b", false),
                TokenKind::Equals,
                s("2", false),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn escapes_in_double_and_single_quotes() {
        assert_eq!(
            kinds(r#""FS \\1: \"q\"\t\x41\101""#)[0],
            s("FS \\1: \"q\"\tAA", true)
        );
        assert_eq!(kinds(r"'a\'b\\c\n'")[0], s("a'b\\c\\n", true));
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let (tokens, _) = tokenize("a {\n  bé = \"x\"\n}", &Arc::from("t"));
        let positions: Vec<(u32, u32)> = tokens.iter().map(|t| (t.line, t.col)).collect();
        assert_eq!(
            positions,
            vec![(1, 1), (1, 3), (2, 3), (2, 6), (2, 8), (3, 1), (3, 2)]
        );
    }

    #[test]
    fn plus_equals_and_list_punctuation() {
        assert_eq!(
            kinds("x += (\"a\",b);"),
            vec![
                s("x", false),
                TokenKind::PlusEquals,
                TokenKind::LParen,
                s("a", true),
                TokenKind::Comma,
                s("b", false),
                TokenKind::RParen,
                TokenKind::Semicolon,
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn unterminated_string_is_reported_and_lexing_resumes_on_the_next_line() {
        let (tokens, errors) = tokenize("a = \"oops\nb = 2\n", &Arc::from("t"));
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "t:1:5: error: unterminated string: expected a closing `\"` before the end of the line"
        );
        assert_eq!(tokens[3].kind, s("b", false));
        assert_eq!((tokens[3].line, tokens[3].col), (2, 1));
    }

    #[test]
    fn unterminated_comment_is_reported_at_its_start() {
        let (_, errors) = tokenize("a = 1\n  /* never closed", &Arc::from("t"));
        assert_eq!(
            errors[0].to_string(),
            "t:2:3: error: unterminated comment: expected `*/` before the end of the file"
        );
    }
}
