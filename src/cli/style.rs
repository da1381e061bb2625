//! Colour, only where it helps: on a terminal, never into pipes. NO_COLOR
//! (non-empty) turns it off; CLICOLOR_FORCE (non-empty, not "0") turns it on
//! even into a pipe; NO_COLOR wins when both are set.

use owo_colors::OwoColorize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn decide(is_terminal: bool, no_color: Option<&str>, force: Option<&str>) -> Style {
        let color = if no_color.is_some_and(|v| !v.is_empty()) {
            false
        } else if force.is_some_and(|v| !v.is_empty() && v != "0") {
            true
        } else {
            is_terminal
        };
        Style { color }
    }

    /// For a stream that is (or is not) a terminal, with NO_COLOR and
    /// CLICOLOR_FORCE read from the environment.
    pub fn for_stream(is_terminal: bool) -> Style {
        let no_color = std::env::var("NO_COLOR").ok();
        let force = std::env::var("CLICOLOR_FORCE").ok();
        Style::decide(is_terminal, no_color.as_deref(), force.as_deref())
    }

    fn paint(self, s: &str, f: impl Fn(&str) -> String) -> String {
        if self.color { f(s) } else { s.to_string() }
    }

    pub fn blue(self, s: &str) -> String {
        self.paint(s, |s| s.blue().to_string())
    }
    pub fn yellow(self, s: &str) -> String {
        self.paint(s, |s| s.yellow().to_string())
    }
    pub fn green(self, s: &str) -> String {
        self.paint(s, |s| s.green().to_string())
    }
    pub fn red(self, s: &str) -> String {
        self.paint(s, |s| s.red().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_decision() {
        assert!(Style::decide(true, None, None).color);
        assert!(!Style::decide(false, None, None).color);
        assert!(!Style::decide(true, Some("1"), None).color);
        assert!(Style::decide(true, Some(""), None).color);
        assert!(Style::decide(false, None, Some("1")).color);
        assert!(!Style::decide(false, None, Some("0")).color);
        assert!(!Style::decide(false, Some("1"), Some("1")).color);
        assert_eq!(Style { color: false }.green("x"), "x");
        assert_eq!(Style { color: true }.green("x"), "\u{1b}[32mx\u{1b}[39m");
    }
}
