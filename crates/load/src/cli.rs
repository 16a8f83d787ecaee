//! `chat-load`'s command line: the scenarios and their arguments.

use std::time::Duration;

use crate::target::{Target, raise_open_files};
use crate::{direct, fanout, idle, mixed, parse_duration, upload};
use anyhow::bail;
use clap::{Args, Parser, Subcommand};

/// The command line.
#[derive(Parser)]
#[command(
    version,
    about = "Load generator for the chat backend (loopback targets only)",
    long_about = "Load generator for the chat backend. Speaks the product's protocol to \
servers on this machine only, runs for a bounded time, and prints a table and one JSON line.\n\n\
Give --target once for chatd, or once per gateway replica: connections are spread over them."
)]
pub struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// Where to connect, and as whom.
#[derive(Args)]
struct Targets {
    /// `host:port` of chatd or of a gateway (loopback only); repeat for replicas.
    #[arg(long = "target", default_value = "127.0.0.1:8080")]
    targets: Vec<String>,
    /// Extra loopback source addresses to spread connections over
    /// (127.0.0.2, …), each with its own ephemeral ports.
    #[arg(long, default_value_t = 0)]
    sources: usize,
    /// The servers' CHAT_JWT_SECRET, when they run CHAT_AUTH=jwt: tokens are minted with it.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

impl Targets {
    fn build(&self) -> anyhow::Result<Vec<Target>> {
        if self.targets.is_empty() {
            bail!("give at least one --target");
        }
        self.targets
            .iter()
            .map(|t| Target::new(t, self.sources, self.jwt_secret.as_deref()))
            .collect()
    }
}

#[derive(Subcommand)]
enum Scenario {
    /// Lobby fan-out: N subscribers on /ws/, publishers at a total rate.
    Lobby(FanoutArgs),
    /// Room fan-out: N members of one room (typed connections), publishers at a total rate.
    Room(FanoutArgs),
    /// Acked direct messages between P pairs at a total rate (senders on the first target, receivers on the last).
    Direct {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        spec: direct::Direct,
    },
    /// Open N connections at a rate, hold them; RSS per connection, optionally a probe.
    Idle {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        spec: idle::Idle,
    },
    /// Send one stamped lobby frame (the probe of `idle --probe await`).
    Probe {
        #[command(flatten)]
        targets: Targets,
    },
    /// A day in miniature: idle users with reconnect churn, active users in rooms and DMs, roaming receivers.
    Mixed {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        spec: mixed::Mixed,
    },
    /// Concurrent uploads to the media service: MiB/s and the server's RSS growth.
    Upload {
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        spec: upload::Upload,
    },
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    targets: Targets,
    /// Receiving connections.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Sending connections (they receive too).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Frames per second over all publishers.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Payload bytes (at least 24).
    #[arg(long, default_value_t = 64)]
    size: usize,
}

fn fanout_spec(args: &FanoutArgs, audience: fanout::Audience) -> fanout::Fanout {
    fanout::Fanout {
        audience,
        subscribers: args.subscribers,
        publishers: args.publishers,
        rate: args.rate,
        duration: args.duration,
        size: args.size,
    }
}

/// Runs the scenario the command line names and prints its report (a table,
/// then one JSON line).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let limit = raise_open_files();
    let report = match cli.scenario {
        Scenario::Lobby(args) => {
            let spec = fanout_spec(&args, fanout::Audience::Lobby);
            fanout::check(&spec)?;
            fanout::run(&args.targets.build()?, spec).await?
        }
        Scenario::Room(args) => {
            let spec = fanout_spec(
                &args,
                fanout::Audience::Room(format!("{}bench", crate::run_prefix())),
            );
            fanout::check(&spec)?;
            fanout::run(&args.targets.build()?, spec).await?
        }
        Scenario::Direct { targets, spec } => direct::run(&targets.build()?, spec).await?,
        Scenario::Idle { targets, spec } => {
            if spec.connections as u64 + 100 > limit {
                bail!(
                    "{} connections need more descriptors than this process may open ({limit}): run several chat-load processes",
                    spec.connections
                );
            }
            idle::run(&targets.build()?, spec).await?
        }
        Scenario::Probe { targets } => {
            idle::send_probe(&targets.build()?[0]).await?;
            return Ok(());
        }
        Scenario::Mixed { targets, spec } => mixed::run(&targets.build()?, spec).await?,
        Scenario::Upload { targets, spec } => upload::run(&targets.build()?[0], spec).await?,
    };
    // The report is what the command prints.
    #[allow(clippy::print_stdout)]
    {
        println!("{}", report.render());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
