//! Emotes: `:name:` in a message, for a name of the configured set, becomes
//! `{"id": name, "start", "end"}` with character offsets (end exclusive) of the whole `:name:`.

use std::collections::HashSet;

use serde::Serialize;

/// One emote found in a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Emote {
    /// The emote's name.
    pub id: String,
    /// Character offset of the opening colon.
    pub start: usize,
    /// Character offset just past the closing colon.
    pub end: usize,
}

/// The emotes of `text` that are in `known`, in order, never overlapping.
pub fn parse(text: &str, known: &HashSet<String>) -> Vec<Emote> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ':'
            && let Some(len) = chars[i + 1..].iter().position(|&c| c == ':')
        {
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            if len > 0 && known.contains(&name) {
                out.push(Emote {
                    id: name,
                    start: i,
                    end: i + len + 2,
                });
                i += len + 2;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set() -> HashSet<String> {
        ["Kappa", "GG"].map(String::from).into_iter().collect()
    }

    #[test]
    fn known_names_between_colons_are_emotes() {
        let e = parse("gg :GG: nice :Kappa::Kappa: :nope: :GG", &set());
        assert_eq!(
            e.iter()
                .map(|e| (e.id.as_str(), e.start, e.end))
                .collect::<Vec<_>>(),
            vec![("GG", 3, 7), ("Kappa", 13, 20), ("Kappa", 20, 27)]
        );
        assert_eq!(
            parse("é:GG:", &set())[0].start,
            1,
            "offsets count characters"
        );
    }

    proptest! {
        #[test]
        fn emotes_are_in_bounds_ordered_and_spell_their_name(text in "[a-zA-Z: é]{0,60}") {
            let chars: Vec<char> = text.chars().collect();
            let mut last = 0;
            for e in parse(&text, &set()) {
                prop_assert!(e.start >= last && e.end <= chars.len());
                let spelled: String = chars[e.start..e.end].iter().collect();
                prop_assert_eq!(spelled, format!(":{}:", e.id));
                last = e.end;
            }
        }
    }
}
