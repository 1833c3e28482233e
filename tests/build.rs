//! The test binaries link libtorch through the `trainer` library: give them the same rpath as
//! `omnirl` (see trainer/build.rs) so they start without LD_LIBRARY_PATH.

fn main() {
    println!("cargo:rerun-if-env-changed=OMNIRL_TORCH_LIBDIRS");
    if let Ok(dirs) = std::env::var("OMNIRL_TORCH_LIBDIRS") {
        for dir in dirs.split(':').filter(|d| !d.is_empty()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
