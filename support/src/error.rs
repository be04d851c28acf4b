//! An error with its causes, written once.

use std::error::Error;

/// Renders `e` and every error in its [`source`](Error::source) chain on one line, outermost
/// first: `cannot save the state: cannot write state.json: No space left on device`.
///
/// Works for any `std::error::Error`; for an `anyhow::Error` pass `e.as_ref()` (or `&*e`), whose
/// chain is the context layers and the root cause.
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut last = s.clone();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        // Some errors repeat their cause in their own message (`#[error("...: {0}")]` next to a
        // `#[source]`, or an io::Error wrapping another error); printing it twice says nothing new.
        if !last.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
            last = next;
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::chain;
    use std::fmt;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_is_printed_with_all_its_causes_outermost_first() {
        let e = Layer(
            "cannot save",
            Some(Box::new(Layer(
                "cannot write state.json",
                Some(Box::new(Layer("disk full", None))),
            ))),
        );
        assert_eq!(chain(&e), "cannot save: cannot write state.json: disk full");
        assert_eq!(chain(&Layer("alone", None)), "alone");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = Layer("connect: refused", Some(Box::new(Layer("refused", None))));
        assert_eq!(chain(&e), "connect: refused");
    }

    #[test]
    fn a_boxed_error_keeps_its_chain() {
        let boxed: Box<dyn std::error::Error + Send + Sync> =
            Box::new(Layer("outer", Some(Box::new(Layer("inner", None)))));
        assert_eq!(chain(&*boxed), "outer: inner");
    }
}
