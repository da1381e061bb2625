//! deploy-lock's entry point: the invoked name picks the persona.

mod cli;

use std::ffi::OsString;

fn main() {
    // Like the shell tools it replaces: a reader that goes away (`| head`)
    // ends us quietly with SIGPIPE instead of a panic on the next print.
    // SAFETY: setting the default disposition; no handler code runs.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = if args.is_empty() {
        OsString::from("deploy-lock")
    } else {
        args.remove(0)
    };
    let code = match cli::persona(&argv0) {
        cli::Persona::Unlock => cli::legacy::main(argv0, args),
        cli::Persona::DeployLock => {
            args.insert(0, argv0);
            cli::modern::main(args)
        }
    };
    std::process::exit(code);
}
