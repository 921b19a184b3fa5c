//! `vigil`: catches stolen and replayed sessions after login and revokes them.
//!
//! Exit codes: 0 success; 1 runtime failure (I/O, unreadable input); 2 usage or configuration
//! error (bad flags, invalid config file, unreadable key or GeoIP database).

mod config;
mod demo;
mod enforce;
mod eval;
mod generate;
mod input;
mod replay;
mod run;
mod sessions;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_model::adapters::InputFormat;

use crate::config::VigilConfig;

/// Vigil watches post-authentication IdP and gateway events and revokes stolen sessions.
#[derive(Parser)]
#[command(name = "vigil", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax): error, warn, info, debug, or per-module.
    #[arg(long, global = true, env = "VIGIL_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run exported IdP logs (NDJSON) through detection, offline; write alerts (OCSF
    /// Detection Finding) and revocations (CAEP session-revoked SETs) as NDJSON.
    #[command(after_help = "\
Examples:
  vigil replay okta-export.jsonl
  vigil replay --geoip GeoLite2-City.mmdb --geoip GeoLite2-ASN.mmdb \\
      --alerts alerts.jsonl --revocations revocations.jsonl --dead-letter rejected.jsonl logs/*.jsonl
  cat signins.json | vigil replay --format entra -

Exit codes: 0 done (rejected records are counted, not fatal); 1 I/O failure; 2 bad flags or config.")]
    Replay {
        /// Input format; `auto` detects it per record.
        #[arg(long, default_value = "auto", value_parser = parse_format, env = "VIGIL_FORMAT")]
        format: InputFormat,
        /// Configuration file (TOML); defaults apply without one.
        #[arg(long, short, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
        /// MaxMind DB file (City or ASN) to fill in missing locations; repeatable.
        #[arg(long, value_name = "FILE")]
        geoip: Vec<PathBuf>,
        /// Write alerts here instead of stdout.
        #[arg(long, value_name = "FILE")]
        alerts: Option<PathBuf>,
        /// Write revocations here instead of stdout.
        #[arg(long, value_name = "FILE")]
        revocations: Option<PathBuf>,
        /// Write rejected records, with their reasons, here (NDJSON).
        #[arg(long, value_name = "FILE")]
        dead_letter: Option<PathBuf>,
        /// Print the summary on stderr as one JSON object.
        #[arg(long)]
        summary_json: bool,
        /// Input files (NDJSON); `-` or none reads stdin.
        #[arg(value_name = "FILE")]
        inputs: Vec<PathBuf>,
    },
    /// Measure detection on labelled traffic: recall per attack type, false positives per
    /// benign trap, precision per detector, delay from the first malicious event to the
    /// revocation, and whether the quality targets are met.
    #[command(after_help = "\
Labels: a JSON object, session id -> {\"class\": \"attack\"|\"benign\", \"name\": ..., \"revoke\": bool,
\"first_malicious\": source id}, as `vigil gen --labels` and tests/data/samples/*.labels.json write it.

Examples:
  vigil eval --labels tests/data/samples/okta.labels.json --geoip tests/data/geoip-test.mmdb tests/data/samples/okta.jsonl
  vigil gen --copies 500 --out day.jsonl --labels day.labels.json
  vigil eval --labels day.labels.json --geoip tests/data/geoip-test.mmdb --json report.json day.jsonl

Exit codes: 0 evaluated (targets met or not: see the target lines); 1 I/O failure; 2 bad flags or config.")]
    Eval {
        /// Session labels (JSON).
        #[arg(long, value_name = "FILE")]
        labels: PathBuf,
        /// Input format; `auto` detects it per record.
        #[arg(long, default_value = "auto", value_parser = parse_format)]
        format: InputFormat,
        /// Configuration file (TOML); defaults apply without one.
        #[arg(long, short, env = "VIGIL_CONFIG")]
        config: Option<PathBuf>,
        /// MaxMind DB file to fill in missing locations; repeatable.
        #[arg(long, value_name = "FILE")]
        geoip: Vec<PathBuf>,
        /// Also write the report as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Input files (NDJSON); `-` reads stdin.
        #[arg(value_name = "FILE", required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Check a configuration file: parse it, validate every value, load keys and databases.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Run the consumer-group runtime: consume the configured input topics, write
    /// revocations, alerts and dead letters to their topics, keep state in the changelog.
    #[command(after_help = "\
Needs a [kafka] table in the config (see config/example.toml) and a token-hash key.
Stops on SIGINT/SIGTERM after flushing outputs and committing offsets.

Exit codes: 0 stopped cleanly; 1 fatal runtime error (authentication, missing topic,
undeliverable output); 2 bad flags or config.")]
    Run {
        /// Configuration file (TOML) with a [kafka] table.
        #[arg(long, short, env = "VIGIL_CONFIG")]
        config: PathBuf,
        /// Address for /metrics, /healthz and /readyz.
        #[arg(long, env = "VIGIL_METRICS_ADDR", default_value = "127.0.0.1:9898")]
        metrics_addr: std::net::SocketAddr,
        /// Use the built-in development token-hash key when none is configured (never in
        /// production: token hashes are then not secret).
        #[arg(long)]
        allow_dev_key: bool,
    },
    /// Create the topics a [kafka] config names: inputs and outputs with time retention, the
    /// changelog compacted, the enforcement dead-letter topic when [enforce] is set, all with the
    /// same partition count. Existing topics are kept.
    CreateTopics {
        /// Configuration file (TOML) with a [kafka] table.
        #[arg(long, short, env = "VIGIL_CONFIG")]
        config: PathBuf,
        /// Partitions per topic (the unit of parallelism: at most one instance works on each).
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        /// Replication factor.
        #[arg(long, default_value_t = 3)]
        replication: i32,
    },
    /// Repartition a topic whose records are not keyed by session or user: read it, find each
    /// record's id with the input adapters, and write the record unchanged to the input topic
    /// keyed by that id. Runs until SIGINT/SIGTERM.
    Rekey {
        /// Configuration file (TOML) with a [kafka] table (brokers, client settings).
        #[arg(long, short, env = "VIGIL_CONFIG")]
        config: PathBuf,
        /// Topic to read.
        #[arg(long)]
        from: String,
        /// Topic to write (one of the runtime's inputs).
        #[arg(long)]
        to: String,
        /// Key by `user` (recommended: keeps a user's sessions and tokens together) or `session`.
        #[arg(long, default_value = "user", value_parser = ["user", "session"])]
        key_by: String,
        /// Format of the records in --from.
        #[arg(long, default_value = "auto", value_parser = parse_format)]
        format: InputFormat,
    },
    /// Read output topics (revocations, alerts) and report event-to-output latency from the
    /// `vigil.source_timestamp` header each output carries: p50/p99/p99.9 (hdrhistogram) of
    /// when Vigil produced it and of when this reader received it. Records without the header
    /// (an input topic) are measured against their own timestamp instead ("transit"): the
    /// broker's share of the latency at the load being offered.
    #[command(hide = true)]
    BenchLatency {
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Output topic to read; repeatable.
        #[arg(long, required = true)]
        topic: Vec<String>,
        /// Stop after this long without a record (once one arrived).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        idle: std::time::Duration,
        /// Stop after this long in any case.
        #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
        deadline: std::time::Duration,
        /// Apply --idle only once this file exists (the load generator is done): outputs that
        /// come in bursts further apart than --idle are then all read.
        #[arg(long, value_name = "FILE")]
        after: Option<PathBuf>,
    },
    /// Read a topic as fast as a bare consumer can, doing nothing with the payloads: the
    /// ceilings the end-to-end bench compares `vigil run` and its changelog restore against.
    #[command(hide = true)]
    BenchConsume {
        /// Bootstrap servers.
        #[arg(long)]
        brokers: String,
        /// Topic to read.
        #[arg(long)]
        topic: String,
        /// Records to read before stopping.
        #[arg(
            long,
            required_unless_present = "each_partition",
            conflicts_with = "each_partition"
        )]
        expect: Option<u64>,
        /// Read each partition to its end with a reader of its own, all at once, as a
        /// changelog restore does (its reader settings, nothing decoded), instead of one
        /// consumer in a group.
        #[arg(long)]
        each_partition: bool,
    },
    /// Run the whole system on an embedded Kafka (no broker to set up): stream labelled
    /// synthetic IdP traffic with injected attacks, print alerts and revocations as they
    /// happen, and end with attacks caught, false positives and latency.
    Demo {
        /// Copies of the sample story to stream (each has 22 sessions, 10 of them attacked).
        #[arg(long, default_value_t = 20)]
        copies: usize,
        /// Events per second offered.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Input partitions, one partition task each.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Print only the final table.
        #[arg(long)]
        quiet: bool,
    },
    /// Push revocations to enforcement points: read the revocations topic and deliver each
    /// Security Event Token to every configured receiver by SSF push (RFC 8935), signed.
    #[command(after_help = "\
Needs the [kafka] and [enforce] tables (see config/example.toml) and, unless `vigil run`
already signs SETs, output.signing_key_file. Each receiver gets every SET in the order read;
retries back off exponentially; a SET a receiver refuses (4xx) or that stays undeliverable for
enforce.max_attempts goes to enforce.dead_letter_topic. Offsets are committed only for SETs
every receiver accepted or that were dead-lettered, so nothing is lost across restarts.

Exit codes: 0 stopped cleanly; 1 fatal runtime error; 2 bad flags or config.")]
    Enforce {
        /// Configuration file (TOML) with [kafka] and [enforce] tables.
        #[arg(long, short, env = "VIGIL_CONFIG")]
        config: PathBuf,
        /// Address for /metrics, /healthz, /readyz and /.well-known/jwks.json.
        #[arg(long, env = "VIGIL_METRICS_ADDR", default_value = "127.0.0.1:9899")]
        metrics_addr: std::net::SocketAddr,
    },
    /// What is live right now: sessions by identity type, app and age, with those past their
    /// lifetime policy; read from the changelog topic (every partition's durable state, at
    /// most one commit interval old), without touching the running instances. Each instance
    /// also serves the summary of its own partitions at /sessions.
    #[command(after_help = "\
Examples:
  vigil sessions --config vigil.toml                      # summary
  vigil sessions --config vigil.toml --ndjson > live.jsonl
  vigil sessions --config vigil.toml --ndjson --user 00u1abcd --all")]
    Sessions {
        /// Configuration file (TOML) with a [kafka] table.
        #[arg(long, short, env = "VIGIL_CONFIG")]
        config: PathBuf,
        /// Print every session as one JSON object per line instead of the summary.
        #[arg(long)]
        ndjson: bool,
        /// Include sessions that ended or were revoked (held for replay detection).
        #[arg(long)]
        all: bool,
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// Only this identity type: human, workload or agent.
        #[arg(long = "type", value_name = "TYPE", value_parser = ["human", "workload", "agent"])]
        identity_type: Option<String>,
    },
    /// Print the JSON Web Key Set that verifies Vigil's SETs: the signing key and the keys
    /// published for rotation (output.published_keys). `vigil run` and `vigil enforce` also
    /// serve it at /.well-known/jwks.json on the metrics address.
    Jwks {
        /// Configuration file (TOML) with output.signing_key_file.
        #[arg(long, short, env = "VIGIL_CONFIG")]
        config: PathBuf,
    },
    /// Write labelled synthetic IdP traffic (the sample story repeated, or a generated
    /// population with --population) to a file or topic.
    Gen {
        /// Copies of the sample story.
        #[arg(long, default_value_t = 100)]
        copies: usize,
        /// native, okta, entra, ocsf, or mixed (round-robin per copy).
        #[arg(long, default_value = "mixed")]
        format: String,
        /// Output file; stdout when absent and no --brokers.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Write the session labels (JSON) here.
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// Produce to this Kafka cluster instead of writing a file.
        #[arg(long)]
        brokers: Option<String>,
        /// Topic to produce to.
        #[arg(long, default_value = "vigil.events")]
        topic: String,
        /// Event-time spacing between copies, in ms.
        #[arg(long, default_value_t = 60_000)]
        spacing_ms: i64,
        /// Records per second offered to --brokers (0: as fast as the broker takes them).
        /// Pacing starts once the producer can send, so record timestamps measure latency.
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Attacks to inject: all, none (benign traffic only), or a comma-separated list such
        /// as aitm_cookie_replay,concurrent_use,refresh_token_reuse (an unknown name lists
        /// the known ones).
        #[arg(long, default_value = "all", value_parser = parse_attacks)]
        attacks: AttackList,
        /// Inject the attacks into every N-th copy only, to lower the share of attacked
        /// sessions (1: every copy).
        #[arg(long, default_value_t = 1, value_name = "N")]
        attack_every: usize,
        /// Generate a population of this many users over --days working days (office hours,
        /// several apps, hourly token refresh, laptop and phone, office NAT, VPN, tethering, IPv6,
        /// travel, browser updates) instead of the sample story; attacks of every kind go
        /// into --attack-rate of the user-days.
        #[arg(long, value_name = "USERS")]
        population: Option<usize>,
        /// Working days of the population.
        #[arg(long, default_value_t = 10)]
        days: usize,
        /// Share of user-days with an injected attack (population).
        #[arg(long, default_value_t = 0.02)]
        attack_rate: f64,
        /// Seed of the population (same seed, same traffic).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// The attacks `vigil gen` injects (`None`: all of them).
#[derive(Debug, Clone)]
struct AttackList(Option<Vec<String>>);

fn parse_attacks(s: &str) -> Result<AttackList, String> {
    vigil_testkit::samples::Mix::parse_attacks(s).map(AttackList)
}

fn parse_format(s: &str) -> Result<InputFormat, String> {
    s.parse()
}

/// mimalloc instead of the system allocator: parsing, detection and output encoding allocate
/// small short-lived buffers per record, and glibc's malloc and free were about a quarter of
/// `vigil run`'s CPU time (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("vigil: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("vigil: {e:#}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Config(anyhow::Error),
    Runtime(anyhow::Error),
}

/// Loads a configuration that must have a `[kafka]` table.
fn load_kafka(path: &PathBuf) -> Result<(VigilConfig, vigil_kafka::KafkaConfig), Failure> {
    let cfg = load(Some(path))?;
    let kafka = cfg.kafka.clone().ok_or_else(|| {
        Failure::Config(anyhow::anyhow!(
            "{} has no [kafka] table; see config/example.toml",
            path.display()
        ))
    })?;
    Ok((cfg, kafka))
}

fn load(path: Option<&PathBuf>) -> Result<VigilConfig, Failure> {
    match path {
        Some(p) => VigilConfig::load(p).map_err(|e| Failure::Config(e.into())),
        None => Ok(VigilConfig::default()),
    }
}

fn run(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Replay {
            format,
            config,
            geoip,
            alerts,
            revocations,
            dead_letter,
            summary_json,
            inputs,
        } => {
            let cfg = load(config.as_ref())?;
            check(&cfg, &geoip).map_err(Failure::Config)?;
            let args = replay::ReplayArgs {
                format,
                inputs,
                geoip,
                alerts,
                revocations,
                dead_letter,
                summary_json,
            };
            replay::run(&cfg, &args).map_err(Failure::Runtime)
        }
        Command::Run {
            config,
            metrics_addr,
            allow_dev_key,
        } => {
            let (cfg, kafka) = load_kafka(&config)?;
            check(&cfg, &[]).map_err(Failure::Config)?;
            run::run(&cfg, &kafka, metrics_addr, allow_dev_key).map_err(Failure::Runtime)
        }
        Command::Enforce {
            config,
            metrics_addr,
        } => {
            let (cfg, kafka) = load_kafka(&config)?;
            let enforce = cfg.enforce.clone().ok_or_else(|| {
                Failure::Config(anyhow::anyhow!(
                    "{} has no [enforce] table; see config/example.toml",
                    config.display()
                ))
            })?;
            check(&cfg, &[]).map_err(Failure::Config)?;
            enforce::run(&cfg, &kafka, &enforce, metrics_addr).map_err(Failure::Runtime)
        }
        Command::Eval {
            labels,
            format,
            config,
            geoip,
            json,
            inputs,
        } => {
            let cfg = load(config.as_ref())?;
            check(&cfg, &geoip).map_err(Failure::Config)?;
            let args = eval::EvalArgs {
                labels,
                inputs,
                format,
                geoip,
                json,
            };
            eval::run(&cfg, &args).map(|_| ()).map_err(Failure::Runtime)
        }
        Command::Sessions {
            config,
            ndjson,
            all,
            user,
            identity_type,
        } => {
            let (cfg, kafka) = load_kafka(&config)?;
            let args = sessions::SessionsArgs {
                ndjson,
                all,
                user,
                identity_type,
            };
            sessions::run(&cfg, &kafka, &args).map_err(Failure::Runtime)
        }
        Command::Jwks { config } => {
            let cfg = load(Some(&config))?;
            let jwks = setup::jwks(&cfg).map_err(Failure::Config)?.ok_or_else(|| {
                Failure::Config(anyhow::anyhow!(
                    "{} sets no output.signing_key_file: SETs are unsigned, there is no key set",
                    config.display()
                ))
            })?;
            let text = serde_json::to_string_pretty(&jwks.to_json())
                .map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
            Ok(())
        }
        Command::CreateTopics {
            config,
            partitions,
            replication,
        } => {
            let (cfg, kafka) = load_kafka(&config)?;
            let plan = vigil_kafka::topics::TopicPlan {
                partitions,
                replication,
                extra: cfg
                    .enforce
                    .iter()
                    .map(|e| e.dead_letter_topic.clone())
                    .collect(),
                ..Default::default()
            };
            create_topics(&kafka, &plan).map_err(Failure::Runtime)
        }
        Command::Demo {
            copies,
            rate,
            partitions,
            quiet,
        } => {
            let args = demo::DemoArgs {
                copies,
                rate,
                partitions: partitions.max(1),
                quiet,
            };
            demo::run(&args).map_err(Failure::Runtime)
        }
        Command::Gen {
            copies,
            format,
            out,
            labels,
            brokers,
            topic,
            spacing_ms,
            rate,
            attacks,
            attack_every,
            population,
            days,
            attack_rate,
            seed,
        } => {
            let formats = generate::parse_formats(&format)
                .map_err(|e| Failure::Config(anyhow::anyhow!(e)))?;
            let args = generate::GenArgs {
                copies,
                formats,
                out,
                labels,
                brokers,
                topic,
                spacing_ms,
                rate,
                mix: vigil_testkit::samples::Mix {
                    attacks: attacks.0,
                    attack_every,
                },
                population: population.map(|users| vigil_testkit::population::PopulationSpec {
                    users,
                    days,
                    attack_rate,
                    seed,
                }),
            };
            generate::run(&args).map_err(Failure::Runtime)
        }
        Command::Rekey {
            config,
            from,
            to,
            key_by,
            format,
        } => {
            let (cfg, kafka) = load_kafka(&config)?;
            let key = setup::token_key(&cfg, true).map_err(Failure::Config)?;
            let job = vigil_kafka::rekey::Rekey {
                group: format!("{}-rekey", kafka.group_id),
                from,
                to,
                format,
                key_by: if key_by == "session" {
                    vigil_kafka::rekey::KeyBy::Session
                } else {
                    vigil_kafka::rekey::KeyBy::User
                },
            };
            rekey(&cfg, &kafka, &job, &key).map_err(Failure::Runtime)
        }
        Command::BenchConsume {
            brokers,
            topic,
            expect,
            // The arguments let exactly one of `--expect` and `--each-partition` through.
            each_partition: _,
        } => {
            let mut base = rdkafka::ClientConfig::new();
            base.set("bootstrap.servers", &brokers);
            let group = format!("vigil-bench-ceiling-{}", std::process::id());
            let r = match expect {
                Some(expect) => {
                    let rt = setup::runtime().map_err(|e| Failure::Runtime(e.into()))?;
                    rt.block_on(vigil_kafka::bench::raw_consume(
                        &base,
                        &topic,
                        &group,
                        expect,
                        std::time::Duration::from_secs(30),
                    ))
                }
                None => vigil_kafka::bench::read_each_partition(&base, &topic, &group),
            }
            .map_err(|e| Failure::Runtime(e.into()))?;
            let rate = if r.seconds > 0.0 {
                r.records as f64 / r.seconds
            } else {
                0.0
            };
            println!(
                "{{\"records\":{},\"bytes\":{},\"seconds\":{:.3},\"records_per_second\":{:.0}}}",
                r.records, r.bytes, r.seconds, rate
            );
            Ok(())
        }
        Command::BenchLatency {
            brokers,
            topic,
            idle,
            deadline,
            after,
        } => {
            let mut base = rdkafka::ClientConfig::new();
            base.set("bootstrap.servers", &brokers);
            let group = format!("vigil-bench-latency-{}", std::process::id());
            let topics: Vec<&str> = topic.iter().map(String::as_str).collect();
            let rt = setup::runtime().map_err(|e| Failure::Runtime(e.into()))?;
            let r = rt
                .block_on(vigil_kafka::bench::output_latency(
                    &base,
                    &topics,
                    &group,
                    idle,
                    deadline,
                    after.as_deref(),
                ))
                .map_err(|e| Failure::Runtime(e.into()))?;
            let quantiles = |v: &[i64]| {
                let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)
                    .expect("static bounds");
                for &ms in v {
                    h.saturating_record(ms.max(0) as u64);
                }
                serde_json::json!({
                    "count": h.len(),
                    "p50_ms": h.value_at_quantile(0.5),
                    "p99_ms": h.value_at_quantile(0.99),
                    "p999_ms": h.value_at_quantile(0.999),
                    "max_ms": h.max(),
                })
            };
            println!(
                "{}",
                serde_json::json!({
                    "emitted": quantiles(&r.emitted_ms),
                    "received": quantiles(&r.received_ms),
                    "output": quantiles(&r.output_ms),
                    "without_header": r.without_header,
                    "transit": quantiles(&r.transit_ms),
                })
            );
            Ok(())
        }
        Command::CheckConfig { file } => {
            let cfg = load(Some(&file))?;
            let summary = check(&cfg, &[]).map_err(Failure::Config)?;
            println!("{}: OK. {summary}", file.display());
            Ok(())
        }
    }
}

fn rekey(
    cfg: &VigilConfig,
    kafka: &vigil_kafka::KafkaConfig,
    job: &vigil_kafka::rekey::Rekey,
    key: &[u8],
) -> anyhow::Result<()> {
    let base = vigil_kafka::runtime::client_config(kafka)?;
    let adapter = setup::adapter(cfg, key);
    let rt = setup::runtime()?;
    let n = rt.block_on(vigil_kafka::rekey::run(
        &base,
        job,
        &adapter,
        run::shutdown_signal(),
    ))?;
    eprintln!(
        "vigil rekey: forwarded {n} records from {} to {}",
        job.from, job.to
    );
    Ok(())
}

fn create_topics(
    kafka: &vigil_kafka::KafkaConfig,
    plan: &vigil_kafka::topics::TopicPlan,
) -> anyhow::Result<()> {
    let base = vigil_kafka::runtime::client_config(kafka)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let created = rt.block_on(vigil_kafka::topics::create(&base, kafka, plan))?;
    if created.is_empty() {
        println!("All topics exist already.");
    } else {
        println!("Created: {}", created.join(", "));
    }
    Ok(())
}

/// Validates everything a run needs before reading any input.
fn check(cfg: &VigilConfig, extra_geoip: &[PathBuf]) -> anyhow::Result<String> {
    let engine = vigil_engine::Engine::new(&cfg.engine)?;
    let key = cfg.token_hash_key()?;
    let mut geo = vigil_geo::GeoDb::new(1);
    for db in cfg.geoip.databases.iter().chain(extra_geoip) {
        geo.open(db)?;
    }
    if let Some(k) = &cfg.kafka {
        vigil_kafka::runtime::client_config(k)?;
        if k.inputs.is_empty() {
            anyhow::bail!("kafka.inputs is empty: name at least one input topic");
        }
    }
    let signing = match setup::jwks(cfg)? {
        Some(jwks) => format!(
            "{} (JWKS key ids: {})",
            setup::signer(cfg)?.map_or("", |s| s.alg().name()),
            jwks.kids().join(", ")
        ),
        None => "off (unsigned SETs)".to_owned(),
    };
    if let Some(e) = &cfg.enforce {
        e.validate()?;
        if cfg.kafka.is_none() {
            anyhow::bail!("[enforce] needs the [kafka] table (brokers, the revocations topic)");
        }
        for r in &e.receivers {
            if let Some(src) = &r.auth_header {
                src.read().map_err(|err| {
                    anyhow::anyhow!("enforce receiver {}: auth_header: {err}", r.name)
                })?;
            }
        }
    }
    Ok(format!(
        "detectors: {}; token-hash key: {}; GeoIP databases: {}; SET signing: {}",
        engine.detector_names().join(", "),
        if key.is_some() {
            "configured"
        } else {
            "NOT configured (development key)"
        },
        if geo.databases().is_empty() {
            "none".to_owned()
        } else {
            geo.databases().join(", ")
        },
        signing,
    ))
}
