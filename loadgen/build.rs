//! Records the commit this build was made from, for the bench report's header: the engine the
//! bench measures is the one linked into this binary, whatever directory it is started in.
//! `+dirty` when the sources differ from that commit; `unknown` outside a git checkout.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    // A commit, a checkout or an edit of anything the binary is built from.
    for path in ["../.git/HEAD", "../.git/index", "../.git/refs", "../engine/src", "../loadgen/src", "../migrations"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&[
                "status",
                "--porcelain",
                "--",
                "../engine",
                "../loadgen",
                "../migrations",
                "../Cargo.toml",
                "../Cargo.lock",
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}+dirty")
            } else {
                commit
            }
        }
        None => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=RPS_BUILD_COMMIT={commit}");
}
