//! Build script of shoal-server: compiles the C sources under `csrc/` into a static library linked into the
//! crate. They exist only where Redis's exact behaviour depends on C itself (`long double` arithmetic and libc's
//! `strtold`/`strtod`/`printf` in `csrc/ldouble.c`, used by `src/num.rs`), which Rust cannot reproduce.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("csrc");
    // Watching the directory (not only the files) makes adding a new C file rebuild too.
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "c") {
            println!("cargo:rerun-if-changed={}", path.display());
            sources.push(path);
        }
    }
    // Sorted so the archive's member order, hence the build, is reproducible.
    sources.sort();

    let mut build = cc::Build::new();
    build.files(&sources).std("c11").warnings(true).extra_warnings(true);
    // Never let a toolchain default relax floating point: INCRBYFLOAT must round exactly as Redis's C does.
    build.flag_if_supported("-fno-fast-math");
    build.compile("shoal_csrc");
    Ok(())
}
