//! Serde's errors, retold for people. A body that does not deserialise is answered with the field
//! it is about (found from the position serde_json reports, in the body the guard kept) and what
//! that field must be, in words a person can act on: `amount must be a whole number`, never
//! `invalid type: floating point 1.5, expected i64 at line 1 column 13`. A query string that does
//! not deserialise is checked, parameter by parameter, against the types the spec gives them.

use crate::error::FieldError;

/// The JSON path of a value (`metadata.tags[2]`), as `crate::body` names the fields it refuses;
/// `body` for the body itself.
fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() { "body".to_owned() } else { out }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

enum Frame {
    Object { key: Option<String>, expecting_key: bool },
    Array { index: usize },
}

impl Frame {
    fn segment(&self) -> Option<Segment> {
        match self {
            Frame::Object { key, .. } => key.clone().map(Segment::Key),
            Frame::Array { index } => Some(Segment::Index(*index)),
        }
    }
}

fn path_of(stack: &[Frame]) -> Vec<Segment> {
    stack.iter().filter_map(Frame::segment).collect()
}

fn decode_key(raw: &[u8]) -> String {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
}

/// The path of the value at byte `offset` of a JSON text: the value that starts, ends or lies
/// there. On a closing bracket, the object or array it closes if `container` (a missing field, a
/// list of the wrong length), else its last member: an error raised after its value was read
/// (a `deserialize_with` of ours) gets the position serde_json is at when it passes the error on,
/// past the end of the object. Reads only up to `offset`, so what follows may be anything (serde
/// stops at the first error).
fn path_at(body: &[u8], offset: usize, container: bool) -> Vec<Segment> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < body.len() && i < offset {
        match body[i] {
            b'"' => {
                let start = i + 1;
                let mut end = start;
                while end < body.len() && body[end] != b'"' {
                    end += if body[end] == b'\\' { 2 } else { 1 };
                }
                let is_key = matches!(stack.last(), Some(Frame::Object { expecting_key: true, .. }));
                if is_key && let Some(Frame::Object { key, .. }) = stack.last_mut() {
                    *key = Some(decode_key(&body[start..end.min(body.len()).min(offset.max(start))]));
                }
                if end >= offset {
                    // The offset is inside (or at the end of) this string.
                    return path_of(&stack);
                }
                i = end;
            }
            b'{' => stack.push(Frame::Object { key: None, expecting_key: true }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b':' => {
                if let Some(Frame::Object { expecting_key, .. }) = stack.last_mut() {
                    *expecting_key = false;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expecting_key, .. }) => *expecting_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    let mut path = path_of(&stack);
    if container
        && matches!(body.get(offset), Some(b'}' | b']'))
        && stack.last().is_some_and(|frame| frame.segment().is_some())
    {
        // On a closing bracket: the container itself, not its last member.
        path.pop();
    }
    path
}

/// The byte offset of serde_json's `line`/`column` (both 1-based; the column counts bytes and
/// names the last byte read).
fn offset_of(body: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match body[start..].iter().position(|&b| b == b'\n') {
            Some(n) => start += n + 1,
            None => break,
        }
    }
    start + column.saturating_sub(1)
}

/// serde_json's message without the ` at line L column C` it appends.
fn message_of(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

/// The text between the first pair of backticks in `text`.
fn quoted(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once('`')?;
    Some(rest.split_once('`')?.0)
}

const DATE_TIME: &str = "a date and time such as 2026-01-31T12:00:00Z (RFC 3339)";

/// Messages chrono's parser gives (`chrono::format::ParseError`), which serde passes on as they are.
const CHRONO_MESSAGES: [&str; 7] = [
    "input is out of range",
    "no possible date and time matching input",
    "input is not enough for unique date and time",
    "input contains invalid characters",
    "premature end of input",
    "trailing input",
    "bad or unsupported format string",
];

/// What serde's `expected …` says a value must be, in a person's words.
fn expectation(expected: &str) -> String {
    let expected = expected.trim();
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "an integer" => "a whole number".to_owned(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".to_owned(),
        "f32" | "f64" | "a number" => "a number".to_owned(),
        "a string" | "a borrowed string" | "string" | "a character" => "a string".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a map" | "an object" | "a JSON object" => "an object".to_owned(),
        "a sequence" | "a tuple" | "an array" => "a list".to_owned(),
        "unit" | "null" => "null".to_owned(),
        _ if expected.starts_with("struct ") => "an object".to_owned(),
        _ if expected.contains("date and time") => DATE_TIME.to_owned(),
        "a UUID string" | "a UUID" | "UUID" => "a UUID".to_owned(),
        _ if expected.starts_with("one of ") || expected.starts_with('`') => {
            format!("one of {}", expected.trim_start_matches("one of ").replace(" or ", ", "))
        }
        _ => expected.to_owned(),
    }
}

fn join(parent: &[Segment], key: &str) -> String {
    let mut path = parent.to_vec();
    path.push(Segment::Key(key.to_owned()));
    render(&path)
}

/// A serde message about the value at `path`, retold.
fn retell(path: &[Segment], message: &str) -> FieldError {
    let field = render(path);
    let error = |field: String, code: &str, message: String| FieldError { field, code: code.to_owned(), message };
    if let Some(rest) = message.strip_prefix("missing field ") {
        let name = quoted(rest).unwrap_or(rest);
        let field = join(path, name);
        return error(field.clone(), "required", format!("{field} is required"));
    }
    if message.starts_with("unknown field ") {
        return error(field.clone(), "unknown_field", format!("{field} is not a field of this request"));
    }
    if let Some(rest) = message.strip_prefix("duplicate field ") {
        let field = join(path, quoted(rest).unwrap_or(rest));
        return error(field.clone(), "duplicate", format!("{field} is given twice"));
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let given = quoted(rest).unwrap_or_default();
        let expected = rest.split_once("expected ").map(|(_, e)| expectation(e)).unwrap_or_default();
        return error(field.clone(), "invalid", format!("{field} must be {expected}, not `{given}`"));
    }
    for (prefix, code) in [("invalid type: ", "type"), ("invalid value: ", "invalid"), ("invalid length ", "length")] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((_, expected)) = rest.split_once(", expected ")
        {
            return error(field.clone(), code, format!("{field} must be {}", expectation(expected)));
        }
    }
    if message.starts_with("UUID parsing failed") {
        return error(field.clone(), "type", format!("{field} must be a UUID"));
    }
    if CHRONO_MESSAGES.contains(&message) {
        return error(field.clone(), "type", format!("{field} must be {DATE_TIME}"));
    }
    error(field.clone(), "invalid", format!("{field} is not valid: {message}"))
}

/// The failing field of a body that is JSON but not of the expected shape.
pub(crate) fn body_error(err: &serde_json::Error, body: Option<&[u8]>) -> FieldError {
    let message = message_of(err);
    let container = message.starts_with("missing field ") || message.starts_with("invalid length ");
    let path = match body {
        Some(body) => path_at(body, offset_of(body, err.line(), err.column()), container),
        None => Vec::new(),
    };
    retell(&path, &message)
}

/// A body that is not JSON, told with where it stops being JSON.
pub(crate) fn syntax_error(err: &serde_json::Error) -> String {
    let at = format!("line {}, column {}", err.line(), err.column());
    match err.classify() {
        serde_json::error::Category::Eof => format!("The body is not valid JSON: it ends too early ({at})."),
        _ => format!("The body is not valid JSON: {} ({at}).", message_of(err)),
    }
}

/// What a query parameter's value must be, as the spec types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Integer { unsigned: bool },
    Number,
    Boolean,
    DateTime,
    Uuid,
}

impl ParamType {
    /// The type of a parameter whose schema (as JSON) is `schema`; `None` for text.
    pub fn of(schema: &serde_json::Value) -> Option<Self> {
        let types: Vec<&str> = match &schema["type"] {
            serde_json::Value::String(t) => vec![t.as_str()],
            serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
            _ => Vec::new(),
        };
        let format = schema["format"].as_str().unwrap_or_default();
        if types.contains(&"integer") {
            let unsigned = schema["minimum"].as_f64().is_some_and(|m| m >= 0.0);
            Some(Self::Integer { unsigned })
        } else if types.contains(&"number") {
            Some(Self::Number)
        } else if types.contains(&"boolean") {
            Some(Self::Boolean)
        } else if types.contains(&"string") && format == "date-time" {
            Some(Self::DateTime)
        } else if types.contains(&"string") && format == "uuid" {
            Some(Self::Uuid)
        } else {
            None
        }
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            Self::Integer { unsigned: true } => value.parse::<u64>().is_ok(),
            Self::Integer { unsigned: false } => value.parse::<i64>().is_ok(),
            Self::Number => value.parse::<f64>().is_ok(),
            Self::Boolean => matches!(value, "true" | "false"),
            Self::DateTime => value.parse::<chrono::DateTime<chrono::Utc>>().is_ok(),
            Self::Uuid => value.parse::<uuid::Uuid>().is_ok(),
        }
    }

    fn must_be(self) -> &'static str {
        match self {
            Self::Integer { unsigned: true } => "a whole number, 0 or more",
            Self::Integer { unsigned: false } => "a whole number",
            Self::Number => "a number",
            Self::Boolean => "true or false",
            Self::DateTime => "a date and time such as 2026-01-31T12:00:00Z (RFC 3339; in a URL, write `+` as `%2B`)",
            Self::Uuid => "a UUID",
        }
    }
}

/// The first parameter of `query` whose value its declared type refuses (serde reads them in
/// order and stops at the first it cannot), as a field error.
pub(crate) fn query_error(query: &str, declared: &[(String, ParamType)]) -> Option<FieldError> {
    url::form_urlencoded::parse(query.as_bytes()).find_map(|(name, value)| {
        let (_, kind) = declared.iter().find(|(declared, _)| *declared == name)?;
        (!kind.accepts(&value)).then(|| FieldError {
            field: name.to_string(),
            code: "type".to_owned(),
            message: format!("{name} must be {}", kind.must_be()),
        })
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "only deserialised")]
    struct Spend {
        amount: Option<i64>,
        quantity: Option<u32>,
        metadata: Option<Inner>,
        when: Option<chrono::DateTime<chrono::Utc>>,
        id: Option<uuid::Uuid>,
        kind: Option<Kind>,
        tags: Option<Vec<i64>>,
    }

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "only deserialised")]
    struct Inner {
        level: i64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Grant,
        Promotion,
    }

    fn told(body: &str) -> (String, String) {
        let err = serde_json::from_str::<Spend>(body).unwrap_err();
        assert!(err.is_data(), "{err}");
        let e = body_error(&err, Some(body.as_bytes()));
        (e.field, e.message)
    }

    #[test]
    fn names_the_field_and_says_what_it_must_be() {
        let cases = [
            (r#"{"amount":1.5}"#, "amount", "amount must be a whole number"),
            ("{\n  \"description\": \"x\",\n  \"amount\": \"ten\"\n}", "amount", "amount must be a whole number"),
            (r#"{"amount": {"a": 1}}"#, "amount", "amount must be a whole number"),
            (r#"{"quantity": -1}"#, "quantity", "quantity must be a whole number, 0 or more"),
            (r#"{"metadata": {"level": "high"}}"#, "metadata.level", "metadata.level must be a whole number"),
            (r#"{"metadata": {}}"#, "metadata.level", "metadata.level is required"),
            (r#"{"metadata": 5}"#, "metadata", "metadata must be an object"),
            (r#"{"tags": [1, 2, "three"]}"#, "tags[2]", "tags[2] must be a whole number"),
            (
                r#"{"when": "yesterday"}"#,
                "when",
                "when must be a date and time such as 2026-01-31T12:00:00Z (RFC 3339)",
            ),
            (r#"{"when": 12}"#, "when", "when must be a date and time such as 2026-01-31T12:00:00Z (RFC 3339)"),
            (r#"{"id": "not-a-uuid"}"#, "id", "id must be a UUID"),
            (r#"{"kind": "gift"}"#, "kind", "kind must be one of `grant`, `promotion`, not `gift`"),
            (r#"{"amount": 1.5, this is not json"#, "amount", "amount must be a whole number"),
            ("[1]", "body", "body must be an object"),
        ];
        for (body, field, message) in cases {
            assert_eq!(told(body), (field.to_owned(), message.to_owned()), "{body}");
        }
    }

    #[test]
    fn an_error_raised_after_the_last_member_names_that_member() {
        // A grant's `userId` checked after it was read: serde_json places the error on the `}`.
        for body in [
            r#"{"amount":100,"reason":"test","userId":"test-user-id"}"#,
            r#"{"userId": "test-user-id", "amount": 100, "reason": "test"}"#,
        ] {
            let err = serde_json::from_str::<crate::credits::dto::GrantRequest>(body).unwrap_err();
            let e = body_error(&err, Some(body.as_bytes()));
            assert_eq!(e.field, "userId", "{body}");
            assert!(e.message.starts_with("userId must be a Tollgate user id"), "{}", e.message);
        }
    }

    #[test]
    fn a_key_with_escapes_is_named_as_sent() {
        #[derive(Debug, Deserialize)]
        #[expect(dead_code, reason = "only deserialised")]
        struct Weird {
            #[serde(rename = "a\"b")]
            ab: i64,
        }
        let body = r#"{"a\"b": true}"#;
        let err = serde_json::from_str::<Weird>(body).unwrap_err();
        assert_eq!(body_error(&err, Some(body.as_bytes())).field, "a\"b");
    }

    #[test]
    fn finds_the_query_parameter_its_type_refuses() {
        let declared =
            vec![("limit".to_owned(), ParamType::Integer { unsigned: true }), ("from".to_owned(), ParamType::DateTime)];
        let e = query_error("kind=spend&limit=abc", &declared).unwrap();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("limit", "limit must be a whole number, 0 or more"));
        // `+` in a URL is a space: the classic way to break a date.
        let e = query_error("from=2026-01-01T00:00:00+00:00", &declared).unwrap();
        assert_eq!(e.field, "from");
        assert!(query_error("from=2026-01-01T00:00:00%2B00:00&limit=5", &declared).is_none());
    }
}
