//! Extractive summarisation: score each sentence by how frequent its content words are in the
//! whole text, keep the best ones in their original order. Deterministic: the same text always
//! gives the same summary.

use std::collections::HashMap;

const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does",
    "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her",
    "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more",
    "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out",
    "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was",
    "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you",
    "your", "yours",
];

/// The characters of a text that are analysed: runs of whitespace collapse to one space.
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits normalised text into sentences at `.`, `!` or `?` followed by a space.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let ends = matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_none_or(|next| *next == b' ');
        if ends {
            let sentence = text[start..=i].trim();
            if !sentence.is_empty() {
                out.push(sentence);
            }
            start = i + 1;
        }
    }
    let tail = text[start..].trim();
    if !tail.is_empty() {
        out.push(tail);
    }
    out
}

fn words(sentence: &str) -> impl Iterator<Item = String> + '_ {
    sentence
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| w.chars().count() > 1 && !STOPWORDS.contains(&w.as_str()))
}

/// The summary: the most informative sentences (about a fifth of them, 1 to 5), in order.
pub fn summarize(text: &str) -> Summary {
    let normalized = normalize(text);
    let all = sentences(&normalized);
    let mut frequency: HashMap<String, usize> = HashMap::new();
    for sentence in &all {
        for word in words(sentence) {
            *frequency.entry(word).or_default() += 1;
        }
    }
    let keep = all.len().div_ceil(5).clamp(1, 5).min(all.len());
    let mut scored: Vec<(usize, f64)> = all
        .iter()
        .enumerate()
        .map(|(i, sentence)| {
            let ws: Vec<String> = words(sentence).collect();
            let score = if ws.is_empty() {
                0.0
            } else {
                ws.iter().map(|w| frequency[w] as f64).sum::<f64>() / (ws.len() as f64).sqrt()
            };
            (i, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen: Vec<usize> = scored.into_iter().take(keep).map(|(i, _)| i).collect();
    chosen.sort_unstable();
    Summary {
        summary: chosen.iter().map(|&i| all[i]).collect::<Vec<_>>().join(" "),
        sentences_total: all.len(),
        sentences_kept: chosen.len(),
        analysed_chars: normalized.chars().count(),
    }
}

/// What the summariser produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub summary: String,
    pub sentences_total: usize,
    pub sentences_kept: usize,
    /// Characters analysed (after collapsing whitespace): what the actual cost is priced on.
    pub analysed_chars: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_informative_sentences_in_order() {
        let text = "Credits pay for AI calls. The weather is nice. Every AI call spends credits from the wallet. \
                    Lunch was late. Credits in the wallet run out when AI calls spend them.";
        let s = summarize(text);
        assert_eq!(s.sentences_total, 5);
        assert_eq!(s.sentences_kept, 1);
        assert!(s.summary.to_lowercase().contains("credits"), "{}", s.summary);
        assert_eq!(summarize(text), s, "deterministic");
    }

    #[test]
    fn splits_sentences_and_collapses_whitespace() {
        assert_eq!(sentences("One. Two!  Three? Four"), vec!["One.", "Two!", "Three?", "Four"]);
        assert_eq!(normalize("a  b\n\n c"), "a b c");
        assert_eq!(sentences("Version 1.5 is out. Yes."), vec!["Version 1.5 is out.", "Yes."]);
    }
}
