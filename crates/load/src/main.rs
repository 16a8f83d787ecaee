//! `chat-load`: see the library's documentation. This is its command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use chat_load::target::{Target, raise_open_files};
use chat_load::{direct, fanout, idle, mixed, parse_duration, upload};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for the chat backend (loopback targets only)",
    long_about = "Load generator for the chat backend. Speaks the product's protocol to \
servers on this machine only, runs for a bounded time, and prints a table and one JSON line.\n\n\
Give --target once for chatd, or once per gateway replica: connections are spread over them."
)]
struct Cli {
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
        /// Sender/receiver pairs.
        #[arg(long, default_value_t = 500)]
        pairs: usize,
        /// Messages per second over all senders.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// How long to send.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Body bytes (at least 24).
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Open N connections at a rate, hold them; RSS per connection, optionally a probe.
    Idle {
        #[command(flatten)]
        targets: Targets,
        /// Connections to open.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Lobby or user connections.
        #[arg(long, value_enum, default_value = "lobby")]
        kind: idle::Kind,
        /// New connections per second (0: as fast as --concurrency allows).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// How long to hold the connections (a probe ends the hold early).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        hold: Duration,
        /// After connecting: nothing, send one lobby frame, or await one from `chat-load probe`.
        #[arg(long, value_enum, default_value = "none")]
        probe: idle::Probe,
        /// Server PIDs, one per --target in the same order, for RSS per connection.
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// A file written once every connection is open.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Send one stamped lobby frame (the probe of `idle --probe await`).
    Probe {
        #[command(flatten)]
        targets: Targets,
    },
    /// A day in miniature: idle users with reconnect churn, active users in rooms and DMs.
    Mixed {
        #[command(flatten)]
        targets: Targets,
        /// Idle users.
        #[arg(long, default_value_t = 2000)]
        idle: usize,
        /// Active users (at most 999).
        #[arg(long, default_value_t = 200)]
        active: usize,
        /// Members per room.
        #[arg(long, default_value_t = 50)]
        room_size: usize,
        /// Room messages per second per active user.
        #[arg(long, default_value_t = 1.0)]
        room_rate: f64,
        /// Direct messages per second per active user.
        #[arg(long, default_value_t = 1.0)]
        dm_rate: f64,
        /// Idle users reconnecting per second.
        #[arg(long, default_value_t = 20.0)]
        churn: f64,
        /// Users who only receive direct messages and keep reconnecting with `?since=`.
        #[arg(long, default_value_t = 20)]
        roaming: usize,
        /// Roaming users reconnecting per second.
        #[arg(long, default_value_t = 5.0)]
        roam_churn: f64,
        /// How long.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Concurrent uploads to the media service: MiB/s and the server's RSS growth.
    Upload {
        #[command(flatten)]
        targets: Targets,
        /// Bytes per file (suffixes k, m, g: powers of 1024).
        #[arg(long, default_value = "1m", value_parser = parse_size)]
        size: u64,
        /// Files in all.
        #[arg(long, default_value_t = 50)]
        count: usize,
        /// Uploads in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// The server's PID, for its RSS growth.
        #[arg(long)]
        pid: Option<u32>,
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

fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, shift) = match lower.strip_suffix(['k', 'm', 'g']) {
        Some(d) => (
            d,
            match lower.as_bytes()[lower.len() - 1] {
                b'k' => 10,
                b'm' => 20,
                _ => 30,
            },
        ),
        None => (lower.as_str(), 0),
    };
    digits
        .parse::<u64>()
        .map(|n| n << shift)
        .map_err(|_| format!("'{text}' is not a size like 1m or 200m"))
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let limit = raise_open_files();
    let report = match Cli::parse().scenario {
        Scenario::Lobby(args) => {
            let spec = fanout_spec(&args, fanout::Audience::Lobby);
            fanout::check(&spec)?;
            fanout::run(&args.targets.build()?, spec).await?
        }
        Scenario::Room(args) => {
            let spec = fanout_spec(
                &args,
                fanout::Audience::Room(format!("{}bench", chat_load::run_prefix())),
            );
            fanout::check(&spec)?;
            fanout::run(&args.targets.build()?, spec).await?
        }
        Scenario::Direct {
            targets,
            pairs,
            rate,
            duration,
            size,
        } => {
            let spec = direct::Direct {
                pairs,
                rate,
                duration,
                size,
            };
            direct::run(&targets.build()?, spec).await?
        }
        Scenario::Idle {
            targets,
            connections,
            kind,
            rate,
            concurrency,
            hold,
            probe,
            pids,
            ready_file,
        } => {
            if connections as u64 + 100 > limit {
                bail!(
                    "{connections} connections need more descriptors than this process may open ({limit}): run several chat-load processes"
                );
            }
            let spec = idle::Idle {
                connections,
                kind,
                rate,
                concurrency,
                hold,
                probe,
                pids,
                ready_file,
            };
            idle::run(&targets.build()?, spec).await?
        }
        Scenario::Probe { targets } => {
            idle::send_probe(&targets.build()?[0]).await?;
            return Ok(());
        }
        Scenario::Mixed {
            targets,
            idle,
            active,
            room_size,
            room_rate,
            dm_rate,
            churn,
            roaming,
            roam_churn,
            duration,
        } => {
            let spec = mixed::Mixed {
                idle,
                active,
                room_size,
                room_rate,
                dm_rate,
                churn,
                roaming,
                roam_churn,
                duration,
            };
            mixed::run(&targets.build()?, spec).await?
        }
        Scenario::Upload {
            targets,
            size,
            count,
            concurrency,
            pid,
        } => {
            let spec = upload::Upload {
                size,
                count,
                concurrency,
                pid,
            };
            upload::run(&targets.build()?[0], spec).await?
        }
    };
    println!("{}", report.render());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_powers_of_1024() {
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("200M"), Ok(200 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
