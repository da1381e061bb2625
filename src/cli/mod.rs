//! The command-line layers. Each entry point parses into one typed
//! [`request::Request`] (the legacy `unlock.sh` by hand, `deploy-lock` with
//! clap), [`execute::execute`] carries it out and returns an outcome or a
//! [`failure::Failure`]; `main` alone prints the failure and exits. All
//! printing and all wording live under here.
//!
//! Layers, each using only those above it (no import cycles):
//! style, texts, request, remote → failure → modern, legacy → docs,
//! completions → messages, render → ops, run → overview, reset → execute.

pub mod completions;
pub mod docs;
pub mod execute;
pub mod failure;
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
pub mod style;
pub mod texts;
