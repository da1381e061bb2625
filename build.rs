//! Two link-time choices for the start-up cost of every call, each made only
//! when the build machine's own toolchain supports it.
//!
//! The unwinder: links GCC's unwinder (libgcc_eh.a) into the binary
//! instead of loading libgcc_s.so.1 at every start, as `gcc -static-libgcc`
//! does for C.
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
//!
//! The relocations: packs the relative relocations
//! (`-z pack-relative-relocs`, DT_RELR: binutils 2.38, glibc 2.36). The
//! position-independent binary carries about 5,000 of them, 117 KiB of
//! `.rela.dyn` that the dynamic loader reads in full at every start; packed,
//! they take 1.5 KiB. Measured on the
//! status of a held lock, median of 101 runs: peak RSS 4,236 -> 4,144 KiB.
//! The flag is used only when a test program linked with it runs here and
//! the link said nothing (an older GNU ld ignores it with a warning; an
//! older glibc cannot run the result): what install.sh builds runs where it
//! was built, and a .deb made with it depends on libc6 >= 2.36 (from
//! dpkg-shlibdeps).
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
    if packed_relocations_work(&cc) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
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

/// Whether `cc` links a program with packed relative relocations without a
/// word and the program runs (only when building for this machine).
fn packed_relocations_work(cc: &str) -> bool {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("TARGET") != var("HOST") {
        return false;
    }
    let dir = Path::new(&var("OUT_DIR")).join("relr-probe");
    let _ = std::fs::create_dir_all(&dir);
    let (src, exe) = (dir.join("probe.c"), dir.join("probe"));
    // A pointer in initialised data: one relative relocation to pack.
    let code = "static int x; int *p = &x; int main(void) { return *p; }\n";
    if std::fs::write(&src, code).is_err() {
        return false;
    }
    let linked = Command::new(cc)
        .args(["-fPIE", "-pie", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&exe)
        .arg(&src)
        .output();
    let Ok(linked) = linked else { return false };
    linked.status.success()
        && linked.stderr.is_empty()
        && Command::new(&exe).status().is_ok_and(|s| s.success())
}
