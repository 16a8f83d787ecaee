//! `chatd`: the all-in-one chat server. `cargo run --release` runs it; the
//! command line is in the library's `cli.rs`.

fn main() -> std::process::ExitCode {
    chatd::cli::main()
}
