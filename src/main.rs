//! deploy-lock's entry point: the invoked name picks the persona, the
//! persona's parser makes one request, `execute` carries it out, and this is
//! the one place that prints a failure and ends the process.

mod cli;

use std::io::IsTerminal;

use cli::execute::{Outcome, execute};
use cli::failure::Failure;
use cli::messages;
use cli::ops::Io;
use cli::request::{Persona, persona_with};
use cli::style::Style;
use deploy_lock::supervise::{self, ChildEnd};

fn main() {
    // Like the shell tools it replaces: a reader that goes away (`| head`)
    // ends us quietly with SIGPIPE.
    // SAFETY: setting the default disposition; no handler code runs.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv0 = if args.is_empty() {
        "deploy-lock".into()
    } else {
        args.remove(0)
    };
    let persona = persona_with(
        &argv0,
        std::env::var_os(cli::remote::ENV_PERSONA).as_deref(),
    );
    let request = match persona {
        Persona::Unlock => cli::legacy::request(&argv0, &args, |name| std::env::var_os(name)),
        Persona::DeployLock => {
            args.insert(0, argv0);
            cli::modern::parse(args)
        }
    };
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let (out_tty, err_tty) = (stdout.is_terminal(), stderr.is_terminal());
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        out_style: Style::for_stream(out_tty),
        err_style: Style::for_stream(err_tty),
        out_tty,
        err_tty,
    };
    let result = request.and_then(|req| execute(req, &mut io));
    // Whatever is still buffered must reach its reader, or be an error.
    let result = result.and_then(|o| io.out.flush().map(|()| o).map_err(Failure::Output));
    let code = match result {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::Exit(code)) => code,
        Ok(Outcome::Child(ChildEnd::Exited(code))) => code,
        Ok(Outcome::Child(ChildEnd::Signaled(n))) => {
            let _ = io.err.flush();
            // The calling shell sees a real signal death; 128+N if we survive.
            supervise::die_of_signal(n);
            128 + n
        }
        Err(failure) => {
            messages::report(
                &failure,
                persona,
                io.out,
                io.out_style,
                io.err,
                io.err_style,
            );
            if let Failure::Interrupted(n) = failure {
                // Like flock(1): a signal while waiting for the lock ends us
                // by that signal, so a calling script stops too.
                let _ = io.err.flush();
                supervise::die_of_signal(n);
            }
            failure.code(persona)
        }
    };
    let _ = io.err.flush();
    std::process::exit(code);
}
