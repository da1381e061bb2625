//! Links GCC's unwinder (libgcc_eh.a) into the binary instead of loading
//! libgcc_s.so.1 at every start, as `gcc -static-libgcc` does for C.
//!
//! Why: Rust's std on linux-gnu links libgcc_s only for the unwinder
//! (backtraces, and unwinding in test builds). Loading it costs a status
//! call about 0.15 ms of its ~1.8 ms on a 2-core VM, mostly the library's
//! constructor (`__cpu_indicator_init`, whose CPUID instructions trap to the
//! hypervisor), plus 112 KiB of resident memory: the difference between
//! meeting and missing docs/performance.md's bounds (<= 1.2x `ls -ld`,
//! <= 4 MiB). glibc stays dynamically linked, so NSS, locales and the
//! system's security updates work as for any other program; only the
//! unwinder, a self-contained piece with no system state, is copied in.
//!
//! Nothing is required of the build machine beyond the C toolchain Rust
//! already links with: when `cc -print-file-name=libgcc_eh.a` does not name
//! a file (a clang-only or musl toolchain, a static build), the ordinary
//! dynamic libgcc_s is used and nothing changes.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static")
    {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let Ok(out) = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // An unknown file name is echoed back bare: only an absolute path that
    // exists is the library.
    if !out.status.success() || !Path::new(&path).is_absolute() || !Path::new(&path).is_file() {
        return;
    }
    // -bundle: the archive is named on the final link, not copied into the
    // library's rlib; it comes before std's -lgcc_s on that command line, so
    // the unwinder's symbols are found here and --as-needed drops libgcc_s.
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
}
