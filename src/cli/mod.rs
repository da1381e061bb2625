//! The command-line layers. Each entry point parses into one typed
//! [`request::Request`] (the legacy `unlock.sh` by hand, `deploy-lock` with
//! clap), [`execute::execute`] carries it out and returns an outcome or a
//! [`failure::Failure`]; `main` alone prints the failure and exits. All
//! printing and all wording live under here.
//!
//! Layers, each using only those before it (no import cycles; a test below
//! reads the sources to keep it so): style, texts, remote → request →
//! failure → modern, legacy → docs → completions → messages → render → ops →
//! server → run → freeze, overview, reset → execute.

pub mod completions;
pub mod docs;
pub mod execute;
pub mod failure;
pub mod freeze;
#[cfg(test)]
mod fuzz_tests;
pub mod legacy;
pub mod log;
pub mod messages;
pub mod modern;
pub mod ops;
pub mod overview;
pub mod remote;
pub mod render;
pub mod request;
pub mod reset;
pub mod run;
pub mod server;
pub mod style;
pub mod texts;
pub mod watch;

#[cfg(test)]
mod tests {
    /// Issue 11: no circle of imports under src/cli/ (each module uses only
    /// the layers above it, see the module doc). Read from the sources, so
    /// a new `use super::x` that closes a circle fails here.
    #[test]
    fn no_import_cycles() {
        let sources: &[(&str, &str)] = &[
            ("completions", include_str!("completions.rs")),
            ("docs", include_str!("docs.rs")),
            ("execute", include_str!("execute.rs")),
            ("failure", include_str!("failure.rs")),
            ("freeze", include_str!("freeze.rs")),
            ("legacy", include_str!("legacy.rs")),
            ("log", include_str!("log.rs")),
            ("messages", include_str!("messages.rs")),
            ("modern", include_str!("modern.rs")),
            ("ops", include_str!("ops.rs")),
            ("remote", include_str!("remote.rs")),
            ("render", include_str!("render.rs")),
            ("request", include_str!("request.rs")),
            ("run", include_str!("run.rs")),
            ("server", include_str!("server.rs")),
            ("style", include_str!("style.rs")),
            ("texts", include_str!("texts.rs")),
        ];
        let names: Vec<&str> = sources.iter().map(|(n, _)| *n).collect();
        let uses = |text: &str| -> Vec<&str> {
            names
                .iter()
                .copied()
                .filter(|n| {
                    [
                        format!("super::{n}"),
                        format!("super::super::{n}"),
                        format!("crate::cli::{n}"),
                    ]
                    .iter()
                    .any(|p| {
                        text.match_indices(p.as_str()).any(|(i, _)| {
                            !text[i + p.len()..]
                                .starts_with(|c: char| c == '_' || c.is_alphanumeric())
                        })
                    })
                })
                .collect()
        };
        let graph: Vec<(&str, Vec<&str>)> =
            sources.iter().map(|(n, text)| (*n, uses(text))).collect();
        // Depth-first search for a back edge.
        fn visit<'a>(
            n: &'a str,
            graph: &[(&'a str, Vec<&'a str>)],
            path: &mut Vec<&'a str>,
            done: &mut Vec<&'a str>,
        ) {
            if done.contains(&n) {
                return;
            }
            assert!(!path.contains(&n), "import cycle: {path:?} -> {n}");
            path.push(n);
            let deps = &graph.iter().find(|(m, _)| *m == n).expect("known").1;
            for d in deps.iter().filter(|d| **d != n) {
                visit(d, graph, path, done);
            }
            path.pop();
            done.push(n);
        }
        let mut done = Vec::new();
        for (n, _) in &graph {
            visit(n, &graph, &mut Vec::new(), &mut done);
        }
    }
}
