//! Reading an upstream's chat completion: server-sent events cut into whole events (so each is
//! forwarded whole, and none is split between a forwarded and a held-back part), and what the
//! events say about the call: its id, the usage the upstream reported, and the text it streamed
//! (counted when no usage comes).

use serde_json::Value;

use super::pricing::TokenUsage;

/// Cuts a byte stream into server-sent events. An event ends at a blank line (`\n\n`, `\r\n\r\n`
/// or `\r\r`); what is left at the end of the stream is an event too.
#[derive(Debug, Default)]
pub struct EventSplitter {
    buffer: Vec<u8>,
}

impl EventSplitter {
    /// Feeds bytes; returns the events they completed, each with its blank line.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = Self::event_end(&self.buffer) {
            let rest = self.buffer.split_off(end);
            events.push(std::mem::replace(&mut self.buffer, rest));
        }
        events
    }

    /// What is left when the stream ends.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buffer);
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }

    fn event_end(buffer: &[u8]) -> Option<usize> {
        (0..buffer.len()).find_map(|i| {
            let rest = &buffer[i..];
            if rest.starts_with(b"\r\n\r\n") {
                Some(i + 4)
            } else if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
                Some(i + 2)
            } else {
                None
            }
        })
    }

    /// Bytes waiting for the end of their event.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// The `data` of an event: its `data:` lines joined by newlines; `None` when it has none.
pub fn event_data(event: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(event);
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    data
}

/// The usage an OpenAI-format `usage` object reports: `prompt_tokens` counts the cached ones,
/// which are priced apart.
pub fn usage_of(usage: &Value) -> Option<TokenUsage> {
    let prompt = usage.get("prompt_tokens")?.as_u64()?;
    let completion = usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
    let cached = usage
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(prompt);
    Some(TokenUsage { input_tokens: prompt - cached, cached_input_tokens: cached, output_tokens: completion })
}

/// What a call's answer said, as it was read.
#[derive(Debug, Default)]
pub struct Reading {
    /// The upstream's id of the completion (`chatcmpl-…`).
    pub upstream_id: Option<String>,
    /// The usage it reported, if it did.
    pub usage: Option<TokenUsage>,
    /// Output text (content, refusals, reasoning, tool-call arguments), for counting.
    pub text: String,
}

impl Reading {
    /// Takes in one chunk (streamed) or the whole completion.
    pub fn absorb(&mut self, value: &Value) {
        if self.upstream_id.is_none() {
            self.upstream_id = value.get("id").and_then(Value::as_str).map(str::to_owned);
        }
        if let Some(usage) = value.get("usage").and_then(usage_of) {
            self.usage = Some(usage);
        }
        for choice in value.get("choices").and_then(Value::as_array).into_iter().flatten() {
            for part in ["delta", "message"] {
                if let Some(message) = choice.get(part) {
                    self.absorb_message(message);
                }
            }
            if let Some(text) = choice.get("text").and_then(Value::as_str) {
                self.text.push_str(text);
            }
        }
    }

    fn absorb_message(&mut self, message: &Value) {
        for key in ["content", "refusal", "reasoning_content", "reasoning"] {
            if let Some(text) = message.get(key).and_then(Value::as_str) {
                self.text.push_str(text);
            }
        }
        for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            if let Some(function) = call.get("function") {
                for key in ["name", "arguments"] {
                    if let Some(text) = function.get(key).and_then(Value::as_str) {
                        self.text.push_str(text);
                    }
                }
            }
        }
    }
}

/// Whether a streamed chunk only reports usage (`choices: []` with `usage`): the chunk Tollgate
/// asked for, held back from a client that did not.
pub fn is_usage_only(value: &Value) -> bool {
    value.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty)
        && value.get("usage").is_some_and(|u| !u.is_null())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cuts_events_across_reads() {
        let mut splitter = EventSplitter::default();
        assert!(splitter.feed(b"data: {\"a\":").is_empty());
        let events = splitter.feed(b"1}\n\ndata: [DONE]\r\n\r\n: comment");
        assert_eq!(events, vec![b"data: {\"a\":1}\n\n".to_vec(), b"data: [DONE]\r\n\r\n".to_vec()]);
        assert_eq!(splitter.finish(), Some(b": comment".to_vec()));
        assert_eq!(event_data(b"data: {\"a\":1}\n\n").as_deref(), Some("{\"a\":1}"));
        assert_eq!(event_data(b"event: x\ndata:a\ndata: b\n\n").as_deref(), Some("a\nb"));
        assert_eq!(event_data(b": keep-alive\n\n"), None);
    }

    #[test]
    fn reads_usage_and_text() {
        let mut reading = Reading::default();
        reading.absorb(&json!({"id": "chatcmpl-1", "choices": [{"delta": {"content": "Hel"}}], "usage": null}));
        reading.absorb(&json!({"id": "chatcmpl-1", "choices": [{"delta": {"content": "lo", "tool_calls": [{"function": {"arguments": "{}"}}]}}]}));
        assert_eq!(reading.usage, None);
        let last = json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}});
        assert!(is_usage_only(&last));
        reading.absorb(&last);
        assert_eq!(reading.upstream_id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(reading.text, "Hello{}");
        assert_eq!(reading.usage, Some(TokenUsage { input_tokens: 6, cached_input_tokens: 4, output_tokens: 2 }));
    }
}
