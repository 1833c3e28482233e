//! Embeds the libtorch library directory as an rpath so `omnirl` starts without
//! LD_LIBRARY_PATH, and with `--features cuda` forces libtorch_cuda into the link
//! (rustc links with --as-needed, which otherwise drops it: tch-rs issue #980).

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=OMNIRL_TORCH_LIBDIRS");
    // torch-sys declares `links = "tch"` and prints `cargo:libtorch_lib=<dir>`.
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    // The CUDA runtime wheels that libtorch_cpu.so needs (libcudart, libcupti) live beside torch.
    if let Ok(dirs) = std::env::var("OMNIRL_TORCH_LIBDIRS") {
        for dir in dirs.split(':').filter(|d| !d.is_empty()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
