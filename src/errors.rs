//! Error text for people: an error and its causes on one line, for logs, decision records and
//! plan output (never for metric labels, which take a bounded `category()`).

/// `outer: cause: root cause`. A cause whose text the outer message already contains is
/// skipped: libraries often repeat their source in their own message.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot scale {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn causes_follow_the_error_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(chain(&Outer("cache", refused)), "cannot scale cache: refused");
    }
}
