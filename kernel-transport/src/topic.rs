//! [`topic_matches`]: AMQP topic patterns, as RabbitMQ's topic exchange applies them.

/// Whether `topic` matches the subscription `pattern`, with the AMQP topic exchange's rules:
/// both are words separated by `.`; in the pattern, `*` matches exactly one word and `#` zero
/// or more; any other word matches only itself.
///
/// The [`InProcessBroker`](crate::InProcessBroker) routes publications with it, and tools
/// use it to find which subscription a publication reached (`kernel watch` looks up the type
/// an announced subscriber expects).
///
/// Patterns can come from anyone who can publish, so the match never backtracks: it walks
/// the topic once, keeping the set of pattern positions still alive, in
/// O(words in `topic` × words in `pattern`) time and O(words in `pattern`) space, whatever the
/// pattern (`#.#.#.#.…` included).
///
/// ```
/// use kernel_transport::topic_matches;
///
/// assert!(topic_matches("com.example.*.greeted", "com.example.greeter.greeted"));
/// assert!(topic_matches("kernel.monitor.#", "kernel.monitor"));
/// assert!(topic_matches("#.greeted", "com.example.greeter.greeted"));
/// assert!(!topic_matches("com.*", "com.example.greeter"));
/// ```
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    // alive[j]: the first j pattern words match the topic words read so far.
    let mut alive = vec![false; pattern.len() + 1];
    let mut next = alive.clone();
    alive[0] = true;
    skip_empty_hashes(&pattern, &mut alive);
    for word in topic.split('.') {
        next.fill(false);
        for (j, &expected) in pattern.iter().enumerate() {
            if !alive[j] {
                continue;
            }
            match expected {
                // `#` takes this word and may take more: it stays where it is.
                "#" => next[j] = true,
                "*" => next[j + 1] = true,
                _ if expected == word => next[j + 1] = true,
                _ => {}
            }
        }
        skip_empty_hashes(&pattern, &mut next);
        std::mem::swap(&mut alive, &mut next);
        if !alive.contains(&true) {
            return false;
        }
    }
    alive[pattern.len()]
}

/// Lets each live `#` match zero words: the position after it is alive too. One pass in
/// order suffices, since a run of `#`s carries forward through the loop.
fn skip_empty_hashes(pattern: &[&str], alive: &mut [bool]) {
    for (j, &word) in pattern.iter().enumerate() {
        if alive[j] && word == "#" {
            alive[j + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_follow_amqp_rules() {
        assert!(topic_matches("a.b.c", "a.b.c"));
        assert!(!topic_matches("a.b.c", "a.b"));
        assert!(!topic_matches("a.b", "a.b.c"));
        assert!(topic_matches("a.*.c", "a.x.c"));
        assert!(!topic_matches("a.*.c", "a.x.y.c"));
        assert!(!topic_matches("a.*", "a"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#", "a.b.c"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(topic_matches("#", "one"));
        assert!(topic_matches("#.c", "a.b.c"));
        assert!(topic_matches("#.c", "c"));
        assert!(!topic_matches("#.c", "a.b"));
        assert!(topic_matches("a.#.c", "a.c"));
        assert!(topic_matches("a.#.c", "a.x.y.c"));
        assert!(!topic_matches("a.#.c", "a.x.y.d"));
        assert!(topic_matches("#.*", "a"));
        assert!(!topic_matches("*.#.*", "a"));
        assert!(topic_matches("*.#.*", "a.b"));
        // Words are whole: a `*` or `#` inside a word is just a character.
        assert!(!topic_matches("a*.b", "ab.b"));
        assert!(topic_matches("a*.b", "a*.b"));
    }

    /// The shape that makes a backtracking matcher take exponential time: many `#`s and a
    /// last word that never comes. The walk answers at once (a backtracking matcher would
    /// not finish this test).
    #[test]
    fn a_pathological_pattern_is_answered_without_backtracking() {
        let pattern = format!("{}never", "#.".repeat(200));
        let topic = vec!["word"; 250].join(".");
        assert!(!topic_matches(&pattern, &topic));
        assert!(topic_matches(&pattern, &format!("{topic}.never")));
        let stars_and_hashes = "#.*.".repeat(100) + "#";
        assert!(topic_matches(&stars_and_hashes, &topic));
        assert!(!topic_matches(&stars_and_hashes, "word.word"));
    }

    /// The straightforward backtracking definition, for comparison on small inputs.
    fn reference(pattern: &[&str], topic: &[&str]) -> bool {
        match (pattern.split_first(), topic.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                reference(rest, topic)
                    || topic
                        .split_first()
                        .is_some_and(|(_, t)| reference(pattern, t))
            }
            (Some((&"*", rest)), Some((_, t))) => reference(rest, t),
            (Some((word, rest)), Some((head, t))) => word == head && reference(rest, t),
            _ => false,
        }
    }

    /// Every word sequence over `alphabet` of 1 to `max` words.
    fn sequences(alphabet: &[&'static str], max: usize) -> Vec<Vec<&'static str>> {
        let mut all: Vec<Vec<&'static str>> = vec![vec![]];
        let mut out = Vec::new();
        for _ in 0..max {
            all = all
                .iter()
                .flat_map(|prefix| {
                    alphabet.iter().map(move |word| {
                        let mut longer = prefix.clone();
                        longer.push(*word);
                        longer
                    })
                })
                .collect();
            out.extend(all.iter().cloned());
        }
        out
    }

    #[test]
    fn the_walk_agrees_with_the_backtracking_definition() {
        let patterns = sequences(&["a", "b", "*", "#"], 5);
        let topics = sequences(&["a", "b"], 5);
        for pattern in &patterns {
            for topic in &topics {
                assert_eq!(
                    topic_matches(&pattern.join("."), &topic.join(".")),
                    reference(pattern, topic),
                    "{} against {}",
                    pattern.join("."),
                    topic.join("."),
                );
            }
        }
    }
}
