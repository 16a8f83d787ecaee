//! `chat-load`: see the library's documentation; the command line is in
//! `cli.rs`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat_load::cli::run(chat_load::cli::Cli::parse()).await
}
