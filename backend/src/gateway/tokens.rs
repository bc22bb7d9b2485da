//! Counting tokens: the worst case of a call's input, before it is sent, and the output of a
//! call whose upstream reported no usage.
//!
//! Models of OpenAI's families are counted with their own tokenizer (`tiktoken-rs`, whose
//! vocabularies ship inside the crate); any other model with `bytes`, one token per byte of
//! UTF-8, an upper bound for byte-level BPE and for SentencePiece with byte fallback (every
//! token covers at least one byte). Each message adds a few tokens of chat framing, counted
//! generously; tools, response formats and non-text parts count as their JSON text.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// How a model's tokens are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// GPT-4o, GPT-4.1, GPT-5, o-series.
    O200kBase,
    /// GPT-4, GPT-3.5.
    Cl100kBase,
    /// Anything else: one token per byte, an upper bound.
    Bytes,
}

/// Framing tokens per message (OpenAI's chat format uses 3, plus 1 for a name).
const PER_MESSAGE: u64 = 4;
/// Framing tokens that prime the reply.
const REPLY_PRIMING: u64 = 3;
/// The least an image or audio part is counted as, whatever its JSON's length.
const NON_TEXT_PART_MIN: u64 = 1536;

impl Tokenizer {
    /// The tokenizer of a model, told by its upstream name (a provider prefix such as
    /// `openai/` is ignored).
    pub fn for_model(upstream_model: &str) -> Self {
        let name = upstream_model.rsplit('/').next().unwrap_or(upstream_model).to_ascii_lowercase();
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
        if starts(&["gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss"]) {
            Self::O200kBase
        } else if starts(&["gpt-4", "gpt-3.5", "gpt-35"]) {
            Self::Cl100kBase
        } else {
            Self::Bytes
        }
    }

    /// Tokens in `text`.
    pub fn count(self, text: &str) -> u64 {
        let n = match self {
            Self::O200kBase => tiktoken_rs::o200k_base_singleton().encode_ordinary(text).len(),
            Self::Cl100kBase => tiktoken_rs::cl100k_base_singleton().encode_ordinary(text).len(),
            Self::Bytes => text.len(),
        };
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    fn count_json(self, value: &Value) -> u64 {
        match value {
            Value::String(s) => self.count(s),
            Value::Null => 0,
            other => self.count(&other.to_string()),
        }
    }

    /// An upper bound on the input tokens of a chat completion request.
    pub fn count_input(self, body: &Map<String, Value>) -> u64 {
        let mut total = REPLY_PRIMING;
        if let Some(Value::Array(messages)) = body.get("messages") {
            for message in messages {
                total = total.saturating_add(PER_MESSAGE);
                let Value::Object(message) = message else {
                    total = total.saturating_add(self.count_json(message));
                    continue;
                };
                for (key, value) in message {
                    let tokens = match (key.as_str(), value) {
                        ("content", Value::Array(parts)) => parts.iter().map(|p| self.count_part(p)).sum(),
                        _ => self.count_json(value),
                    };
                    total = total.saturating_add(tokens);
                }
            }
        }
        for key in ["tools", "functions", "tool_choice", "response_format", "prediction"] {
            if let Some(value) = body.get(key) {
                total = total.saturating_add(self.count_json(value));
            }
        }
        total
    }

    fn count_part(self, part: &Value) -> u64 {
        match part.get("type").and_then(Value::as_str) {
            Some("text") => part.get("text").map_or(0, |t| self.count_json(t)),
            _ => self.count(&part.to_string()).max(NON_TEXT_PART_MIN),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn families() {
        assert_eq!(Tokenizer::for_model("gpt-4o-mini"), Tokenizer::O200kBase);
        assert_eq!(Tokenizer::for_model("openai/gpt-4.1-nano"), Tokenizer::O200kBase);
        assert_eq!(Tokenizer::for_model("o3-mini"), Tokenizer::O200kBase);
        assert_eq!(Tokenizer::for_model("gpt-4-turbo"), Tokenizer::Cl100kBase);
        assert_eq!(Tokenizer::for_model("gpt-3.5-turbo"), Tokenizer::Cl100kBase);
        assert_eq!(Tokenizer::for_model("llama3.1:8b"), Tokenizer::Bytes);
        assert_eq!(Tokenizer::for_model("meta-llama/Llama-3.1-8B-Instruct"), Tokenizer::Bytes);
    }

    #[test]
    fn counts_with_the_real_vocabulary() {
        // Known counts from OpenAI's tokenizers.
        assert_eq!(Tokenizer::O200kBase.count("hello world"), 2);
        assert_eq!(Tokenizer::Cl100kBase.count("hello world"), 2);
        assert_eq!(Tokenizer::Bytes.count("hello world"), 11);
        assert_eq!(Tokenizer::Bytes.count("ä"), 2);
    }

    #[test]
    fn bounds_a_chat_request() {
        let request = body(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "hello world"}]},
            ],
        }));
        // OpenAI's own count for these two messages on gpt-4o is 3 + 2·3 + roles (1 + 1) +
        // contents (4 + 2) = 17; the bound adds one framing token per message.
        let o200k = Tokenizer::O200kBase.count_input(&request);
        assert!((17..=21).contains(&o200k), "{o200k}");
        let bytes = Tokenizer::Bytes.count_input(&request);
        assert!(bytes >= o200k && bytes >= 14 + 11, "{bytes}");
    }

    #[test]
    fn images_and_tools_are_counted() {
        let plain = body(json!({"messages": [{"role": "user", "content": "x"}]}));
        let image = body(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
        ]}]}));
        let tools = body(json!({"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}));
        let p = Tokenizer::O200kBase.count_input(&plain);
        assert!(Tokenizer::O200kBase.count_input(&image) >= p + NON_TEXT_PART_MIN - 1);
        assert!(Tokenizer::O200kBase.count_input(&tools) > p + 5);
    }
}
